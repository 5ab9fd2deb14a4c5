// `npm run prebuild`: builds the N-API binary that ships in the package, as
// prebuilds/<platform>-<arch>/cowfork[.<libc>].node, with prebuildify
// (stripped; on Linux tagged with the libc, so node-gyp-build skips a glibc
// binary on musl).
//
// prebuildify runs `node-gyp rebuild` in its cwd and then moves the binary out
// of build/Release. Run in the repository, that would delete the build/Release
// a developer (or a running test) is using. So it runs in a staging copy of
// the buildable sources, and only the finished binary is copied back.
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const prebuildify = require('prebuildify');

const root = path.join(__dirname, '..');
const SOURCES = ['package.json', 'binding.gyp', 'native'];

function main() {
  const stage = fs.mkdtempSync(path.join(os.tmpdir(), 'cowfork-prebuild-'));
  for (const entry of SOURCES) fs.cpSync(path.join(root, entry), path.join(stage, entry), { recursive: true });

  // The N-API binary is built against the running node's headers. Use the
  // installed ones when they exist rather than download them. (prebuildify
  // hands process.env to node-gyp.)
  if (!process.env.npm_config_nodedir) {
    const prefix = path.resolve(path.dirname(process.execPath), '..');
    if (fs.existsSync(path.join(prefix, 'include', 'node', 'node_api.h'))) process.env.npm_config_nodedir = prefix;
  }

  const opts = {
    cwd: stage,
    out: stage,
    napi: true,
    strip: true,
    // glibc or musl; only Linux has the choice, so only Linux gets the tag.
    tagLibc: os.platform() === 'linux',
    targets: [{ runtime: 'node', target: process.versions.node }],
    nodeGyp: path.join(root, 'node_modules', '.bin', 'node-gyp'),
  };
  prebuildify(opts, (err) => {
    try {
      if (err) throw err;
      const written = install(path.join(stage, 'prebuilds'), path.join(root, 'prebuilds'));
      for (const file of written) process.stderr.write(`prebuild: ${path.relative(root, file)}\n`);
    } catch (e) {
      process.stderr.write(`prebuild: ${e && e.message ? e.message : e}\n`);
      process.exitCode = 1;
    } finally {
      fs.rmSync(stage, { recursive: true, force: true });
    }
  });
}

/** Copies each <tuple>/ of `from` over the same tuple in `to`, replacing its old binaries. */
function install(from, to) {
  const written = [];
  for (const tuple of fs.readdirSync(from)) {
    const dest = path.join(to, tuple);
    fs.mkdirSync(dest, { recursive: true });
    const fresh = fs.readdirSync(path.join(from, tuple));
    for (const name of fresh) {
      const target = path.join(dest, name);
      // Copy then rename, so a process loading the addon never sees half a file.
      const tmp = `${target}.${process.pid}.tmp`;
      fs.copyFileSync(path.join(from, tuple, name), tmp);
      fs.renameSync(tmp, target);
      written.push(target);
    }
    for (const name of fs.readdirSync(dest)) {
      if (!fresh.includes(name)) fs.rmSync(path.join(dest, name), { force: true });
    }
  }
  if (written.length === 0) throw new Error('prebuildify produced no binary');
  return written;
}

main();

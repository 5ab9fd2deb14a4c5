// Exits 0 when prebuilds/ holds a binary for this platform that is newer than
// every native source; otherwise says why and exits 1. Run before publishing
// (a package without it makes every user compile) and by test/package.test.ts
// to decide whether `npm run prebuild` must run first.
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.join(__dirname, '..');
const tuple = `${os.platform()}-${os.arch()}`;
const dir = path.join(root, 'prebuilds', tuple);

function newestSource() {
  const files = [path.join(root, 'binding.gyp')];
  for (const name of fs.readdirSync(path.join(root, 'native'))) files.push(path.join(root, 'native', name));
  return Math.max(...files.map((f) => fs.statSync(f).mtimeMs));
}

function check() {
  let binaries = [];
  try {
    binaries = fs.readdirSync(dir).filter((n) => n.endsWith('.node'));
  } catch {
    // No prebuild for this platform yet.
  }
  if (binaries.length === 0) return `no prebuild in prebuilds/${tuple}/ (run: npm run prebuild)`;
  const source = newestSource();
  for (const name of binaries) {
    if (fs.statSync(path.join(dir, name)).mtimeMs < source) {
      return `prebuilds/${tuple}/${name} is older than the native sources (run: npm run prebuild)`;
    }
  }
  return null;
}

const problem = check();
if (problem) {
  process.stderr.write(`prebuild-check: ${problem}\n`);
  process.exitCode = 1;
}

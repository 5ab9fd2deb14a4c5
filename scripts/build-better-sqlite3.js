#!/usr/bin/env node
// Builds better-sqlite3's addon for the running Node.js version, for the compat tests.
//
// better-sqlite3 is a V8-API addon, not an N-API one like cowfork's: one build
// loads in one Node ABI only. `npm install` builds it for the Node that ran the
// install. The compat suite also runs under other versions (Node 22/24/26), so
// this script builds a copy of the package for the running version, from the
// headers beside that node binary (<prefix>/include/node), and caches the
// result by ABI and package version under node_modules/.cache. The test passes
// the file to better-sqlite3 through its `nativeBinding` option, so the
// installed package is never touched.
//
//   node scripts/build-better-sqlite3.js    prints the addon's path (builds it on first use)
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const ROOT = path.join(__dirname, '..');
const PKG = path.join(ROOT, 'node_modules', 'better-sqlite3');

/** The installed package's own build, when it was built for this ABI. */
function installedBinding() {
  const file = path.join(PKG, 'build', 'Release', 'better_sqlite3.node');
  return fs.existsSync(file) && loads(file) ? file : null;
}

/** Whether `file` is an addon that loads in this process. */
function loads(file) {
  try {
    // A build for another ABI throws ERR_DLOPEN_FAILED (NODE_MODULE_VERSION mismatch).
    require(file);
    return true;
  } catch {
    return false;
  }
}

/**
 * A directory whose include/node headers are this Node's ABI: the running
 * node's own prefix first, then npm_config_nodedir (npm sets it for every
 * version alike, so it is checked too).
 */
function nodeDir() {
  const candidates = [path.resolve(process.execPath, '..', '..'), process.env.npm_config_nodedir];
  return (
    candidates.find((d) => {
      if (!d) return false;
      try {
        const h = fs.readFileSync(path.join(d, 'include', 'node', 'node_version.h'), 'utf8');
        return /#define NODE_MODULE_VERSION (\d+)/.exec(h)?.[1] === process.versions.modules;
      } catch {
        return false;
      }
    }) ?? null
  );
}

function run(file, args, cwd, env) {
  const r = spawnSync(file, args, { cwd, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.status !== 0) {
    const why = r.error ? String(r.error) : `status ${r.status}`;
    throw new Error(`better-sqlite3: \`${path.basename(file)} ${args.join(' ')}\` failed for Node ${process.version} (${why}):\n${`${r.stdout}${r.stderr}`.slice(-3000)}`);
  }
}

/**
 * Returns the path of a better_sqlite3.node that loads in this process, building
 * it when needed. `log` receives one line before a build starts.
 */
function betterSqlite3Binding(log = (line) => process.stderr.write(line + '\n')) {
  const installed = installedBinding();
  if (installed) return installed;
  const version = JSON.parse(fs.readFileSync(path.join(PKG, 'package.json'), 'utf8')).version;
  const cacheDir = path.join(ROOT, 'node_modules', '.cache', 'cowfork-compat', `better-sqlite3-${version}-abi${process.versions.modules}`);
  const out = path.join(cacheDir, 'better_sqlite3.node');
  if (fs.existsSync(out) && loads(out)) return out;

  const headers = nodeDir();
  if (!headers) {
    throw new Error(
      `better-sqlite3: no headers for Node ${process.version} (ABI ${process.versions.modules}) beside ${process.execPath} ` +
        '(include/node/node_version.h); set npm_config_nodedir to a directory that has them',
    );
  }
  log(`better-sqlite3 ${version}: building for Node ${process.version} (ABI ${process.versions.modules}) from ${headers}; cached in ${cacheDir}`);
  // A private copy of the sources: node-gyp always builds in ./build, and the
  // installed package's build must stay the one for the installing Node.
  const src = path.join(cacheDir, 'src');
  fs.rmSync(src, { recursive: true, force: true });
  fs.mkdirSync(cacheDir, { recursive: true });
  fs.cpSync(PKG, src, {
    recursive: true,
    filter: (f) => !/^(build|node_modules)(\/|$)/.test(path.relative(PKG, f)),
  });
  const gyp = require.resolve('node-gyp/bin/node-gyp.js', { paths: [ROOT] });
  const env = { ...process.env, npm_config_nodedir: headers };
  run(process.execPath, [gyp, 'configure', '--release', `--nodedir=${headers}`], src, env);
  // SQLite itself (95% of the compile time) is plain C: its static library
  // from the installed build serves every Node version. Only the binding,
  // which uses V8's C++ API, is compiled against this version's headers.
  // make's -o keeps the copied library as it is.
  const libs = ['Release/sqlite3.a', 'Release/obj.target/deps/sqlite3.a'];
  if (libs.every((lib) => fs.existsSync(path.join(PKG, 'build', lib)))) {
    for (const lib of libs) {
      fs.mkdirSync(path.dirname(path.join(src, 'build', lib)), { recursive: true });
      fs.copyFileSync(path.join(PKG, 'build', lib), path.join(src, 'build', lib));
    }
    run('make', ['-C', 'build', 'BUILDTYPE=Release', ...libs.flatMap((lib) => ['-o', lib]), 'better_sqlite3'], src, env);
  } else {
    run(process.execPath, [gyp, 'build', '--release', '--jobs=max'], src, env);
  }
  // Rename into place so a concurrent run never loads a half-written file.
  const tmp = `${out}.${process.pid}`;
  fs.copyFileSync(path.join(src, 'build', 'Release', 'better_sqlite3.node'), tmp);
  fs.renameSync(tmp, out);
  if (!loads(out)) {
    fs.rmSync(out, { force: true });
    throw new Error(`better-sqlite3: the build for Node ${process.version} does not load (headers from ${headers})`);
  }
  fs.rmSync(src, { recursive: true, force: true });
  return out;
}

module.exports = { betterSqlite3Binding };

if (require.main === module) {
  const t0 = Date.now();
  const file = betterSqlite3Binding();
  console.log(file);
  console.error(`(${((Date.now() - t0) / 1000).toFixed(1)} s)`);
}

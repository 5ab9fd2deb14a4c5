// The published package: `npm pack`, then install the tarball where no
// compiler exists, and check that a fresh clone still builds from source.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nativeCandidates, nativePath } from '../src/native';
import { FIXTURES, ROOT, type RunResult, runCommand as run, tempDir } from './helpers';

const TUPLE = `${os.platform()}-${os.arch()}`;
const PREBUILD = `prebuilds/${TUPLE}/cowfork.glibc.node`;


/** npm's own entry script, so npm runs under this node with any PATH. */
function npmCli(): string {
  const fromEnv = process.env.npm_execpath;
  if (fromEnv && /npm-cli\.js$/.test(fromEnv)) return fromEnv;
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const candidate = path.join(dir, 'npm');
    if (fs.existsSync(candidate)) return fs.realpathSync(candidate);
  }
  throw new Error('npm not found on PATH');
}

/**
 * The environment without anything the outer `npm test` exported (npm_*
 * settings, including npm_config_nodedir) or vitest's own variables.
 */
function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^npm_/i.test(k) || /^VITEST/.test(k) || k === 'NODE_OPTIONS' || k === 'INIT_CWD') continue;
    env[k] = v;
  }
  return { ...env, ...extra };
}

function expectOk(r: RunResult, what: string): void {
  if (r.code !== 0) throw new Error(`${what} exited ${r.code}\nstdout: ${r.stdout.slice(-3000)}\nstderr: ${r.stderr.slice(-3000)}`);
}

describe('the published package', () => {
  let work: string;
  let tarball: string;
  let packed: { path: string; size: number }[];

  beforeAll(async () => {
    work = tempDir('cowfork-package-');
    // The package ships dist/ (pretest builds it) and this platform's prebuild.
    if (!fs.existsSync(path.join(ROOT, 'dist', 'index.mjs'))) {
      await run(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: ROOT });
      expectOk(await run(process.execPath, ['scripts/build-esm.js'], { cwd: ROOT }), 'build-esm');
    }
    const fresh = await run(process.execPath, ['scripts/prebuild-check.js'], { cwd: ROOT });
    if (fresh.code !== 0) {
      expectOk(await run(process.execPath, [npmCli(), 'run', 'prebuild'], { cwd: ROOT, timeoutMs: 120_000 }), 'npm run prebuild');
    }
    // --ignore-scripts: `prepare` would rerun tsc, which fails on any type
    // error anywhere in the tree; dist/ is already built. One retry: in a
    // working tree where a tsc is rewriting dist/, a file can vanish mid-pack.
    const pack = () => run(process.execPath, [npmCli(), 'pack', '--ignore-scripts', '--json', '--pack-destination', work], { cwd: ROOT });
    let r = await pack();
    if (r.code !== 0) {
      process.stderr.write(`npm pack failed once, retrying:\n${r.stderr.slice(-2000)}\n`);
      await new Promise((done) => setTimeout(done, 1000));
      r = await pack();
    }
    expectOk(r, 'npm pack');
    const info = JSON.parse(r.stdout)[0];
    tarball = path.join(work, info.filename);
    packed = info.files;
  }, 180_000);

  afterAll(() => {
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it('is under 1 MB, carries the prebuild, and holds no tests or benchmarks', () => {
    expect(fs.statSync(tarball).size).toBeLessThan(1024 * 1024);
    const files = packed.map((f) => f.path);
    expect(files).toContain(PREBUILD);
    for (const f of ['dist/index.js', 'dist/index.mjs', 'dist/index.d.ts', 'dist/bullmq.js', 'dist/bullmq.mjs', 'dist/bullmq.d.ts', 'binding.gyp', 'native/binding.c', 'bin/cowfork.js', 'CHANGELOG.md']) {
      expect(files).toContain(f);
    }
    const allowed = /^(dist\/|native\/|prebuilds\/|bin\/|docs\/|binding\.gyp$|package\.json$|README\.md$|CHANGELOG\.md$|LICENSE)/;
    expect(files.filter((f) => !allowed.test(f))).toEqual([]);
    expect(files.filter((f) => /(^|\/)(test|bench|examples)\/|\.(test|bench)\.[cm]?[jt]s$/.test(f))).toEqual([]);
  });

  it('installs from the tarball and runs where there is no compiler', async () => {
    // A PATH that holds node and npm and nothing else: no cc, gcc, g++ or make.
    const bin = path.join(work, 'bin');
    fs.mkdirSync(bin);
    fs.symlinkSync(process.execPath, path.join(bin, 'node'));
    fs.symlinkSync(npmCli(), path.join(bin, 'npm'));
    // npm runs lifecycle scripts through `sh`.
    fs.symlinkSync('/bin/sh', path.join(bin, 'sh'));
    // The user's npm settings minus nodedir, so nothing points at headers.
    const npmrc = path.join(work, 'npmrc');
    let userrc = '';
    try {
      userrc = fs.readFileSync(path.join(os.homedir(), '.npmrc'), 'utf8');
    } catch {
      // No user config.
    }
    fs.writeFileSync(npmrc, userrc.split('\n').filter((l) => !/^\s*nodedir\s*=/.test(l)).join('\n'));
    const env = cleanEnv({ PATH: bin, npm_config_userconfig: npmrc });
    expect(env.npm_config_nodedir).toBeUndefined();

    const tools = await run('sh', ['-c', 'for t in cc gcc g++ c++ clang make; do command -v $t && exit 1; done; exit 0'], { cwd: work, env });
    expect(tools.stdout).toBe('');
    expect(tools.code).toBe(0);

    const app = path.join(work, 'app');
    fs.mkdirSync(app);
    fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }));
    const install = await run(
      process.execPath,
      [npmCli(), 'install', tarball, '--prefer-offline', '--no-audit', '--no-fund', '--foreground-scripts', '--loglevel=error'],
      { cwd: app, env, timeoutMs: 90_000 },
    );
    expectOk(install, 'npm install <tarball>');
    const pkgDir = path.join(app, 'node_modules', 'cowfork');
    expect(fs.existsSync(path.join(pkgDir, PREBUILD))).toBe(true);
    // The install script compiled nothing: there is no build/ at all.
    expect(fs.existsSync(path.join(pkgDir, 'build'))).toBe(false);

    for (const f of ['package-require.cjs', 'package-import.mjs', 'package-map.cjs']) fs.copyFileSync(path.join(FIXTURES, f), path.join(app, f));

    const req = await run(process.execPath, ['package-require.cjs'], { cwd: app, env });
    expectOk(req, "require('cowfork')");
    expect(JSON.parse(req.stdout)).toEqual({ map: 'function', addon: PREBUILD, bullmq: 'function', peer: 'ERR_ITERATE_ENGINE' });

    const imp = await run(process.execPath, ['package-import.mjs'], { cwd: app, env });
    expectOk(imp, "import('cowfork')");
    expect(JSON.parse(imp.stdout)).toEqual({ map: 'function', named: true, bullmq: 'function' });

    const mapped = await run(process.execPath, ['--single-threaded', 'package-map.cjs'], { cwd: app, env });
    expectOk(mapped, 'map under --single-threaded');
    expect(JSON.parse(mapped.stdout)).toEqual({
      values: [2, 4, 6],
      forked: true,
      metrics: 'ERR_PREFORK_METRICS: options.metrics needs the prom-client package, an optional peer dependency of cowfork: npm install prom-client',
    });
  }, 120_000);

  it('compiles from the tarball with npm\'s own node-gyp when no prebuild fits', async () => {
    // LIBC=musl makes node-gyp-build reject the glibc prebuild, as on Alpine.
    // The package does not depend on node-gyp: npm puts its own on PATH.
    const app = path.join(work, 'app-source');
    fs.mkdirSync(app);
    fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app-source', version: '1.0.0', private: true }));
    const env = cleanEnv({ LIBC: 'musl' });
    if (process.env.npm_config_nodedir) env.npm_config_nodedir = process.env.npm_config_nodedir;
    const install = await run(
      process.execPath,
      [npmCli(), 'install', tarball, '--prefer-offline', '--no-audit', '--no-fund', '--foreground-scripts', '--loglevel=error'],
      { cwd: app, env, timeoutMs: 90_000 },
    );
    expectOk(install, 'npm install <tarball> (no fitting prebuild)');
    const pkgDir = path.join(app, 'node_modules', 'cowfork');
    expect(fs.existsSync(path.join(pkgDir, 'node_modules', 'node-gyp'))).toBe(false);
    expect(fs.existsSync(path.join(app, 'node_modules', 'node-gyp'))).toBe(false);
    expect(fs.existsSync(path.join(pkgDir, 'build', 'Release', 'cowfork.node'))).toBe(true);

    fs.copyFileSync(path.join(FIXTURES, 'package-require.cjs'), path.join(app, 'package-require.cjs'));
    const req = await run(process.execPath, ['package-require.cjs'], { cwd: app, env });
    expectOk(req, "require('cowfork') (source build)");
    expect(JSON.parse(req.stdout)).toEqual({ map: 'function', addon: 'build/Release/cowfork.node', bullmq: 'function', peer: 'ERR_ITERATE_ENGINE' });
  }, 120_000);

  it('builds from source in a fresh clone, and the loader picks that build', async () => {
    // prebuilds/ is gitignored, so a clone has none and its install compiles.
    const clone = path.join(work, 'clone');
    expectOk(await run('git', ['clone', '--quiet', ROOT, clone], { cwd: work }), 'git clone');
    expect(fs.existsSync(path.join(clone, 'prebuilds'))).toBe(false);
    expect(fs.existsSync(path.join(clone, 'build'))).toBe(false);

    // The dependencies half of `npm install` is npm's; borrow the repo's
    // node_modules and run the package's own install step, as npm does after
    // fetching (same script, same PATH with npm's node-gyp).
    fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(clone, 'node_modules'));
    try {
      const env = cleanEnv();
      if (process.env.npm_config_nodedir) env.npm_config_nodedir = process.env.npm_config_nodedir;
      const install = await run(process.execPath, [npmCli(), 'run', 'install', '--foreground-scripts'], { cwd: clone, env, timeoutMs: 90_000 });
      expectOk(install, 'npm run install (fresh clone)');
      const built = path.join(clone, 'build', 'Release', 'cowfork.node');
      expect(fs.existsSync(built)).toBe(true);

      const probe = await run(
        process.execPath,
        ['-e', "const p = require('node-gyp-build').resolve('.'); const n = require(p); process.stdout.write(JSON.stringify({ p, pid: n.getpid() === process.pid }))"],
        { cwd: clone, env },
      );
      expectOk(probe, 'load the clone build');
      expect(JSON.parse(probe.stdout)).toEqual({ p: built, pid: true });
    } finally {
      fs.unlinkSync(path.join(clone, 'node_modules'));
    }
  }, 120_000);

  it('fails with an error that lists every path it tried', async () => {
    // The compiled loader alone in a package with no binary, then with a broken one.
    const pkg = path.join(work, 'no-binary');
    fs.mkdirSync(path.join(pkg, 'dist'), { recursive: true });
    fs.mkdirSync(path.join(pkg, 'node_modules'));
    fs.copyFileSync(path.join(ROOT, 'dist', 'native.js'), path.join(pkg, 'dist', 'native.js'));
    fs.writeFileSync(path.join(pkg, 'package.json'), JSON.stringify({ name: 'cowfork', version: '0.0.0' }));
    fs.symlinkSync(path.join(ROOT, 'node_modules', 'node-gyp-build'), path.join(pkg, 'node_modules', 'node-gyp-build'));
    const probe = async () => {
      const r = await run(
        process.execPath,
        ['-e', "try { require('./dist/native.js') } catch (e) { process.stdout.write(JSON.stringify({ code: e.code, message: e.message })) }"],
        { cwd: pkg, env: cleanEnv() },
      );
      expectOk(r, 'probe the loader');
      return JSON.parse(r.stdout) as { code: string; message: string };
    };
    const tried = [
      path.join(pkg, 'build', 'Release', 'cowfork.node'),
      path.join(pkg, 'build', 'Debug', 'cowfork.node'),
      path.join(pkg, PREBUILD),
      path.join(path.dirname(process.execPath), PREBUILD),
    ];

    const none = await probe();
    expect(none.code).toBe('ERR_COWFORK_NATIVE_LOAD');
    expect(none.message).toMatch(/no binary matches/);
    for (const file of tried) expect(none.message).toContain(`${file} (missing)`);

    fs.mkdirSync(path.dirname(path.join(pkg, PREBUILD)), { recursive: true });
    fs.writeFileSync(path.join(pkg, PREBUILD), 'not an ELF file');
    const broken = await probe();
    expect(broken.code).toBe('ERR_COWFORK_NATIVE_LOAD');
    expect(broken.message).toContain(`${path.join(pkg, PREBUILD)} was found but failed to load`);
    expect(broken.message).toContain(`${path.join(pkg, PREBUILD)} (present)`);
    expect(broken.message).toContain(`${tried[0]} (missing)`);
  });

  it('in the repository, loads build/Release ahead of prebuilds/ and lists every path it looks at', () => {
    const release = path.join(ROOT, 'build', 'Release', 'cowfork.node');
    expect(fs.existsSync(path.join(ROOT, PREBUILD))).toBe(true);
    // A fresh local build wins over a (possibly stale) prebuild.
    if (fs.existsSync(release)) expect(nativePath).toBe(release);
    const tried = nativeCandidates();
    expect(tried[0]).toBe(release);
    expect(tried.indexOf(path.join(ROOT, PREBUILD))).toBeGreaterThan(tried.indexOf(release));
  });
});

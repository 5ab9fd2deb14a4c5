// `npm run test:versions`: runs the whole vitest suite under each extra
// Node.js major (default 22 24 26), installed by install-node-versions.sh into
// .cache/node/<major>. Each run puts that version's bin/ first on PATH and
// starts vitest with that node, so process.execPath, vitest's workers, the
// fixtures the tests spawn and a plain `node` all are that version
// (test/node-version.test.ts checks it). Each version writes
// test-results/vitest-node<major>.json and .log; the last line printed is
// "N passed, N failed, N skipped" over all of them. Exits 1 if any failed.
// `npm run test:versions` builds dist/ first (pretest:versions), as `npm test`
// does; CI calls this script directly, after `npm test` has built it.
//
// Usage: node scripts/test-versions.js [major...] [--jobs N] [--full] [--with-report <report.json>] [-- vitest args]
//   --jobs N       run N versions at a time (default 1: the suite's process
//                  and fork tests are sensitive to a loaded machine).
//   --full         the full repetition counts; by default each version runs
//                  every test with COWFORK_TEST_LIGHT=1 (fewer forks in the
//                  heaviest ones, see test/helpers.ts), as CI does.
//   --with-report  fold an existing report of the running node into the
//                  summary (CI: the report `npm test` wrote).
//   -- args        passed on to vitest, e.g. `-- test/native.test.ts`.
'use strict';
const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { summarize } = require('./test-report');

const ROOT = path.join(__dirname, '..');
const VITEST = path.join(ROOT, 'node_modules', 'vitest', 'vitest.mjs');
const RESULTS = path.join(ROOT, 'test-results');
// A suite that runs past this is hung; its process group is killed and the version fails.
const VERSION_TIMEOUT_MS = 20 * 60_000;

function parseArgs(argv) {
  const opts = { majors: [], jobs: 1, full: false, withReports: [], vitestArgs: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      opts.vitestArgs = argv.slice(i + 1);
      break;
    }
    if (a === '--jobs') opts.jobs = Number(argv[++i]);
    else if (a === '--full') opts.full = true;
    else if (a === '--with-report') opts.withReports.push(argv[++i]);
    else if (/^\d+$/.test(a)) opts.majors.push(a);
    else throw new TypeError(`test-versions: unknown argument '${a}'`);
  }
  if (!Number.isInteger(opts.jobs) || opts.jobs < 1) throw new RangeError('test-versions: --jobs must be a positive integer');
  if (opts.withReports.some((f) => !f)) throw new TypeError('test-versions: --with-report needs a file');
  if (opts.majors.length === 0) opts.majors = ['22', '24', '26'];
  return opts;
}

const live = new Set();

/** Runs the suite under one major; resolves with its label, report path and seconds taken. */
function runVersion(major, stream, vitestArgs, full) {
  const dir = path.join(ROOT, '.cache', 'node', major);
  const node = path.join(dir, 'bin', 'node');
  const version = spawnSync(node, ['-v'], { encoding: 'utf8' }).stdout.trim();
  const report = path.join(RESULTS, `vitest-node${major}.json`);
  const logFile = path.join(RESULTS, `vitest-node${major}.log`);
  // A stale report would read as this run's result if the run dies early.
  fs.rmSync(report, { force: true });
  const log = fs.openSync(logFile, 'w');
  const env = {
    ...process.env,
    PATH: `${path.join(dir, 'bin')}${path.delimiter}${process.env.PATH ?? ''}`,
    // node-gyp (the package tests build the addon) uses this version's headers, with no download.
    npm_config_nodedir: dir,
    COWFORK_TEST_NODE_MAJOR: major,
    // Every test, with the heaviest repetitions cut (test/helpers.ts reps()); --full keeps them.
    COWFORK_TEST_LIGHT: full ? '0' : '1',
  };
  const started = Date.now();
  if (stream) console.log(`\n=== node ${version}: vitest run ===`);
  return new Promise((resolve) => {
    // Its own process group, so a timeout or Ctrl-C can stop every process the suite started.
    const child = spawn(node, [VITEST, 'run', `--outputFile.json=${report}`, ...vitestArgs], { cwd: ROOT, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(child);
    const out = (chunk) => {
      fs.writeSync(log, chunk);
      if (stream) process.stdout.write(chunk);
    };
    child.stdout.on('data', out);
    child.stderr.on('data', out);
    const timer = setTimeout(() => {
      out(`\ntest-versions: node ${version} ran past ${VERSION_TIMEOUT_MS / 60_000} min; killing it\n`);
      killGroup(child);
    }, VERSION_TIMEOUT_MS);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      live.delete(child);
      fs.closeSync(log);
      const seconds = Math.round((Date.now() - started) / 1000);
      if (!stream) process.stdout.write(`\n=== node ${version}: vitest run ===\n${fs.readFileSync(logFile, 'utf8')}`);
      console.log(`=== node ${version}: vitest exited ${signal ?? code} after ${seconds} s ===`);
      resolve({ label: `node ${version} (${seconds} s)`, report });
    });
  });
}

function killGroup(child) {
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (!fs.existsSync(VITEST)) throw new Error(`test-versions: ${path.relative(ROOT, VITEST)} is missing (run npm install)`);
  // Installs what is missing; a no-op for versions already in .cache/node.
  const install = spawnSync('bash', [path.join(__dirname, 'install-node-versions.sh'), ...opts.majors], { cwd: ROOT, stdio: 'inherit' });
  if (install.status !== 0) throw new Error('test-versions: install-node-versions.sh failed');
  fs.mkdirSync(RESULTS, { recursive: true });

  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.on(sig, () => {
      for (const child of live) killGroup(child);
      process.exit(1);
    });
  }

  const done = [];
  const queue = [...opts.majors];
  const worker = async () => {
    for (let major = queue.shift(); major !== undefined; major = queue.shift()) done.push(await runVersion(major, opts.jobs === 1, opts.vitestArgs, opts.full));
  };
  await Promise.all(Array.from({ length: Math.min(opts.jobs, opts.majors.length) }, worker));

  console.log('');
  const order = (r) => opts.majors.findIndex((m) => r.report.endsWith(`vitest-node${m}.json`));
  const entries = [
    ...opts.withReports.map((file) => `node ${process.version}=${file}`),
    ...done.sort((a, b) => order(a) - order(b)).map((r) => `${r.label}=${r.report}`),
  ];
  return summarize(entries);
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    console.error(err.message);
    process.exitCode = 2;
  },
);

#!/usr/bin/env node
// The fork stress run: `npm run stress` (10,000 forks) and, with
// `--forks 1000`, the CI run in test/stress.test.ts.
//
// It forks through the public API until it has forked --forks times: map with
// one fork per item (isolation), each and map over a pool of long-lived
// children, and prefork masters whose workers are killed and replaced. All the
// while the parent keeps four crypto.pbkdf2 loops on the libuv threadpool and
// runs full collections, a killer sends SIGKILL to a random child of this
// process every few dozen forks, and children run full collections and start
// worker_threads. Then it checks, and exits 1 on any violation:
//   - hangs: every call finishes within --call-timeout ms, and no item hits
//     its timeout (a child that stops making progress is a hang);
//   - unexpected failures: an item may only fail because the killer killed
//     its child (WorkerCrashedError, SIGKILL); an abort, a segfault or an
//     exit code is a violation;
//   - zombies: no child of this process is left, reaped or not;
//   - leaked fds: /proc/self/fd holds as many fds as before the run;
//   - leftover scratch directories: none of this process's in /dev/shm or
//     the temp directory.
// The last line is `STRESS-RESULT {json}`, for the test.
//
// Run it as `node --single-threaded --expose-gc scripts/stress.js [--forks N]
// [--seed S] [--call-timeout MS]`.
'use strict';
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Worker } = require('node:worker_threads');
const { atFork, each, map, prefork, WorkerCrashedError, TimeoutError } = require('../dist');

const args = parseArgs(process.argv.slice(2));
const FORKS = args.forks ?? 10_000;
const SEED = args.seed ?? (Date.now() % 1_000_000);
const CALL_TIMEOUT = args['call-timeout'] ?? 180_000;
const ITEM_TIMEOUT = 60_000;

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i]?.replace(/^--/, '');
    const value = Number(argv[i + 1]);
    if (!['forks', 'seed', 'call-timeout'].includes(key) || !Number.isInteger(value) || value < 0) {
      console.error(`usage: stress.js [--forks N] [--seed S] [--call-timeout MS] (bad argument: ${argv[i]} ${argv[i + 1]})`);
      process.exit(2);
    }
    out[key] = value;
  }
  return out;
}

if (typeof global.gc !== 'function') {
  console.error('stress.js needs --expose-gc (and --single-threaded): node --single-threaded --expose-gc scripts/stress.js');
  process.exit(2);
}

// A seeded generator, so that a failing mix can be run again with --seed.
let state = SEED >>> 0 || 1;
function rand() {
  state = (state + 0x6d2b79f5) >>> 0;
  let t = state;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------
// What is counted.

const counts = {
  forks: 0,
  kills: 0,
  calls: { isolation: 0, pool: 0, prefork: 0 },
  items: { ok: 0, killed: 0 },
  workerThreads: 0,
  preforkRespawns: 0,
};
const violations = { hangs: [], unexpected: [], wrongResults: 0 };
atFork({ parent: () => counts.forks++ });

// ---------------------------------------------------------------------------
// What the children do.

/** 2,000 objects with weak references, so that a full collection hands work to V8's pool. */
function weakGarbage() {
  return Array.from({ length: 2000 }, (_, j) => ({ j, w: new WeakRef({ j }) })).length;
}

function fullGcs(times) {
  for (let k = 0; k < times; k++) {
    weakGarbage();
    global.gc();
  }
}

/** Starts a worker_thread, waits for its answer and its exit. */
function workerThread(x) {
  return new Promise((resolve, reject) => {
    const w = new Worker('const { parentPort, workerData } = require("node:worker_threads"); parentPort.postMessage(workerData * 3);', {
      eval: true,
      workerData: x,
    });
    let value;
    w.on('message', (v) => (value = v));
    w.on('error', reject);
    w.on('exit', (code) => (code === 0 && value === x * 3 ? resolve(value) : reject(new Error(`worker exited ${code} with ${value}`))));
  });
}

/** One item: some arithmetic, and now and then full collections, a worker_thread or an await. */
async function item(x, heavy) {
  let v = 0;
  for (let k = 0; k < 2000; k++) v = (v + x * k) % 1_000_003;
  const kind = x % heavy;
  if (kind === 1) fullGcs(2);
  if (kind === 2) await workerThread(x);
  if (kind === 3) await sleep(2);
  return [x, v];
}

function expected(x) {
  let v = 0;
  for (let k = 0; k < 2000; k++) v = (v + x * k) % 1_000_003;
  return v;
}

// ---------------------------------------------------------------------------
// The killer: every few dozen forks, SIGKILL to one random child.

function childrenOfSelf() {
  const out = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(rest[1]) === process.pid) out.push({ pid: Number(name), state: rest[0] });
    } catch {
      // It exited while we looked.
    }
  }
  return out;
}

function liveChildren() {
  try {
    return fs.readFileSync(`/proc/self/task/${process.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return childrenOfSelf().filter((c) => c.state !== 'Z').map((c) => c.pid);
  }
}

function startKiller() {
  let nextAt = pick(10, 40);
  const timer = setInterval(() => {
    if (counts.forks < nextAt) return;
    const kids = liveChildren();
    if (kids.length === 0) return;
    try {
      process.kill(kids[pick(0, kids.length - 1)], 'SIGKILL');
      counts.kills++;
    } catch {
      // Already gone.
    }
    nextAt = counts.forks + pick(10, 40);
  }, 5);
  return () => clearInterval(timer);
}

// ---------------------------------------------------------------------------
// A busy threadpool: four pbkdf2 loops in the parent.

function startBusyThreadpool() {
  let running = true;
  let calls = 0;
  const loop = () =>
    new Promise((resolve) => {
      const next = () => {
        if (!running) return resolve();
        // About a millisecond of hashing, then a millisecond's pause: the
        // threads are busy at most forks, and leave the 2-core box some room.
        crypto.pbkdf2('password', 'salt', 1000, 32, 'sha256', () => {
          calls++;
          setTimeout(next, 1);
        });
      };
      next();
    });
  const loops = [loop(), loop(), loop(), loop()];
  return async () => {
    running = false;
    await Promise.all(loops);
    return calls;
  };
}

// ---------------------------------------------------------------------------
// The calls.

/** Runs a call under the hang deadline; a call still running at the deadline is a hang. */
async function bounded(label, promise) {
  let timer;
  const deadline = new Promise((resolve) => {
    timer = setTimeout(() => resolve('hang'), CALL_TIMEOUT);
  });
  try {
    const r = await Promise.race([promise.then((value) => ({ value }), (error) => ({ error })), deadline]);
    if (r === 'hang') violations.hangs.push(`${label}: still running after ${CALL_TIMEOUT} ms`);
    return r === 'hang' ? null : r;
  } finally {
    clearTimeout(timer);
  }
}

/** A killed child is expected; so is a pool call that ends because one of its children was killed. */
function isKill(err) {
  if (err instanceof WorkerCrashedError && err.signal === 'SIGKILL') return true;
  return err instanceof WorkerCrashedError && /kept dying/.test(err.message);
}

function failure(label, err) {
  if (err instanceof TimeoutError) violations.hangs.push(`${label}: ${err.message}`);
  else violations.unexpected.push(`${label}: ${err?.stack ?? err}`);
}

function settleOutcomes(label, outcomes, xs) {
  outcomes.forEach((o, i) => {
    if (o.status === 'fulfilled') {
      if (o.value === undefined) return counts.items.ok++; // each()
      if (o.value[0] !== xs[i] || o.value[1] !== expected(xs[i])) violations.wrongResults++;
      else counts.items.ok++;
    } else if (isKill(o.reason)) {
      counts.items.killed++;
    } else {
      failure(`${label} item ${i}`, o.reason);
    }
  });
}

async function isolationCall() {
  counts.calls.isolation++;
  const xs = Array.from({ length: pick(20, 60) }, () => pick(0, 1_000_000));
  const r = await bounded('map isolation', map(xs, (x) => item(x, 25), { isolation: true, concurrency: pick(2, 6), settle: true, timeout: ITEM_TIMEOUT }));
  if (r?.error) failure('map isolation', r.error);
  else if (r) settleOutcomes('map isolation', r.value, xs);
}

async function poolCall() {
  counts.calls.pool++;
  const xs = Array.from({ length: pick(100, 400) }, () => pick(0, 1_000_000));
  const useEach = rand() < 0.5;
  const opts = { concurrency: pick(2, 4), timeout: ITEM_TIMEOUT, settle: rand() < 0.5 };
  const label = `${useEach ? 'each' : 'map'} pool`;
  const r = await bounded(label, useEach ? each(xs, (x) => item(x, 150), opts) : map(xs, (x) => item(x, 150), opts));
  if (r === null) return;
  if (r.error) {
    // Without settle, a killed child fails the whole call.
    if (isKill(r.error)) counts.items.killed++;
    else failure(label, r.error);
  } else if (opts.settle) {
    settleOutcomes(label, r.value, xs);
  } else if (!useEach) {
    settleOutcomes(label, r.value.map((value) => ({ status: 'fulfilled', value })), xs);
  } else {
    counts.items.ok += xs.length;
  }
}

async function preforkCall() {
  counts.calls.prefork++;
  const master = prefork({
    workers: pick(2, 4),
    signals: false,
    timeout: ITEM_TIMEOUT,
    shutdownTimeout: 10_000,
    worker: (ctx) => {
      if (ctx.num === 0) fullGcs(2);
    },
  });
  master.on('forkError', (err) => violations.unexpected.push(`prefork fork: ${err.stack ?? err}`));
  master.on('exit', (e) => {
    // A worker asked to stop exits 0, or dies of the SIGTERM it was sent when
    // that reached it before its handler was installed.
    if (e.reason === 'stop' && (e.exitCode === 0 || e.signal === 'SIGTERM')) return;
    if (e.signal === 'SIGKILL') return; // the killer, or the master's own kill of a stuck worker
    violations.unexpected.push(`prefork worker ${e.num} (pid ${e.pid}) exited with code ${e.exitCode}, signal ${e.signal}, reason ${e.reason}`);
  });
  master.on('timeout', (e) => violations.hangs.push(`prefork worker ${e.num} (pid ${e.pid}) stopped its heartbeat`));
  master.on('spawn', () => counts.preforkRespawns++);
  // Readiness may fail when the killer takes a worker before it is ready.
  await bounded('prefork ready', master.ready.catch(() => {}));
  // Kill a few workers: each is replaced by a new fork.
  for (let k = pick(2, 8); k > 0; k--) {
    const stats = master.stats();
    if (stats.length > 0) {
      try {
        process.kill(stats[pick(0, stats.length - 1)].pid, 'SIGKILL');
        counts.kills++;
      } catch {
        // Already gone.
      }
    }
    await sleep(pick(5, 40));
  }
  const r = await bounded('prefork stop', master.stop());
  if (r?.error) failure('prefork stop', r.error);
}

// ---------------------------------------------------------------------------
// The checks.

function openFds() {
  const out = new Map();
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      out.set(fd, fs.readlinkSync(`/proc/self/fd/${fd}`));
    } catch {
      // The fd readdir itself used.
    }
  }
  return out;
}

function scratchDirs() {
  const out = [];
  for (const base of new Set(['/dev/shm', os.tmpdir()])) {
    try {
      for (const name of fs.readdirSync(base)) if (name.startsWith(`cowfork-${process.pid}-`)) out.push(path.join(base, name));
    } catch {
      // No such base.
    }
  }
  return out;
}

async function main() {
  const started = Date.now();
  const load = os.loadavg()[0].toFixed(2);
  // One of each first, so that fds the process keeps for good (libuv's
  // signal pipe, the threadpool, the /dev/null Node opens on the first use of
  // process.stderr) are open before the baseline is taken.
  process.stderr.write(`stress: ${FORKS} forks, seed ${SEED}\n`);
  const stopWarmup = startBusyThreadpool();
  await isolationCall();
  await poolCall();
  await preforkCall();
  await stopWarmup();
  global.gc();
  const fdsBefore = openFds();
  const dirsBefore = scratchDirs();

  const stopBusy = startBusyThreadpool();
  const stopKiller = startKiller();
  let lastReport = Date.now();
  let parentGcs = 0;
  while (counts.forks < FORKS && violations.hangs.length === 0) {
    const r = rand();
    if (r < 0.7) await isolationCall();
    else if (r < 0.9) await poolCall();
    else await preforkCall();
    if (rand() < 0.2) {
      weakGarbage();
      global.gc();
      parentGcs++;
    }
    if (Date.now() - lastReport > 10_000) {
      lastReport = Date.now();
      process.stderr.write(`stress: ${counts.forks}/${FORKS} forks, ${counts.kills} kills, ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
    }
  }
  stopKiller();
  const pbkdf2Calls = await stopBusy();

  // Every call has settled, so every child has been reaped; a child of ours
  // still listed is a leak (a zombie, or a live process nobody waits for).
  let left = childrenOfSelf();
  for (let i = 0; i < 40 && left.length > 0; i++) {
    await sleep(50);
    left = childrenOfSelf();
  }
  for (const c of left) process.kill(c.pid, 'SIGKILL');
  const fdsAfter = openFds();
  const newFds = [...fdsAfter].filter(([fd, target]) => fdsBefore.get(fd) !== target);
  const dirsAfter = scratchDirs().filter((d) => !dirsBefore.includes(d));

  const seconds = (Date.now() - started) / 1000;
  const result = {
    forks: counts.forks,
    seconds: Math.round(seconds),
    seed: SEED,
    kills: counts.kills,
    calls: counts.calls,
    items: counts.items,
    preforkSpawns: counts.preforkRespawns,
    parentGcs,
    pbkdf2Calls,
    hangs: violations.hangs.length,
    unexpected: violations.unexpected.length,
    wrongResults: violations.wrongResults,
    zombies: left.length,
    leakedFds: fdsAfter.size - fdsBefore.size,
    leftoverDirs: dirsAfter.length,
    load1: load,
  };
  const ok = result.hangs === 0 && result.unexpected === 0 && result.wrongResults === 0 && result.zombies === 0 && result.leakedFds === 0 && result.leftoverDirs === 0 && result.forks >= FORKS;
  console.log(`stress: ${result.forks} forks in ${result.seconds} s (seed ${SEED}, 1-min load ${load} at start)`);
  console.log(`  calls: ${counts.calls.isolation} map isolation, ${counts.calls.pool} each/map pool, ${counts.calls.prefork} prefork masters (${counts.preforkRespawns} worker forks)`);
  console.log(`  kill -9: ${counts.kills}; items: ${counts.items.ok} ok, ${counts.items.killed} lost to kill -9; parent: ${parentGcs} full GCs, ${pbkdf2Calls} pbkdf2 calls`);
  console.log(`  hangs ${result.hangs}, unexpected failures ${result.unexpected}, wrong results ${result.wrongResults}, zombies ${result.zombies}, leaked fds ${result.leakedFds} (${fdsBefore.size} before, ${fdsAfter.size} after), leftover scratch dirs ${result.leftoverDirs}`);
  for (const v of [...violations.hangs, ...violations.unexpected].slice(0, 20)) console.log(`  violation: ${v}`);
  for (const c of left) console.log(`  left child: ${c.pid} (state ${c.state})`);
  for (const d of dirsAfter) console.log(`  left dir: ${d}`);
  for (const [fd, target] of newFds) console.log(`  fd ${fd} -> ${target} (not open before)`);
  console.log(`STRESS-RESULT ${JSON.stringify(result)}`);
  return ok ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);

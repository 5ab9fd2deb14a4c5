// iterate across machines (cowfork/bullmq): items per second with 1, 2 and 3
// machine processes over a CPU-bound `each`, beside a local run, and what a
// checkpoint to Redis costs against the local file store.
// Run as `npm run bench -- iterate-bullmq`; prints a Markdown section on stdout.
// It starts the Redis test server (scripts/redis-test-server.sh) when it is not
// running, and stops it again if it started it.
//
// `node --single-threaded bench/iterate-bullmq.bench.js machine <json>` is one
// machine process of a run (the suite starts them itself).
'use strict';
const { spawn, spawnSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { iterate, range } = require('../dist');
const { work, median, timedFileStore } = require('./iterate-work');
const { BullMQEngine } = require('../dist/bullmq');

const log = (...a) => console.error('iterate-bullmq bench:', ...a);
const SERVER = path.join(__dirname, '..', 'scripts', 'redis-test-server.sh');

const ITEMS = 6000;
const PARTITIONS = 6;
const REPEATS = 3;
const LOCK_MS = 10_000;

function engineFor(port, name) {
  return new BullMQEngine({ connection: { host: '127.0.0.1', port }, name, lockDuration: LOCK_MS });
}

async function runMachine(cfg) {
  const engine = engineFor(cfg.port, cfg.name);
  try {
    work(1);
    const r = await iterate({ engine, concurrency: 1, build: range(0, cfg.items), each: (n) => void work(n), checkpointEvery: { ms: 1000 } });
    if (!r.complete) throw new Error('bench machine: run did not complete');
  } finally {
    await engine.close();
  }
}

function startMachine(cfg) {
  const proc = spawn(process.execPath, ['--single-threaded', __filename, 'machine', JSON.stringify(cfg)], { stdio: ['ignore', 'ignore', 'inherit'] });
  return new Promise((resolve, reject) => {
    proc.on('error', reject);
    proc.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`bench machine exited with ${code}`))));
  });
}

/** One run over `machines` processes: enqueue, start them all, wait for all. */
async function timeMachines(port, machines, items = ITEMS) {
  const name = `cowfork-bench-${crypto.randomBytes(6).toString('hex')}`;
  const engine = engineFor(port, name);
  await engine.enqueue({ instances: PARTITIONS });
  const t0 = performance.now();
  await Promise.all(Array.from({ length: machines }, () => startMachine({ port, name, items })));
  const ms = performance.now() - t0;
  await engine.destroy();
  await engine.close();
  return ms;
}

/**
 * A run of trivial items with a save after every report batch, timing each
 * save in the parent: a file store, or the engine (its per-partition saves,
 * timed around the engine's save).
 */
async function checkpointCost(port, dir, kind, every) {
  const TRIVIAL = 20_000;
  const acc = { ms: 0, saves: 0 };
  let opts;
  let cleanup = async () => undefined;
  if (kind === 'file') {
    opts = { instances: 2, checkpoint: timedFileStore(path.join(dir, `cp-${crypto.randomBytes(4).toString('hex')}.json`), acc) };
  } else {
    const name = `cowfork-bench-${crypto.randomBytes(6).toString('hex')}`;
    const engine = engineFor(port, name);
    await engine.enqueue({ instances: 2 });
    const timed = {
      async openLeases(concurrency) {
        const leases = await engine.openLeases(concurrency);
        const save = leases.save.bind(leases);
        leases.save = async (...args) => {
          const t = performance.now();
          await save(...args);
          acc.ms += performance.now() - t;
          acc.saves++;
        };
        return leases;
      },
    };
    opts = { engine: timed, concurrency: 2 };
    cleanup = async () => {
      await engine.destroy();
      await engine.close();
    };
  }
  const t0 = performance.now();
  const r = await iterate({ ...opts, build: range(0, TRIVIAL), each: () => undefined, checkpointEvery: every });
  const ms = performance.now() - t0;
  await cleanup();
  if (!r.complete) throw new Error('bench run did not complete');
  return { ms, saves: acc.saves, perSave: acc.saves === 0 ? 0 : (acc.ms / acc.saves) * 1000, items: TRIVIAL };
}

async function main() {
  const startedHere = spawnSync('bash', [SERVER, 'status']).status !== 0;
  const started = spawnSync('bash', [SERVER, 'start'], { encoding: 'utf8' });
  if (started.status !== 0) throw new Error(`the Redis test server did not start: ${started.stderr}`);
  const port = Number(/REDIS_PORT=(\d+)/.exec(started.stdout)[1]);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cowfork-bench-bullmq-'));
  try {
    const load = os.loadavg()[0];
    work(1);
    const configs = ['local', 1, 2, 3, 'empty'];
    const times = new Map(configs.map((c) => [c, []]));
    for (let r = 0; r < REPEATS; r++) {
      for (const c of configs) {
        let ms;
        if (c === 'local') {
          const t0 = performance.now();
          const res = await iterate({ instances: 1, checkpoint: path.join(dir, `local-${r}.json`), build: range(0, ITEMS), each: (n) => void work(n) });
          ms = performance.now() - t0;
          if (!res.complete) throw new Error('bench local run did not complete');
        } else if (c === 'empty') {
          ms = await timeMachines(port, 1, 0);
        } else {
          ms = await timeMachines(port, c);
        }
        times.get(c).push(ms);
      }
      log(`round ${r + 1}: ${configs.map((c) => `${c}:${times.get(c)[r].toFixed(0)}ms`).join(' ')}`);
    }
    const local = median(times.get('local'));

    const cost = { file: [], bullmq: [] };
    const rare = { file: [], bullmq: [] };
    for (let r = 0; r < REPEATS; r++) {
      for (const kind of ['file', 'bullmq']) {
        cost[kind].push(await checkpointCost(port, dir, kind, { items: 1, ms: 600_000 }));
        rare[kind].push(await checkpointCost(port, dir, kind, { ms: 600_000 }));
      }
    }
    const mid = (xs) => [...xs].sort((x, y) => x.ms - y.ms)[Math.floor(xs.length / 2)];

    const fmt = (n) => Math.round(n).toLocaleString('en-US');
    const out = [];
    out.push('## iterate across machines (cowfork/bullmq)');
    out.push('');
    out.push(
      `CPU-bound \`each\` (about ${(local / ITEMS).toFixed(2)} ms of integer hashing per item), ${fmt(ITEMS)} items in ${PARTITIONS} partitions, ` +
        'leased through BullMQ on the Redis test server (127.0.0.1, same host). Each machine is its own `node --single-threaded` process ' +
        'with `concurrency: 1`; a run is timed from starting the machines (the run already enqueued) until every machine has exited, ' +
        'so it includes process start-up, loading bullmq, connecting, and the wait for the run to end everywhere. ' +
        `Median of ${REPEATS} rounds, the configurations taking turns. A shared 2-core box (1-minute load average ${load.toFixed(1)} ` +
        'when the suite started): compare ratios within this section. Three machines on two cores cannot beat two.',
    );
    out.push('');
    out.push('| run | time (ms) | items/s | vs local, 1 instance |');
    out.push('|---|---:|---:|---:|');
    for (const c of configs.filter((x) => x !== 'empty')) {
      const ms = median(times.get(c));
      const label = c === 'local' ? 'local iterate, 1 instance, checkpoint file' : `${c} machine process${c > 1 ? 'es' : ''}`;
      out.push(`| ${label} | ${fmt(ms)} | ${fmt((ITEMS / ms) * 1000)} | ${(local / ms).toFixed(2)}x |`);
    }
    out.push('');
    out.push(
      `The fixed cost of a machine process, from the same rounds: 1 machine over the ${PARTITIONS} partitions of an empty range ` +
        `(start-up, loading bullmq, connecting, ${PARTITIONS} leases and forks, the parent job, closing) takes ${fmt(median(times.get('empty')))} ms.`,
    );
    out.push('');
    out.push('Checkpoint cost, 20,000 trivial items over 2 instances (one process), saving after every report batch (`checkpointEvery: { items: 1 }`) vs about once:');
    out.push('');
    out.push('| store | parent time per save | saves | run, saving every batch | run, saving about once |');
    out.push('|---|---:|---:|---:|---:|');
    for (const kind of ['file', 'bullmq']) {
      const c = mid(cost[kind]);
      const r = mid(rare[kind]);
      const label = kind === 'file' ? 'local checkpoint file (atomic, fsynced)' : 'BullMQ job data on Redis (one `updateData` per partition)';
      out.push(`| ${label} | ${fmt(c.perSave)} µs | ${c.saves} | ${fmt(c.ms)} ms | ${fmt(r.ms)} ms |`);
    }
    out.push('');
    out.push(
      'A file save writes every instance\'s cursor in one fsynced file; an engine save is one Redis round trip per partition whose ' +
        'cursor moved, awaited while the instances keep working (their reports wait in the pipe), and Redis here does not fsync. ' +
        'The engine run also pays connecting, the lease of each partition and the flow\'s parent job.',
    );
    process.stdout.write(`${out.join('\n')}\n`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
    if (startedHere) spawnSync('bash', [SERVER, 'stop']);
  }
}

if (process.argv[2] === 'machine') {
  runMachine(JSON.parse(process.argv[3])).catch((err) => {
    console.error(err);
    process.exit(1);
  });
} else {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}

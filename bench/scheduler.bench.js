'use strict';
// Scheduler: what a fiber resume costs next to a bare promise resolution and
// a setImmediate hop; how fast ioWait wakes on a pipe next to a net.Socket
// 'data' event; how far pause(0.01) overshoots. Peers are measured side by
// side in this one run. Prints a Markdown section; progress goes to stderr.
const { AsyncLocalStorage } = require('node:async_hooks');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
/** The 1-minute load average when the suite starts, for the section's header. */
const LOAD_AT_START = os.loadavg()[0];
const { spawn } = require('node:child_process');
const { Scheduler } = require('../dist');
const { native } = require('../dist/native');

const FIBERS = 1000;
const STEPS = Number(process.env.BENCH_STEPS || 100);
const REPS = Number(process.env.BENCH_REPS || 5);
const ROUND_TRIPS = Number(process.env.BENCH_ROUND_TRIPS || 2000);
const PAUSES = Number(process.env.BENCH_PAUSES || 300);
const MEM_FIBERS = 10_000;

const tickCallback = process._tickCallback;

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function quantile(xs, q) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}

function log(msg) {
  process.stderr.write(`${msg}\n`);
}

function inMacrotask(fn) {
  return new Promise((resolve, reject) =>
    setImmediate(() => {
      try {
        resolve(fn());
      } catch (err) {
        reject(err);
      }
    }),
  );
}

async function time(fn, gc) {
  if (gc) global.gc?.();
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

/**
 * Runs every kind once per round, in turn, REPS rounds after a warm-up
 * round, so a burst of load from other jobs hits all kinds alike; with `gc`,
 * after a full collection before each run. Returns,
 * per kind, the median time and the median of its per-round ratio to the
 * first kind (the baseline).
 */
async function rounds(kinds, { gc = true } = {}) {
  for (const k of kinds) await k.fn(); // warm-up
  const times = kinds.map(() => []);
  for (let r = 0; r < REPS; r++) {
    for (let i = 0; i < kinds.length; i++) times[i].push(await time(kinds[i].fn, gc));
  }
  return kinds.map((k, i) => {
    const ratios = times[i].map((t, r) => t / times[0][r]);
    log(`  ${k.label}: ${times[i].map((t) => t.toFixed(1)).join(' ')} ms; ratios ${ratios.map((x) => x.toFixed(2)).join(' ')}`);
    return { ...k, ms: median(times[i]), ratio: median(ratios) };
  });
}

// ---------------------------------------------------------------------------
// 1. Resume cost: FIBERS fibers each resumed STEPS times.

// Fiber bodies that resume STEPS times, one of each kind.
const asyncBody = (s) => async () => {
  for (let k = 0; k < STEPS; k++) await s.pause(0);
};
const generatorBody = (s) =>
  function* () {
    for (let k = 0; k < STEPS; k++) yield s.pause(0);
  };

/** FIBERS fibers of `body` driven by runUntilEmpty() (from a macrotask, as async fibers need). */
function resumeSync(body) {
  return () => {
    const s = new Scheduler({ eventLoop: false });
    return inMacrotask(() => {
      for (let i = 0; i < FIBERS; i++) s.spawn(body(s));
      s.runUntilEmpty();
    });
  };
}

/** FIBERS fibers of `body` driven by the event loop. */
function resumeLoop(body) {
  return () => {
    const s = new Scheduler();
    const fibers = [];
    for (let i = 0; i < FIBERS; i++) fibers.push(s.spawn(body(s)));
    return Promise.all(fibers.map((f) => f.done));
  };
}

// The same shape without a scheduler: async functions awaiting promises whose
// resolvers a driver loop calls, draining microtasks after each round.
// With `als`, each function runs inside AsyncLocalStorage.run, as a fiber
// does: this isolates what the promise hooks cost from the scheduler's own work.
function barePromises(als) {
  return inMacrotask(() => {
    let waiting = [];
    let live = FIBERS;
    const park = () => new Promise((resolve) => waiting.push(resolve));
    const body = async () => {
      for (let k = 0; k < STEPS; k++) await park();
      live--;
    };
    for (let i = 0; i < FIBERS; i++) {
      if (als) als.run(i, body);
      else body();
    }
    while (live > 0) {
      const ready = waiting;
      waiting = [];
      for (const r of ready) r();
      tickCallback.call(process);
    }
    als?.disable();
  });
}

function immediates() {
  const all = [];
  for (let i = 0; i < FIBERS; i++) {
    all.push(
      (async () => {
        for (let k = 0; k < STEPS; k++) await new Promise((r) => setImmediate(r));
      })(),
    );
  }
  return Promise.all(all);
}

// ---------------------------------------------------------------------------
// 1b. Memory: heap bytes per parked fiber, MEM_FIBERS fibers parked in a
// long pause at once, for each kind. Kinds take turns, REPS rounds.

async function parkedBytes(kind) {
  const s = new Scheduler({ eventLoop: false });
  return inMacrotask(() => {
    global.gc();
    const before = process.memoryUsage().heapUsed;
    const fibers = new Array(MEM_FIBERS);
    for (let i = 0; i < MEM_FIBERS; i++) {
      fibers[i] =
        kind === 'generator'
          ? s.spawn(function* () {
              yield s.pause(60);
            })
          : s.spawn(async () => {
              await s.pause(60);
            });
    }
    s.tick(); // every fiber starts and parks
    if (s.pendingTimers !== MEM_FIBERS) throw new Error(`${kind}: ${s.pendingTimers} parked, not ${MEM_FIBERS}`);
    global.gc();
    const bytes = (process.memoryUsage().heapUsed - before) / MEM_FIBERS;
    for (const f of fibers) f.cancel();
    s.runUntilEmpty();
    return bytes;
  });
}

async function memory() {
  const out = { async: [], generator: [] };
  for (let r = 0; r < REPS; r++) {
    for (const kind of ['async', 'generator']) out[kind].push(await parkedBytes(kind));
  }
  for (const kind of Object.keys(out)) log(`  ${kind}: ${out[kind].map((b) => b.toFixed(0)).join(' ')} bytes/fiber`);
  return { async: median(out.async), generator: median(out.generator) };
}

// ---------------------------------------------------------------------------
// 2. Wake-up latency: round trips through `cat` over two pipes.

function catPeer() {
  const [aRead, aWrite] = native.pipe(true); // parent -> cat
  const [bRead, bWrite] = native.pipe(true); // cat -> parent
  const child = spawn('cat', [], { stdio: [aRead, bWrite, 'inherit'] });
  native.close(aRead);
  native.close(bWrite);
  return {
    aWrite,
    bRead,
    close() {
      native.close(aWrite);
      child.kill();
      return new Promise((r) => child.once('exit', r));
    },
  };
}

const ONE = Buffer.from('x');
const BUF = Buffer.alloc(64);

function readSome(fd) {
  try {
    return fs.readSync(fd, BUF);
  } catch (err) {
    if (err.code === 'EAGAIN') return 0;
    throw err;
  }
}

async function pingIoWaitLoop(peer) {
  const samples = [];
  const s = new Scheduler();
  await s.spawn(async () => {
    for (let i = 0; i < ROUND_TRIPS; i++) {
      const t = process.hrtime.bigint();
      fs.writeSync(peer.aWrite, ONE);
      while ((await s.ioWait(peer.bRead, Scheduler.READ)) && readSome(peer.bRead) === 0);
      samples.push(Number(process.hrtime.bigint() - t) / 1000);
    }
  }).done;
  return samples;
}

function pingIoWaitSync(peer) {
  const samples = [];
  const s = new Scheduler({ eventLoop: false });
  return inMacrotask(() => {
    s.spawn(async () => {
      for (let i = 0; i < ROUND_TRIPS; i++) {
        const t = process.hrtime.bigint();
        fs.writeSync(peer.aWrite, ONE);
        while ((await s.ioWait(peer.bRead, Scheduler.READ)) && readSome(peer.bRead) === 0);
        samples.push(Number(process.hrtime.bigint() - t) / 1000);
      }
    });
    s.runUntilEmpty();
    return samples;
  });
}

function pingSocket(peer) {
  const samples = [];
  const sock = new net.Socket({ fd: peer.bRead, readable: true, writable: false });
  return new Promise((resolve) => {
    let t = 0n;
    const send = () => {
      t = process.hrtime.bigint();
      fs.writeSync(peer.aWrite, ONE);
    };
    sock.on('data', () => {
      samples.push(Number(process.hrtime.bigint() - t) / 1000);
      if (samples.length === ROUND_TRIPS) {
        sock.pause();
        sock.removeAllListeners('data');
        // The socket owns bRead now; destroying it closes the fd.
        sock.destroy();
        resolve(samples);
      } else send();
    });
    send();
  });
}

async function latency(label, run) {
  const peer = catPeer();
  try {
    await run(peer); // warm-up
  } finally {
    await peer.close().catch(() => {});
  }
  const again = catPeer();
  let samples;
  try {
    samples = await run(again);
  } finally {
    await again.close();
  }
  log(`  ${label}: median ${median(samples).toFixed(1)} µs`);
  return samples;
}

// catPeer() leaves bRead open for the ioWait runs; the socket run closes it itself.
function withOwnedRead(run) {
  return async (peer) => {
    try {
      return await run(peer);
    } finally {
      native.close(peer.bRead);
    }
  };
}

// ---------------------------------------------------------------------------
// 3. pause(0.01) overshoot. The three timers take turns, one sample each, so
// a burst of load from other jobs hits all three alike.

async function overshoots() {
  const loopScheduler = new Scheduler();
  const syncScheduler = new Scheduler({ eventLoop: false });
  const out = { timeout: [], loop: [], sync: [] };
  for (let i = 0; i < PAUSES; i++) {
    let t = performance.now();
    await new Promise((r) => setTimeout(r, 10));
    out.timeout.push(performance.now() - t - 10);

    await loopScheduler.spawn(async () => {
      t = performance.now();
      await loopScheduler.pause(0.01);
      out.loop.push(performance.now() - t - 10);
    }).done;

    await inMacrotask(() => {
      syncScheduler.spawn(async () => {
        t = performance.now();
        await syncScheduler.pause(0.01);
        out.sync.push(performance.now() - t - 10);
      });
      syncScheduler.runUntilEmpty();
    });
  }
  return out;
}

// ---------------------------------------------------------------------------

async function main() {
  const resumes = FIBERS * STEPS;
  log(`resume cost (${FIBERS} fibers x ${STEPS} resumes, ${REPS} rounds, kinds taking turns)`);
  const als = new AsyncLocalStorage();
  const [bare, bareAls, sync, loop, genSync, genLoop, imm] = await rounds([
    { label: 'bare promise', fn: () => barePromises(null) },
    { label: 'bare promise in AsyncLocalStorage', fn: () => barePromises(als) },
    { label: 'async fiber, runUntilEmpty', fn: resumeSync(asyncBody) },
    { label: 'async fiber, event loop', fn: resumeLoop(asyncBody) },
    { label: 'generator fiber, runUntilEmpty', fn: resumeSync(generatorBody) },
    { label: 'generator fiber, event loop', fn: resumeLoop(generatorBody) },
    { label: 'setImmediate', fn: immediates },
  ]);
  // After a full GC the generator rows run several times slower (V8
  // deoptimizes the resume path then: see the note in the output). The same
  // two rows without the forced GC:
  log('resume cost without a forced full GC before each run');
  const [bareWarm, genWarm] = await rounds(
    [
      { label: 'bare promise', fn: () => barePromises(null) },
      { label: 'generator fiber, runUntilEmpty', fn: resumeSync(generatorBody) },
    ],
    { gc: false },
  );
  const ns = (k) => ((k.ms * 1e6) / resumes).toFixed(0);
  const row = (what, k) => `| ${what} | ${k.ms.toFixed(1)} ms | ${ns(k)} ns | ${k.ratio.toFixed(2)}× |`;

  log(`memory (${MEM_FIBERS} parked fibers, ${REPS} rounds)`);
  const mem = await memory();

  log(`wake-up latency (${ROUND_TRIPS} round trips through cat)`);
  const wSocket = await latency('net.Socket data', pingSocket);
  const wLoop = await latency('ioWait, event loop', withOwnedRead(pingIoWaitLoop));
  const wSync = await latency('ioWait, runUntilEmpty', withOwnedRead(pingIoWaitSync));
  const sockMed = median(wSocket);

  log(`pause(0.01) overshoot (${PAUSES} pauses)`);
  const { timeout: oTimeout, loop: oLoop, sync: oSync } = await overshoots();
  log('  done');

  const us = (x) => x.toFixed(1);
  const ms = (x) => x.toFixed(2);
  const lines = [
    '## Scheduler',
    '',
    `Numbers from a shared 2-core machine, ${LOAD_AT_START > 2 ? 'busy' : 'quiet'} when the suite started (1-minute load ` +
      `average ${LOAD_AT_START.toFixed(1)}${LOAD_AT_START > 2 ? ': other jobs were running' : ''}); compare the ratios within a table, not absolute numbers. The AsyncLocalStorage ` +
      `that tells the scheduler which async fiber is running is on while any async fiber lives, and on Node 20 it ` +
      `slows every promise in the process: the second row shows that share of the gap to a bare promise. ` +
      `Generator fibers need no AsyncLocalStorage and no microtask drain: the drivers call the generator.`,
    '',
    `### Resume cost: ${FIBERS} fibers × ${STEPS} resumes (\`pause(0)\`, a yield that skips the timer heap)`,
    '',
    `The kinds take turns, ${REPS} rounds after a warm-up round. *total* is the median time of a round; ` +
      `*vs bare promise* is the median of the per-round ratios to the bare promise row of the same round.`,
    '',
    '| how a fiber is resumed | total | per resume | vs bare promise |',
    '|---|---|---|---|',
    row('bare promise resolution + `process._tickCallback()` per round', bare),
    row('bare promise, inside `AsyncLocalStorage.run`', bareAls),
    row('async fiber (`await s.pause(0)`), `runUntilEmpty()`', sync),
    row('async fiber, event loop', loop),
    row('**generator fiber (`yield s.pause(0)`), `runUntilEmpty()`**', genSync),
    row('generator fiber, event loop', genLoop),
    row('`await new Promise(setImmediate)`', imm),
    '',
    'Each run above starts after a full GC (`global.gc()`), as in the other suites, and each fiber is a new ' +
      'closure, so every scheduler and fiber of the previous round is garbage. V8 holds the maps (hidden classes) ' +
      'of such instances only weakly: with no instance alive, a full GC freed them and discarded every optimized ' +
      'function that checked them (`--trace-deopt`: \u201cweak objects\u201d in `pass`, `stepGenerator`, `enqueue`, ' +
      '`pause`, `spawn`), which were then compiled again on the main thread (`--single-threaded`): 2.4\u00d7 before. ' +
      'The Scheduler class now holds one idle instance of each engine class (`shapeAnchors()` in ' +
      '`src/scheduler/index.ts`), which keeps those maps. Async fibers still pay for Node\u2019s own promise hooks ' +
      '(`AsyncLocalStorage`), whose code V8 also discards after a GC. The same two kinds taking turns without the forced GC: bare promise ' +
      `${bareWarm.ms.toFixed(1)} ms, generator fiber ${genWarm.ms.toFixed(1)} ms, median per-round ratio ` +
      `${genWarm.ratio.toFixed(2)}×.`,
    '',
    `Target for a generator fiber resume under \`runUntilEmpty()\`: at most 1.5× a bare promise resolution: ` +
      `with a full GC before each run ${genSync.ratio <= 1.5 ? 'met' : '**not met**'} (${genSync.ratio.toFixed(2)}×); ` +
      `without it ${genWarm.ratio <= 1.5 ? 'met' : '**not met**'} (${genWarm.ratio.toFixed(2)}×).`,
    '',
    `### Memory: ${MEM_FIBERS} fibers parked at once in \`pause(60)\`, median of ${REPS} rounds taking turns`,
    '',
    'Heap growth after a full GC, divided by the fiber count; it includes the Fiber, its park, and the suspended ' +
      'function (a generator object, or an async function with its promises).',
    '',
    '| fiber kind | bytes per parked fiber |',
    '|---|---|',
    `| async function | ${mem.async.toFixed(0)} |`,
    `| generator function | ${mem.generator.toFixed(0)} |`,
    '',
    `### Wake-up latency: ${ROUND_TRIPS} one-byte round trips through \`cat\` over two pipes`,
    '',
    'One fiber writes a byte and waits for the echo. Each round trip includes `cat`\u2019s own read and write.',
    '',
    '| waiting with | median | p99 | median vs net.Socket |',
    '|---|---|---|---|',
    `| \`net.Socket\` 'data' event | ${us(sockMed)} µs | ${us(quantile(wSocket, 0.99))} µs | 1.00× |`,
    `| \`ioWait\`, event loop (libuv poll watcher) | ${us(median(wLoop))} µs | ${us(quantile(wLoop, 0.99))} µs | ${(median(wLoop) / sockMed).toFixed(2)}× |`,
    `| \`ioWait\`, \`runUntilEmpty()\` (poll(2)) | ${us(median(wSync))} µs | ${us(quantile(wSync, 0.99))} µs | ${(median(wSync) / sockMed).toFixed(2)}× |`,
    '',
    `### \`pause(0.01)\` overshoot: ${PAUSES} pauses of each kind, taking turns`,
    '',
    '| timer | p50 overshoot | p99 overshoot | max |',
    '|---|---|---|---|',
    `| \`setTimeout(10)\` | ${ms(quantile(oTimeout, 0.5))} ms | ${ms(quantile(oTimeout, 0.99))} ms | ${ms(Math.max(...oTimeout))} ms |`,
    `| \`pause(0.01)\`, event loop | ${ms(quantile(oLoop, 0.5))} ms | ${ms(quantile(oLoop, 0.99))} ms | ${ms(Math.max(...oLoop))} ms |`,
    `| \`pause(0.01)\`, \`runUntilEmpty()\` | ${ms(quantile(oSync, 0.5))} ms | ${ms(quantile(oSync, 0.99))} ms | ${ms(Math.max(...oSync))} ms |`,
    '',
    `Minimum overshoot: \`setTimeout\` ${ms(Math.min(...oTimeout))} ms, \`pause\` ${ms(Math.min(...oLoop, ...oSync))} ms. ` +
      'A negative one is a wake-up earlier than 10 ms after the caller read the clock: as libuv does for ' +
      '`setTimeout` (its loop time), a deadline made inside a pass counts from the time the pass started, so ' +
      'that the parks of one pass fire in the order of their delays; on a loaded machine a fiber can read the ' +
      'clock a few ms after its pass started.',
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

main().catch((err) => {
  process.stderr.write(`${err.stack}\n`);
  process.exit(1);
});

#!/usr/bin/env node
// prefork vs node:cluster, same app, same run: throughput, total PSS with a
// preloaded 200 MB heap, fork-to-ready time, and replacement after kill -9.
// Each server runs in its own process (this file, in a server mode); this
// process drives them, loads them with wrk (autocannon if wrk is missing),
// and reads /proc/<pid>/smaps_rollup. Prints a Markdown section on stdout.
'use strict';
const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const path = require('node:path');

const WORKERS = 4;
const PRELOAD_MB = 200;
const ROUNDS = Number(process.env.BENCH_ROUNDS || 12);
const ROUND_SECONDS = 2;
const CLOSE_ROUNDS = 6;
const log = (...a) => process.stderr.write(`prefork bench: ${a.join(' ')}\n`);
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN;
};
/** The middle half of xs: [first quartile, third quartile]. */
const quartiles = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return [s[Math.floor((s.length - 1) / 4)], s[Math.ceil(((s.length - 1) * 3) / 4)]];
};
const emit = (o) => process.stdout.write(JSON.stringify(o) + '\n');

// ---------------------------------------------------------------------------
// The app both servers run. `preload` builds about `mb` MB of ordinary JS
// objects at load time, as an app's caches and tables would be.

function preload(mb) {
  const data = [];
  if (mb <= 0) return data;
  // About 100 bytes per entry on a 64-bit heap.
  const n = Math.round((mb * 1024 * 1024) / 100);
  for (let i = 0; i < n; i++) data.push({ i, s: `item-${i}`, v: [i, i + 1] });
  return data;
}

function makeHandler(data) {
  let k = 0;
  return (req, res) => {
    const item = data.length ? data[(k = (k + 7919) % data.length)] : { i: 0, s: 'hello' };
    const body = JSON.stringify({ i: item.i, s: item.s, pid: process.pid });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };
}

// ---------------------------------------------------------------------------
// Server modes.

// withMetrics: the app counts every request with a prom-client counter, and
// the master serves the merged /metrics (the cost of metrics per request).
// reusePort: a listening socket per worker (SO_REUSEPORT), so that the kernel
// spreads new connections evenly instead of whichever worker accepts first.
function preforkServer(port, mb, { withMetrics = false, reusePort = false } = {}) {
  const { prefork } = require('..');
  const data = preload(mb);
  let handler = makeHandler;
  if (withMetrics) {
    const client = require('prom-client');
    const requests = new client.Counter({ name: 'bench_requests_total', help: 'Requests served.' });
    handler = (d) => {
      const h = makeHandler(d);
      return (req, res) => {
        requests.inc();
        h(req, res);
      };
    };
  }
  const t0 = performance.now();
  const forkAt = new Map();
  const readyMs = [];
  const master = prefork({
    workers: WORKERS,
    listen: `127.0.0.1:${port}`,
    signals: false,
    reusePort,
    beforeFork: ({ num }) => forkAt.set(num, performance.now()),
    worker: (ctx) => ctx.serve(handler(data)),
    ...(withMetrics ? { metrics: { port: 0, host: '127.0.0.1' } } : {}),
  });
  let replacing = null;
  master.on('exit', (e) => {
    log(`prefork worker ${e.num} (pid ${e.pid}) exited: ${e.reason}`);
    replacing = { num: e.num };
  });
  master.on('spawn', (e) => {
    if (replacing && replacing.num === e.num) replacing.forkWall = Date.now();
  });
  master.on('ready', (e) => {
    readyMs.push(performance.now() - forkAt.get(e.num));
    if (replacing && replacing.num === e.num) {
      const r = replacing;
      replacing = null;
      emit({ event: 'replaced', forkWall: r.forkWall, readyWall: Date.now() });
    }
  });
  master.ready.then(() =>
    emit({
      event: 'ready',
      master: process.pid,
      workers: master.stats().map((s) => s.pid),
      forkToReady: readyMs.slice(),
      startToReady: performance.now() - t0,
      metricsPort: master.metricsAddress?.port ?? null,
    }),
  );
  process.stdin.on('data', () => master.stop().then(() => process.exit(0)));
}

function clusterServer(port, mb) {
  const cluster = require('node:cluster');
  if (cluster.isPrimary) {
    const t0 = performance.now();
    const forkAt = new Map();
    const readyMs = [];
    let initial = 0;
    let replacing = null;
    const fork = () => {
      const w = cluster.fork();
      forkAt.set(w.id, performance.now());
      return w;
    };
    cluster.on('listening', (w) => {
      readyMs.push(performance.now() - forkAt.get(w.id));
      if (replacing) {
        const r = replacing;
        replacing = null;
        emit({ event: 'replaced', forkWall: r.forkWall, readyWall: Date.now() });
      } else if (++initial === WORKERS) {
        emit({ event: 'ready', master: process.pid, workers: Object.values(cluster.workers).map((x) => x.process.pid), forkToReady: readyMs.slice(), startToReady: performance.now() - t0 });
      }
    });
    // node:cluster has no supervisor; this is the usual replacement.
    cluster.on('exit', () => {
      if (stopping) return;
      replacing = {};
      fork();
      replacing.forkWall = Date.now();
    });
    let stopping = false;
    for (let i = 0; i < WORKERS; i++) fork();
    process.stdin.on('data', () => {
      stopping = true;
      for (const w of Object.values(cluster.workers)) w.process.kill('SIGKILL');
      setTimeout(() => process.exit(0), 100);
    });
  } else {
    const data = preload(mb);
    http.createServer(makeHandler(data)).listen(port, '127.0.0.1');
  }
}

// ---------------------------------------------------------------------------
// Driver.

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function startServer(kind, mb) {
  return freePort().then(
    (port) =>
      new Promise((resolve, reject) => {
        // 'cluster-st' is node:cluster under --single-threaded too (its workers inherit execArgv).
        const flags = kind === 'cluster' ? [] : ['--single-threaded'];
        const mode = kind === 'cluster-st' ? 'cluster' : kind;
        const child = spawn(process.execPath, [...flags, '--max-old-space-size=4096', __filename, `${mode}-server`, String(port), String(mb)], {
          stdio: ['pipe', 'pipe', 'inherit'],
        });
        const events = [];
        const waiters = [];
        let buf = '';
        child.stdout.setEncoding('utf8');
        child.stdout.on('data', (d) => {
          buf += d;
          let i;
          while ((i = buf.indexOf('\n')) >= 0) {
            const ev = JSON.parse(buf.slice(0, i));
            buf = buf.slice(i + 1);
            events.push(ev);
            for (const w of waiters.splice(0)) w();
          }
        });
        const next = (name) =>
          new Promise((res) => {
            const check = () => {
              const k = events.findIndex((e) => e.event === name);
              if (k >= 0) return res(events.splice(k, 1)[0]);
              waiters.push(check);
            };
            check();
          });
        child.on('exit', (code) => code && reject(new Error(`${kind} server exited with ${code}`)));
        next('ready').then((ready) =>
          resolve({
            kind,
            port,
            ready,
            next,
            stop: () =>
              new Promise((res) => {
                child.on('exit', res);
                child.stdin.write('stop\n');
              }),
          }),
        );
      }),
  );
}

/** utime + stime of these processes, in seconds (clock ticks are 1/100 s on Linux). */
function cpuSeconds(pids) {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').slice(0).split(') ')[1].split(' ');
      ticks += Number(f[11]) + Number(f[12]);
    } catch {
      // Gone.
    }
  }
  return ticks / 100;
}

function pss(pid) {
  try {
    const text = fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    return Number(/^Pss:\s+(\d+) kB/m.exec(text)[1]) * 1024;
  } catch {
    return 0;
  }
}

function workerPids(masterPid) {
  const out = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === masterPid) out.push(Number(name));
    } catch {
      // Gone.
    }
  }
  return out;
}

const HAVE_WRK = spawnSync('wrk', ['--version']).error === undefined;

async function loadFor(port, seconds, close = false) {
  if (HAVE_WRK) {
    const extra = close ? ['-H', 'Connection: close'] : [];
    const r = spawnSync('wrk', ['-t2', '-c64', `-d${seconds}s`, ...extra, `http://127.0.0.1:${port}/`], { encoding: 'utf8' });
    const m = /Requests\/sec:\s+([\d.]+)/.exec(r.stdout);
    const errors = /Non-2xx|Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(r.stdout);
    return { rps: m ? Number(m[1]) : NaN, errors: errors ? errors[0] : '' };
  }
  const autocannon = require('autocannon');
  const r = await autocannon({ url: `http://127.0.0.1:${port}/`, connections: 64, duration: seconds, headers: close ? { connection: 'close' } : {} });
  return { rps: r.requests.average, errors: r.errors ? `errors ${r.errors}` : '' };
}

/** GET /metrics after `ms`; resolves with the body's size (0 on an error). */
function scrapeAfter(port, ms) {
  return new Promise((resolve) =>
    setTimeout(() => {
      http
        .get({ host: '127.0.0.1', port, path: '/metrics', agent: false }, (res) => {
          let n = 0;
          res.on('data', (d) => (n += d.length));
          res.on('end', () => resolve(n));
        })
        .on('error', () => resolve(0));
    }, ms),
  );
}

const mb = (b) => (b / 1024 / 1024).toFixed(0);
const ms = (x) => x.toFixed(1);

async function main() {
  const rows = [];

  // 1. Throughput, small app. Both servers stay up and are loaded in turn,
  // in short alternating rounds, so that bursts of other work on this shared
  // box hit both alike. CPU time used by each server's processes is read
  // around every round: requests per CPU-second does not depend on how much
  // CPU the box had to spare.
  // 'prefork-metrics' is prefork with a prom-client counter per request and
  // metrics: { port }, scraped once per round (a scrape every 2 s: far more
  // often than Prometheus' usual 15 s).
  // 'prefork-reuseport' is prefork with reusePort: true.
  const KINDS = ['prefork', 'cluster', 'cluster-st', 'prefork-metrics', 'prefork-reuseport'];
  const rps = Object.fromEntries(KINDS.map((k) => [k, []]));
  const perCpu = Object.fromEntries(KINDS.map((k) => [k, []]));
  const small = { prefork: [], cluster: [] };
  const servers = {};
  for (const kind of KINDS) servers[kind] = await startServer(kind, 0);
  for (const kind of KINDS) {
    if (small[kind]) small[kind].push(...servers[kind].ready.forkToReady);
    await loadFor(servers[kind].port, 1); // warm-up
  }
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 ? [...KINDS].reverse() : KINDS;
    for (const kind of order) {
      const s = servers[kind];
      const pids = [s.ready.master, ...workerPids(s.ready.master)];
      const before = cpuSeconds(pids);
      const scrape = s.ready.metricsPort ? scrapeAfter(s.ready.metricsPort, (ROUND_SECONDS * 1000) / 2) : null;
      const r = await loadFor(s.port, ROUND_SECONDS);
      await scrape;
      const used = cpuSeconds(pids) - before;
      if (r.errors) log(`${kind}: ${r.errors}`);
      rps[kind].push(r.rps);
      perCpu[kind].push((r.rps * ROUND_SECONDS) / used);
    }
  }
  // A new connection per request: every accept counts.
  const CLOSE_KINDS = ['prefork', 'cluster', 'cluster-st'];
  const closeRps = { prefork: [], cluster: [], 'cluster-st': [] };
  for (let round = 0; round < CLOSE_ROUNDS; round++) {
    for (const kind of round % 2 ? [...CLOSE_KINDS].reverse() : CLOSE_KINDS) closeRps[kind].push((await loadFor(servers[kind].port, ROUND_SECONDS, true)).rps);
  }
  for (const kind of KINDS) await servers[kind].stop();
  // More fork-to-ready samples from a second start of each.
  for (const kind of ['prefork', 'cluster']) {
    const s = await startServer(kind, 0);
    small[kind].push(...s.ready.forkToReady);
    await s.stop();
  }

  // 2. PSS with 200 MB preloaded, after load; fork-to-ready; replacement after kill -9.
  const mem = {};
  const big = {};
  const replace = { prefork: [], cluster: [] };
  for (const kind of ['prefork', 'cluster']) {
    log(`${kind}: ${PRELOAD_MB} MB preloaded`);
    const s = await startServer(kind, PRELOAD_MB);
    big[kind] = s.ready;
    await loadFor(s.port, 4);
    const pids = [s.ready.master, ...workerPids(s.ready.master)];
    mem[kind] = { total: pids.reduce((n, p) => n + pss(p), 0), master: pss(s.ready.master), processes: pids.length };
    for (let k = 0; k < 3; k++) {
      const victims = workerPids(s.ready.master);
      const killWall = Date.now();
      process.kill(victims[0], 'SIGKILL');
      const r = await s.next('replaced');
      replace[kind].push({ killToFork: r.forkWall - killWall, killToReady: r.readyWall - killWall });
      await new Promise((r) => setTimeout(r, 300));
    }
    await s.stop();
  }

  const tp = { prefork: median(rps.prefork), cluster: median(rps.cluster) };
  const eff = { prefork: median(perCpu.prefork), cluster: median(perCpu.cluster) };
  const st = { rps: median(rps['cluster-st']), eff: median(perCpu['cluster-st']) };
  const f2r = { prefork: median(small.prefork), cluster: median(small.cluster) };
  const f2rBig = { prefork: median(big.prefork.forkToReady), cluster: median(big.cluster.forkToReady) };
  const rep = (kind, key) => median(replace[kind].map((r) => r[key]));
  // Each round loads the servers back to back, so a round's ratio compares them
  // under the same background load; its spread shows how far the median can be trusted.
  const paired = (a, b) => rps[a].map((x, i) => x / rps[b][i]);
  const pairedText = (a, b) => {
    const r = paired(a, b);
    const [q1, q3] = quartiles(r);
    return `median ${median(r).toFixed(2)}×, middle half ${q1.toFixed(2)}–${q3.toFixed(2)}×, ${r.filter((x) => x >= 1).length} of ${r.length} rounds ≥ 1`;
  };

  rows.push(`| throughput, ${WORKERS} workers, small JSON app (req/s, median of ${ROUNDS} alternating ${ROUND_SECONDS} s rounds, wrk -t2 -c64) | ${tp.prefork.toFixed(0)} | ${tp.cluster.toFixed(0)} | **${(tp.prefork / tp.cluster).toFixed(2)}×** | ≥ 1.0× |`);
  rows.push(`| requests per CPU-second of the server's processes (median of the same rounds) | ${eff.prefork.toFixed(0)} | ${eff.cluster.toFixed(0)} | **${(eff.prefork / eff.cluster).toFixed(2)}×** | |`);
  const pm = { rps: median(rps['prefork-metrics']), eff: median(perCpu['prefork-metrics']) };
  // CPU per request with metrics minus without, in µs.
  const metricsCostUs = (1 / pm.eff - 1 / eff.prefork) * 1e6;
  rows.push(`| with metrics (a prom-client counter per request, \`metrics: { port }\`, a scrape per round): req/s; per CPU-second | ${pm.rps.toFixed(0)}; ${pm.eff.toFixed(0)} | ${tp.cluster.toFixed(0)}; ${eff.cluster.toFixed(0)} | **${(pm.rps / tp.cluster).toFixed(2)}×**; ${(pm.eff / eff.cluster).toFixed(2)}× | |`);
  rows.push(`| cost of metrics per request (CPU, with metrics − without, medians) | ${metricsCostUs.toFixed(2)} µs | | ${(pm.eff / eff.prefork).toFixed(2)}× prefork's req per CPU-second | |`);
  const cl = { prefork: median(closeRps.prefork), cluster: median(closeRps.cluster) };
  const rp = { rps: median(rps['prefork-reuseport']), eff: median(perCpu['prefork-reuseport']) };
  rows.push(`| with \`reusePort: true\` (a listening socket per worker; the kernel spreads the connections): req/s; per CPU-second | ${rp.rps.toFixed(0)}; ${rp.eff.toFixed(0)} | ${tp.cluster.toFixed(0)}; ${eff.cluster.toFixed(0)} | **${(rp.rps / tp.cluster).toFixed(2)}×**; ${(rp.eff / eff.cluster).toFixed(2)}× | |`);
  rows.push(`| throughput with a new connection per request (\`Connection: close\`, req/s, median of ${CLOSE_ROUNDS} alternating rounds) | ${cl.prefork.toFixed(0)} | ${cl.cluster.toFixed(0)} | **${(cl.prefork / cl.cluster).toFixed(2)}×** | |`);
  rows.push(`| total PSS, master + ${WORKERS} workers, ${PRELOAD_MB} MB preloaded, after 4 s of load | ${mb(mem.prefork.total)} MB | ${mb(mem.cluster.total)} MB | **${(mem.prefork.total / mem.cluster.total).toFixed(2)}×** | ≤ 0.5× |`);
  rows.push(`| fork → worker ready, small app (median per worker) | ${ms(f2r.prefork)} ms | ${ms(f2r.cluster)} ms | **${(f2r.cluster / f2r.prefork).toFixed(0)}× faster** | ≥ 10× |`);
  rows.push(`| fork → worker ready, ${PRELOAD_MB} MB preloaded (median per worker) | ${ms(f2rBig.prefork)} ms | ${ms(f2rBig.cluster)} ms | **${(f2rBig.cluster / f2rBig.prefork).toFixed(0)}× faster** | |`);
  rows.push(`| start → all ${WORKERS} ready, ${PRELOAD_MB} MB preloaded (master's own load excluded) | ${ms(big.prefork.startToReady)} ms | ${ms(big.cluster.startToReady)} ms | ${(big.cluster.startToReady / big.prefork.startToReady).toFixed(1)}× | |`);
  rows.push(`| kill -9 → replacement forked, ${PRELOAD_MB} MB (median of 3) | ${ms(rep('prefork', 'killToFork'))} ms | ${ms(rep('cluster', 'killToFork'))} ms | | prefork < 100 ms |`);
  rows.push(`| kill -9 → replacement ready, ${PRELOAD_MB} MB (median of 3) | ${ms(rep('prefork', 'killToReady'))} ms | ${ms(rep('cluster', 'killToReady'))} ms | ${(rep('cluster', 'killToReady') / rep('prefork', 'killToReady')).toFixed(0)}× | |`);

  const out = [
    '## prefork vs node:cluster',
    '',
    `The same app (a JSON handler reading a preloaded table) under \`prefork\` (${WORKERS} workers forked from`,
    'a warm master, one shared accept socket) and under `node:cluster` (default round-robin; the primary',
    `forks ${WORKERS} workers, each loads the app itself), in one run. Numbers were taken on a shared`,
    '2-core box where the load generator shares the cores with the server and other jobs were running:',
    'compare the ratios, not the absolute values.',
    '',
    '| metric | prefork | node:cluster | ratio | target |',
    '|---|---|---|---|---|',
    ...rows,
    '',
    `- PSS is the sum of \`Pss\` in \`/proc/<pid>/smaps_rollup\` over the master and its workers (prefork master: ${mb(mem.prefork.master)} MB of it; cluster primary: ${mb(mem.cluster.master)} MB).`,
    '  prefork\'s master runs two full collections before forking (docs/hazards.md §10), so the workers keep sharing its heap pages.',
    `- \`Connection: close\` samples (req/s): prefork ${closeRps.prefork.map((x) => x.toFixed(0)).join(', ')}; cluster ${closeRps.cluster.map((x) => x.toFixed(0)).join(', ')}; cluster under --single-threaded ${closeRps['cluster-st'].map((x) => x.toFixed(0)).join(', ')}.`,
    '  Here every request is an accept: prefork\'s workers accept on the shared socket themselves, while the cluster primary accepts',
    '  each connection and hands it to a worker over IPC.',
    `- Keep-alive throughput, prefork ÷ cluster within each round: ${pairedText('prefork', 'cluster')}; prefork ÷ cluster under --single-threaded: ${pairedText('prefork', 'cluster-st')}.`,
    `- Throughput samples (req/s, in round order): prefork ${rps.prefork.map((x) => x.toFixed(0)).join(', ')}; cluster ${rps.cluster.map((x) => x.toFixed(0)).join(', ')}. Load: ${HAVE_WRK ? 'wrk' : 'autocannon'}.`,
    `- With metrics ÷ without, within each round: ${pairedText('prefork-metrics', 'prefork')}. Samples (req/s): ${rps['prefork-metrics'].map((x) => x.toFixed(0)).join(', ')}.`,
    `- With \`reusePort: true\` ÷ cluster, within each round: ${pairedText('prefork-reuseport', 'cluster')}; ÷ prefork's one shared socket: ${pairedText('prefork-reuseport', 'prefork')}. Samples (req/s): ${rps['prefork-reuseport'].map((x) => x.toFixed(0)).join(', ')}.`,
    '  With one shared socket, the 64 keep-alive connections go to whichever worker accepts first, and stay there; node:cluster\'s',
    '  primary hands them out round-robin, and SO_REUSEPORT hashes them across the workers\' own sockets.',
    '  prefork workers run under V8\'s `--single-threaded` (fork() needs it): no concurrent GC or compiler threads. node:cluster',
    `  started with the same flag, in the same rounds: ${st.rps.toFixed(0)} req/s, ${st.eff.toFixed(0)} req per CPU-second; prefork against it:`,
    `  **${(tp.prefork / st.rps).toFixed(2)}×** throughput, **${(eff.prefork / st.eff).toFixed(2)}×** per CPU-second. Samples: ${rps['cluster-st'].map((x) => x.toFixed(0)).join(', ')}.`,
    '- "fork → ready" is measured in the master: from just before the fork (prefork\'s `beforeFork`, `cluster.fork()`) to the worker\'s',
    '  ready report (prefork) or `listening` event (cluster). prefork\'s pre-fork collection runs before that point; "start → all ready"',
    '  includes it.',
  ];
  process.stdout.write(out.join('\n') + '\n');
}

const mode = process.argv[2];
if (mode === 'prefork-server') preforkServer(Number(process.argv[3]), Number(process.argv[4]));
else if (mode === 'prefork-metrics-server') preforkServer(Number(process.argv[3]), Number(process.argv[4]), { withMetrics: true });
else if (mode === 'prefork-reuseport-server') preforkServer(Number(process.argv[3]), Number(process.argv[4]), { reusePort: true });
else if (mode === 'cluster-server') clusterServer(Number(process.argv[3]), Number(process.argv[4]));
else
  main().catch((err) => {
    log(err.stack);
    process.exit(1);
  });

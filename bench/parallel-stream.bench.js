'use strict';
// Parallel, lazy input and streamed results: stream() over 1,000,000 lazily
// generated tiny items (time per item and the parent's RSS growth), each()
// over the lines of a file of at least 50 MB read by an async iterator (RSS),
// and piscina fed the same lazy input with a bounded number of tasks in
// flight, measured side by side in the same rounds. Prints a Markdown section.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const { Piscina } = require('piscina');
const { stream, each } = require('../dist');

const ROUNDS = Number(process.env.BENCH_REPS || 3);
const N = 1_000_000;
// piscina takes ~100 µs per task fed this way here: a tenth of the items keeps a round short.
const N_PISCINA = 100_000;
const MB = 1048576;

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function* numbers(n) {
  for (let i = 0; i < n; i++) yield i;
}

/** Samples the parent's RSS while `fn` runs, every 20 ms and whenever `probe` is called. */
async function withRss(fn) {
  global.gc();
  const base = process.memoryUsage.rss();
  let peak = base;
  const probe = () => {
    const r = process.memoryUsage.rss();
    if (r > peak) peak = r;
  };
  const timer = setInterval(probe, 20);
  const t = performance.now();
  try {
    await fn(probe);
  } finally {
    clearInterval(timer);
  }
  probe();
  return { ms: performance.now() - t, growthMb: (peak - base) / MB, baseMb: base / MB };
}

async function cowforkStream() {
  return withRss(async (probe) => {
    let n = 0;
    let sum = 0;
    for await (const v of stream(numbers(N), (x) => x + 1, { concurrency: 2 })) {
      sum += v;
      if ((++n & 4095) === 0) probe();
    }
    if (n !== N || sum !== (N * (N + 1)) / 2) throw new Error(`cowfork stream: wrong results (${n}, ${sum})`);
  });
}

/** piscina has no lazy-input API: keep `window` tasks in flight, results in input order. */
async function piscinaStream(pool, window) {
  const N = N_PISCINA;
  return withRss(async (probe) => {
    const it = numbers(N);
    const inflight = [];
    let n = 0;
    let sum = 0;
    let next = it.next();
    while (!next.done || inflight.length > 0) {
      while (!next.done && inflight.length < window) {
        inflight.push(pool.run({ op: 'inc', n: next.value }));
        next = it.next();
      }
      sum += await inflight.shift();
      if ((++n & 4095) === 0) probe();
    }
    if (n !== N || sum !== (N * (N + 1)) / 2) throw new Error(`piscina: wrong results (${n}, ${sum})`);
  });
}

function writeLines(file, minBytes) {
  const fd = fs.openSync(file, 'w');
  const line = (i) => `${String(i).padStart(10, '0')},${'x'.repeat(44)}\n`;
  let written = 0;
  let lines = 0;
  while (written < minBytes) {
    let chunk = '';
    for (let k = 0; k < 10_000; k++) chunk += line(lines++);
    fs.writeSync(fd, chunk);
    written += chunk.length;
  }
  fs.closeSync(fd);
  return { bytes: written, lines };
}

async function eachOverFile(file, lines) {
  return withRss(async () => {
    const rl = readline.createInterface({ input: fs.createReadStream(file), crlfDelay: Infinity });
    const r = await each(rl, (line) => line.length, { concurrency: 2, settle: false });
    if (r !== undefined) throw new Error('each: unexpected result');
    void lines;
  });
}

async function main() {
  const load = os.loadavg().map((x) => x.toFixed(1)).join(' / ');
  const pool = new Piscina({ filename: path.join(__dirname, 'workers', 'fib.js'), minThreads: 2, maxThreads: 2 });
  const runs = { cowfork: [], piscina: [] };
  await cowforkStream(); // warm-up
  await piscinaStream(pool, 256);
  for (let r = 0; r < ROUNDS; r++) {
    runs.cowfork.push(await cowforkStream());
    runs.piscina.push(await piscinaStream(pool, 256));
    process.stderr.write(`  round ${r}: cowfork ${runs.cowfork[r].ms.toFixed(0)} ms, piscina ${runs.piscina[r].ms.toFixed(0)} ms\n`);
  }
  await pool.destroy();
  const usPer = (xs, n) => median(xs.map((x) => (x.ms * 1000) / n));
  const growth = (xs) => Math.max(...xs.map((x) => x.growthMb));
  // Per item: piscina ran N_PISCINA items, cowfork N.
  const ratio = median(runs.piscina.map((p, r) => p.ms / N_PISCINA / (runs.cowfork[r].ms / N)));

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cowfork-bench-lines-'));
  const file = path.join(dir, 'lines.csv');
  let fileRuns;
  let info;
  try {
    info = writeLines(file, 50 * MB);
    fileRuns = [];
    for (let r = 0; r < ROUNDS; r++) {
      fileRuns.push(await eachOverFile(file, info.lines));
      process.stderr.write(`  each over file round ${r}: ${fileRuns[r].ms.toFixed(0)} ms, +${fileRuns[r].growthMb.toFixed(1)} MB\n`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const loadAfter = os.loadavg().map((x) => x.toFixed(1)).join(' / ');

  console.log(`## Parallel: lazy input and stream()

Command: \`npm run bench -- parallel-stream\` (bench/parallel-stream.bench.js). ${ROUNDS} rounds after a warm-up; each round
runs cowfork and piscina back to back, and ratios are taken per round, then the median. 2 workers everywhere.
Load average (1 / 5 / 15 min) at the start: ${load}; at the end: ${loadAfter} (the machine is shared; other
engineers run fork stress tests on it).

### \`stream\` over 1,000,000 lazily generated tiny items (\`x => x + 1\`), results in input order

| method | items | median µs per item | peak parent RSS growth (worst round) |
|---|---:|---:|---:|
| cowfork \`stream(generator, fn)\` | ${N.toLocaleString('en-US')} | ${usPer(runs.cowfork, N).toFixed(2)} | ${growth(runs.cowfork).toFixed(1)} MB |
| piscina, the generator fed with 256 tasks in flight | ${N_PISCINA.toLocaleString('en-US')} | ${usPer(runs.piscina, N_PISCINA).toFixed(2)} | ${growth(runs.piscina).toFixed(1)} MB |

Targets: cowfork ≤ 3 µs per item; parent RSS growth < 50 MB. piscina / cowfork time per item, median of
per-round ratios: ${ratio.toFixed(2)}x (above 1 means cowfork is faster).

### \`each\` over the lines of a ${(info.bytes / MB).toFixed(0)} MB file (${info.lines.toLocaleString('en-US')} lines), read by \`readline\`'s async iterator

| round | ms | µs per line | peak parent RSS growth |
|---|---:|---:|---:|
${fileRuns.map((x, r) => `| ${r} | ${x.ms.toFixed(0)} | ${((x.ms * 1000) / info.lines).toFixed(2)} | ${x.growthMb.toFixed(1)} MB |`).join('\n')}

Target: RSS stays flat (the file is never held in memory: growth well under its size).`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

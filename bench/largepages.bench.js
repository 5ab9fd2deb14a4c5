'use strict';
// Node's --use-largepages=on (a documented Node option, Linux) against the
// default, for what a forked child costs. A child only has page-table entries
// for the memory its parent had written: the node binary's code is file-backed
// and never written, so fork() copies none of its entries, and a child faults
// in each page of code it runs again. With the option, Node copies its code
// into anonymous 2 MiB pages at startup; fork() copies those entries, and
// children fault far less. The price is paid once per process, at startup.
// Each round runs one process of each kind, in alternating order; ratios are
// taken per round, then the median. Prints a Markdown section.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const ROUNDS = Number(process.env.BENCH_ROUNDS || 7);
const CALLS = 60;
const FLAG = '--use-largepages=on';

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** In a measured process: CALLS map calls of 2 trivial items, 2 children each. */
async function worker() {
  const { map } = require('..');
  const started = performance.now();
  for (let i = 0; i < 5; i++) await map([1, 2], (x) => x + 1, { concurrency: 2 });
  const children = [];
  const t = performance.now();
  for (let i = 0; i < CALLS; i++) {
    const out = await map(
      [1, 2],
      () => {
        const ru = process.resourceUsage();
        return [ru.minorPageFault, ru.userCPUTime + ru.systemCPUTime];
      },
      { concurrency: 2 },
    );
    children.push(...out);
  }
  const perCall = (performance.now() - t) / CALLS;
  const rollup = fs.readFileSync('/proc/self/smaps_rollup', 'utf8');
  const kb = (field) => Number(new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(rollup)?.[1] ?? NaN);
  process.stdout.write(
    JSON.stringify({
      perCall,
      faults: median(children.map((c) => c[0])),
      childCpuUs: median(children.map((c) => c[1])),
      rssKb: kb('Rss'),
      hugeKb: kb('AnonHugePages'),
      warmupMs: t - started,
    }),
  );
}

/** Wall time of `node <flags> -e 0`, ms. */
function startup(flags) {
  const t = performance.now();
  const r = spawnSync(process.execPath, [...flags, '-e', '0']);
  if (r.status !== 0) throw new Error(`node ${flags.join(' ')} -e 0 failed`);
  return performance.now() - t;
}

function measure(flags) {
  const r = spawnSync(process.execPath, ['--single-threaded', ...flags, __filename, '--worker'], { encoding: 'utf8', cwd: path.join(__dirname, '..') });
  if (r.status !== 0) throw new Error(`largepages bench worker failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

function main() {
  const thp = (() => {
    try {
      return fs.readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8').trim();
    } catch {
      return null;
    }
  })();
  const lines = ['## Children and `--use-largepages`', ''];
  if (process.platform !== 'linux' || thp === null || /\[never\]/.test(thp)) {
    lines.push(`Not measured: needs Linux with transparent huge pages (here: ${process.platform}, ${thp ?? 'no THP'}).`);
    process.stdout.write(lines.join('\n') + '\n');
    return;
  }
  const rows = { plain: [], large: [] };
  const start = { plain: [], large: [] };
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? ['plain', 'large'] : ['large', 'plain'];
    for (const kind of order) {
      const flags = kind === 'large' ? [FLAG] : [];
      rows[kind].push(measure(flags));
      start[kind].push(startup(['--single-threaded', ...flags]));
    }
    process.stderr.write(`  round ${r}: ${rows.plain[r].perCall.toFixed(2)} / ${rows.large[r].perCall.toFixed(2)} ms per call\n`);
  }
  const med = (kind, key) => median(rows[kind].map((x) => x[key]));
  const ratio = (key) => median(rows.large.map((x, r) => x[key] / rows.plain[r][key]));
  const startRatio = median(start.large.map((x, r) => x / start.plain[r]));
  const huge = med('large', 'hugeKb');
  lines.push(
    `Command: \`npm run bench -- largepages\` (bench/largepages.bench.js). ${ROUNDS} rounds; each round starts one process`,
    `with \`node --single-threaded\` and one with \`node --single-threaded ${FLAG}\`, in alternating order. Each`,
    `process makes 5 warm-up calls, then ${CALLS} \`map([1, 2], fn, { concurrency: 2 })\` calls (2 children each).`,
    'Medians over rounds; the ratio column is the median of per-round ratios (below 1: the option costs less).',
    `Transparent huge pages: \`${thp}\`.`,
    '',
    '| per process | default | `--use-largepages=on` | ratio |',
    '|---|---:|---:|---:|',
    `| one map call of 2 children (fork to reap), ms | ${med('plain', 'perCall').toFixed(2)} | ${med('large', 'perCall').toFixed(2)} | ${ratio('perCall').toFixed(2)}× |`,
    `| page faults per child (median child) | ${med('plain', 'faults')} | ${med('large', 'faults')} | ${ratio('faults').toFixed(2)}× |`,
    `| CPU time per child, µs (median child) | ${med('plain', 'childCpuUs')} | ${med('large', 'childCpuUs')} | ${ratio('childCpuUs').toFixed(2)}× |`,
    `| \`node -e 0\` startup, ms | ${median(start.plain).toFixed(0)} | ${median(start.large).toFixed(0)} | ${startRatio.toFixed(2)}× |`,
    `| parent RSS after the calls, MB | ${(med('plain', 'rssKb') / 1024).toFixed(1)} | ${(med('large', 'rssKb') / 1024).toFixed(1)} | ${ratio('rssKb').toFixed(2)}× |`,
    '',
    `With the option, ${(huge / 1024).toFixed(0)} MB of Node's code sits in anonymous huge pages (\`AnonHugePages\`). Every child`,
    'shares them with its parent (they are never written), so the RSS it adds is paid once per process tree, not per child.',
    'cowfork does not turn the option on: it is a trade, a slower start and more memory in every process for cheaper',
    'children, worth it for a long-lived parent that forks often (a `map` in a loop, a prefork master that recycles',
    'workers). See docs/parallel.md, "Cheaper children".',
  );
  process.stdout.write(lines.join('\n') + '\n');
}

if (process.argv[2] === '--worker') worker();
else main();

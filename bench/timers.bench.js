// `npm run bench -- timers`: what loading cowfork costs an app's own timers.
// cowfork records which process made each Timeout and Immediate (src/timers.ts,
// an accessor on their prototypes), so that a forked map / iterate child drops
// the parent's. Each round runs the same loop in two fresh Node processes, one
// plain and one that loaded cowfork first, back to back in alternating order;
// the table gives the median of the per-round ratios.
'use strict';
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const ROUNDS = Number(process.env.BENCH_ROUNDS || 11);
const OPS = 200_000;

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

// Each operation, timed in a loop of OPS after a warm-up; prints ns per operation as JSON.
const PROBE = `
const noop = () => {};
const ops = {
  'setTimeout + clearTimeout': () => clearTimeout(setTimeout(noop, 1000)),
  'setTimeout + refresh() + clearTimeout': () => { const t = setTimeout(noop, 1000); t.refresh(); clearTimeout(t); },
  'setImmediate + clearImmediate': () => clearImmediate(setImmediate(noop)),
};
const out = {};
for (const [name, op] of Object.entries(ops)) {
  for (let i = 0; i < ${OPS}; i++) op();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < ${OPS}; i++) op();
  out[name] = Number(process.hrtime.bigint() - t0) / ${OPS};
}
// 20,000 timers that fire, then wait for them all.
let left = 20000;
const t0 = process.hrtime.bigint();
for (let i = 0; i < 20000; i++) setTimeout(() => { if (--left === 0) { out['setTimeout(0) that fires (20,000 at once)'] = Number(process.hrtime.bigint() - t0) / 20000; console.log(JSON.stringify(out)); } }, 0);
`;

function probe(withCowfork) {
  const args = ['--single-threaded'];
  if (withCowfork) args.push('-r', path.join(__dirname, '..', 'dist', 'index.js'));
  const r = spawnSync(process.execPath, [...args, '-e', PROBE], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`timers probe failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim());
}

function main() {
  const plain = [];
  const cow = [];
  for (let r = 0; r < ROUNDS; r++) {
    process.stderr.write(`  round ${r + 1}/${ROUNDS}\n`);
    if (r % 2 === 0) {
      plain.push(probe(false));
      cow.push(probe(true));
    } else {
      cow.push(probe(true));
      plain.push(probe(false));
    }
  }
  const rows = Object.keys(plain[0]).map((name) => {
    const p = median(plain.map((x) => x[name]));
    const c = median(cow.map((x) => x[name]));
    const ratio = median(plain.map((x, i) => cow[i][name] / x[name]));
    return `| ${name} | ${p.toFixed(0)} ns | ${c.toFixed(0)} ns | ${ratio.toFixed(2)}× |`;
  });
  console.log(
    [
      '## Timers: what loading cowfork costs the app',
      '',
      'Command: `npm run bench -- timers` (bench/timers.bench.js). cowfork records which process made each Timeout ' +
        'and Immediate (an accessor on their prototypes, src/timers.ts), so that a forked `map` / `iterate` child ' +
        `drops the parent's pending ones. Each of ${ROUNDS} rounds runs the same loops (${OPS.toLocaleString('en-US')} ` +
        'operations each, after a warm-up) in a fresh plain `node` and in one started with `-r cowfork`, back to back ' +
        'in alternating order. *ratio* is the median of the per-round ratios (above 1: slower with cowfork).',
      '',
      '| per operation | plain node | with cowfork | ratio |',
      '|---|---:|---:|---:|',
      ...rows,
    ].join('\n'),
  );
}

main();

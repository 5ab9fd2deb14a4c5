'use strict';
// What this machine charges any fork, measured in C (native/bench.c) so that
// no JavaScript is involved: a child's copy-on-write page, trapped one fault
// at a time against populated in one call; where the kernel first runs a new
// child; and two CPU-bound children left to the scheduler against pinned one
// per CPU. These are the floors under every fork-cost row in
// docs/benchmarks.md. Prints a Markdown section.
const fs = require('node:fs');
const os = require('node:os');
const { native } = require('../dist/native');

const ROUNDS = Number(process.env.BENCH_ROUNDS || 15);
const PAGES = 1000;
const SPIN_MS = 80;

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const sleepSync = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/** µs per page for a child writing PAGES pages: each trapped, then all populated in one call, taking turns. */
function cowCost() {
  const trapped = [];
  const populated = [];
  let populate = true;
  for (let r = 0; r < ROUNDS; r++) {
    trapped.push(native.benchCowNs(PAGES, false) / PAGES / 1000);
    if (!populate) continue;
    try {
      populated.push(native.benchCowNs(PAGES, true) / PAGES / 1000);
    } catch (err) {
      if (err.code !== 'EINVAL') throw err;
      populate = false; // a kernel before 5.14
    }
  }
  return { trapped: median(trapped), populated: populate ? median(populated) : null };
}

/** How many of `n` children first ran on the CPU their parent forked on, the parent idle 20 ms before each. */
function placement(n) {
  let same = 0;
  for (let i = 0; i < n; i++) {
    sleepSync(20);
    const [parent, child] = native.benchForkCpu();
    if (parent === child) same++;
  }
  return same;
}

/** Two children of an idle parent, each spinning SPIN_MS: speedup over one run, left to the scheduler and pinned, taking turns. */
function spread() {
  let iters = 1_000_000;
  while (native.benchSpinNs(0, iters, false) / 1e6 < SPIN_MS / 4) iters *= 2;
  iters = Math.round((iters * SPIN_MS) / (native.benchSpinNs(0, iters, false) / 1e6));
  const free = [];
  const pinned = [];
  for (let r = 0; r < ROUNDS; r++) {
    const serial = native.benchSpinNs(0, iters, false);
    sleepSync(100);
    free.push((2 * serial) / native.benchSpinNs(2, iters, false));
    sleepSync(100);
    pinned.push((2 * serial) / native.benchSpinNs(2, iters, true));
  }
  return { iters, free: median(free), pinned: median(pinned) };
}

/** The kernel's scheduler options on its command line (a VM's kernel may pack tasks onto few vCPUs). */
function schedulerParams() {
  try {
    return fs.readFileSync('/proc/cmdline', 'utf8').split(/\s+/).filter((t) => /^sched/.test(t));
  } catch {
    return [];
  }
}

/** What the placement row means, from this run's numbers. */
function placementNote(same, n, params) {
  if (same * 2 <= n) return 'Most new children started on another CPU than their parent, as a kernel that spreads new tasks does.';
  const pack = params.find((p) => /pack/.test(p));
  const kernel = pack ? ` (this VM's kernel runs with \`${pack}\`, which packs tasks onto few vCPUs)` : '';
  return (
    `${same} of ${n} new children first ran on the CPU their parent forked on${kernel}: such a child waits for its ` +
    'parent to yield that CPU, and a child forked right after it shares that CPU with both until the kernel moves one.'
  );
}

/** What the spreading rows mean, from this run's numbers. */
function spreadNote(sp) {
  const lag = sp.free < sp.pinned * 0.95;
  return (
    (lag
      ? `Two CPU-bound children left to the scheduler reached ${sp.free.toFixed(2)}× where pinned ones reached ${sp.pinned.toFixed(2)}×: the kernel was slow to spread them. `
      : `Two CPU-bound children left to the scheduler were spread as well as pinned ones (${sp.free.toFixed(2)}× against ${sp.pinned.toFixed(2)}×) in this run. `) +
    "cowfork does not pin children: which CPUs an app may use is the operator's choice (`taskset`, cgroups), " +
    'and a pinned child cannot move off a CPU that another process needs.'
  );
}

function main() {
  const cpus = os.cpus().length;
  const cow = cowCost();
  const n = 40;
  const same = placement(n);
  const sp = cpus >= 2 ? spread() : null;
  const params = schedulerParams();
  const f = (v) => v.toFixed(2);
  console.log(`## What this machine charges a fork (C, no JavaScript)

\`native/bench.c\`, driven by bench/machine.bench.js. Medians of ${ROUNDS} rounds unless stated.

| measurement | result |
|---|---|
| a forked child writes ${PAGES} pages the parent had written: one copy-on-write fault per page | ${f(cow.trapped)} µs per page |
| the same copies made by one \`madvise(MADV_POPULATE_WRITE)\` call in the child | ${cow.populated === null ? 'not available (kernel before 5.14)' : `${f(cow.populated)} µs per page (the trap costs ${f(cow.trapped / cow.populated)}× the copy)`} |
| children whose first instruction ran on the CPU their parent forked on (idle parent, ${n} forks) | ${same} of ${n} |
${sp ? `| two children of an idle parent, each spinning ${SPIN_MS} ms: speedup over one, left to the scheduler | ${f(sp.free)}× |
| the same, child *k* pinned to CPU *k* (\`sched_setaffinity\`) | ${f(sp.pinned)}× |` : '| two CPU-bound children | (one CPU: not measured) |'}

Scheduler options on the kernel command line: ${params.length ? params.map((p) => `\`${p}\``).join(', ') : 'none'}.

Every page a child (or, after the fork, its parent) writes costs one such fault, about ${cow.trapped.toFixed(0)} µs here, and
that sets the floor of the fork-cost rows in "fork: cowfork against a bare fork": a cowfork child that returns
into JavaScript writes a few hundred pages before it can \`_exit\`. ${placementNote(same, n, params)}
${sp ? spreadNote(sp) : ''}`);
}

main();

// Shared by the iterate suites (iterate.bench.js, iterate-bullmq.bench.js):
// the CPU-bound item they time, and the median of a round's timings.
'use strict';

/** About 0.2 ms of pure CPU per item. */
function work(n) {
  let h = n | 0;
  for (let i = 0; i < 40_000; i++) h = Math.imul(h ^ (h >>> 13), 0x5bd1e995) + i;
  return h;
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

module.exports = { work, median };

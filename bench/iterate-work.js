// Shared by the iterate suites (iterate.bench.js, iterate-bullmq.bench.js):
// the CPU-bound item they time, the median of a round's timings, and a
// checkpoint file store that times its saves.
'use strict';
const { fileStore } = require('../dist');

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

/** A fileStore(file) that adds each save's time to acc.ms and counts it in acc.saves. */
function timedFileStore(file, acc) {
  const inner = fileStore(file);
  return {
    load: () => inner.load(),
    save: (st) => {
      const t = performance.now();
      inner.save(st);
      acc.ms += performance.now() - t;
      acc.saves++;
    },
  };
}

module.exports = { work, median, timedFileStore };

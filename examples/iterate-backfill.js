// A resumable backfill: 4 forked instances walk 200,000 ids, each its own
// block. Press Ctrl-C (or `kill -TERM <pid>`) mid-run, then run it again: it
// resumes every instance from its saved cursor, and onAllComplete runs once.
//
//   node --single-threaded examples/iterate-backfill.js
//   rm backfill.cursor.json   # to start over
'use strict';
const crypto = require('node:crypto');
const { iterate, range } = require('..');

const started = Date.now();

iterate({
  instances: 4,
  checkpoint: './backfill.cursor.json',
  build: range(0, 200_000),
  each(id) {
    // Stand-in for real work on row `id` (an UPDATE, an API call, a re-index).
    crypto.createHash('sha256').update(`row ${id}`).digest('hex');
  },
  maxRuntime: 60_000,
  checkpointEvery: { items: 5_000, ms: 1_000 },
  onStart: ({ instance, cursor, pid }) => console.log(`instance ${instance} (pid ${pid}) starts after ${cursor ?? 'the beginning'}`),
  onComplete: ({ instance, processedTotal }) => console.log(`instance ${instance} done: ${processedTotal} rows`),
  onAllComplete: () => console.log('all instances done: send the report, drop the temp table...'),
  onProgress: (counts) => {
    const done = counts.reduce((a, c) => a + c.processedTotal, 0);
    process.stderr.write(`\r${done} / 200000 rows`);
  },
}).then((result) => {
  process.stderr.write('\n');
  if (result.complete) console.log(`complete in ${Date.now() - started} ms`);
  else console.log(`interrupted by ${result.interruptedBy}; run again to resume`);
});

// Fan out CPU-bound work over a large in-memory index without copying it.
// Run: npx cowfork run examples/parallel-map.js
'use strict';
const crypto = require('node:crypto');
const { map } = require('cowfork');

// Parent state the children read copy-on-write: nothing is serialized.
const documents = Array.from({ length: 20_000 }, (_, i) => `document ${i} `.repeat(50));

function digest(start, end) {
  const h = crypto.createHash('sha256');
  for (let i = start; i < end; i++) h.update(documents[i]);
  return h.digest('hex').slice(0, 16);
}

async function main() {
  const ranges = Array.from({ length: 20 }, (_, k) => [k * 1000, (k + 1) * 1000]);
  const t = performance.now();
  const digests = await map(ranges, ([start, end]) => digest(start, end), {
    onProgress: (done, total) => process.stderr.write(`\r${done}/${total}`),
  });
  process.stderr.write('\n');
  console.log(`${digests.length} digests in ${(performance.now() - t).toFixed(0)} ms; first: ${digests[0]}`);
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});

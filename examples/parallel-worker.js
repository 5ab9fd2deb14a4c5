// The seed-shaped API: a worker class with process(item), one child per item.
// Run: npx cowfork run examples/parallel-worker.js /etc/hostname /etc/passwd
'use strict';
const crypto = require('node:crypto');
const fs = require('node:fs');
const { Parallel, ParallelWorker, WorkerError } = require('cowfork');

class Sha256 extends ParallelWorker {
  process(path) {
    return `${crypto.createHash('sha256').update(fs.readFileSync(path)).digest('hex')}  ${path}`;
  }
}

async function main() {
  const paths = process.argv.slice(2);
  if (paths.length === 0) paths.push(__filename);
  try {
    const lines = await new Parallel(new Sha256(), { isolation: true, timeout: 10_000 }).mapProcesses(paths);
    console.log(lines.join('\n'));
  } catch (err) {
    if (err instanceof WorkerError) console.error(`item ${err.index} failed: ${err.cause.message}`);
    else throw err;
    process.exitCode = 1;
  }
}

main();

// Fibers that park on timers and on a pipe, driven synchronously from the top
// level of a CommonJS script. Run: node examples/scheduler-basic.js
// (The Scheduler itself does not fork, so --single-threaded is not needed.)
'use strict';
const fs = require('node:fs');
const { Scheduler } = require('..');
// A non-blocking pipe from cowfork's internal addon (any non-blocking fd works).
const { native } = require('../dist/native');

const [readEnd, writeEnd] = native.pipe(true); // non-blocking pipe

// Three fibers sleep 30, 10 and 20 ms: they finish in deadline order.
for (const ms of [30, 10, 20]) {
  Scheduler.spawn(async () => {
    await Scheduler.pause(ms / 1000);
    console.log(`slept ${ms} ms`);
  });
}

// One fiber waits for the pipe to become readable; another writes to it later.
Scheduler.spawn(async () => {
  const bits = await Scheduler.ioWait(readEnd, Scheduler.READ, 5);
  const buf = Buffer.alloc(64);
  const n = fs.readSync(readEnd, buf);
  console.log(`pipe ready (bits ${bits}): ${buf.toString('utf8', 0, n)}`);
});
Scheduler.spawn(async () => {
  await Scheduler.pause(0.04);
  fs.writeSync(writeEnd, 'hello from another fiber');
});

// Blocks in poll(2) until every fiber is done; each pass runs the woken
// fibers to their next park before the next one starts.
const resumed = Scheduler.runUntilEmpty();
console.log(`all fibers done after ${resumed} resumes`);
native.close(readEnd);
native.close(writeEnd);

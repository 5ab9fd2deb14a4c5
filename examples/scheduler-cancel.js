// Event-loop mode and cancellation: nobody drives the scheduler; the fibers
// progress as the event loop runs. A watchdog cancels a fiber stuck waiting on
// an fd that never becomes readable; its finally block runs.
// Run: node examples/scheduler-cancel.js
'use strict';
const { Scheduler, CancelledError } = require('..');
// A non-blocking pipe from cowfork's internal addon (any non-blocking fd works).
const { native } = require('../dist/native');

const [quiet, unused] = native.pipe(true); // nobody ever writes to it

const ticker = Scheduler.spawn(async () => {
  for (let i = 1; i <= 3; i++) {
    await Scheduler.pause(0.05);
    console.log(`tick ${i}`);
  }
  return 'ticker done';
});

const stuck = Scheduler.spawn(async () => {
  try {
    await Scheduler.ioWait(quiet, Scheduler.READ); // no timeout
    return 'never';
  } finally {
    console.log('stuck fiber: finally ran');
  }
});

setTimeout(() => stuck.cancel('watchdog'), 100);

(async () => {
  console.log(await ticker.done);
  try {
    await stuck.done;
  } catch (err) {
    console.log(`stuck fiber: ${err instanceof CancelledError ? 'CancelledError' : err}, cause ${err.cause}`);
  }
  console.log(`left: fibers ${Scheduler.default.size}, timers ${Scheduler.default.pendingTimers}, watchers ${Scheduler.default.watchers}`);
  native.close(quiet);
  native.close(unused);
})();

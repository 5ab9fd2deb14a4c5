// A backfill across machines: 8 partitions of 200,000 ids, leased through
// BullMQ on Redis. Every "machine" runs this same file; start as many as you
// like, on one host or several, kill -9 or SIGTERM any of them, start more:
// the run completes, and onAllComplete runs once, on the machine that ends it.
//
//   bash scripts/redis-test-server.sh start                  # a throwaway Redis on 127.0.0.1:63790
//   node examples/iterate-machines.js enqueue                # once, from anywhere
//   node --single-threaded examples/iterate-machines.js &    # machine 1
//   node --single-threaded examples/iterate-machines.js &    # machine 2
//   wait
//   node examples/iterate-machines.js progress               # per partition: state, count, holder
//   node examples/iterate-machines.js destroy                # delete the run's keys
//
// REDIS_HOST, REDIS_PORT and RUN (the run's name) override the defaults.
'use strict';
const crypto = require('node:crypto');
const os = require('node:os');
const { iterate, range } = require('..');
const { BullMQEngine } = require('../dist/bullmq');

const engine = new BullMQEngine({
  connection: { host: process.env.REDIS_HOST ?? '127.0.0.1', port: Number(process.env.REDIS_PORT ?? 63790) },
  name: process.env.RUN ?? 'backfill-example',
  lockDuration: 5_000, // a dead machine's partitions are resumed elsewhere 5 s after its last renewal
});

async function work() {
  const result = await iterate({
    engine,
    concurrency: 2, // up to 2 partitions at once on this machine, each in its own forked instance
    build: range(0, 200_000),
    each(id) {
      // Stand-in for real work on row `id` (an UPDATE, an API call, a re-index).
      crypto.createHash('sha256').update(`row ${id}`).digest('hex');
    },
    checkpointEvery: { items: 1_000, ms: 500 },
    maxRuntime: 10 * 60_000,
    onStart: ({ instance, cursor }) => console.log(`${os.hostname()}:${process.pid} leases partition ${instance} after ${cursor ?? 'the beginning'}`),
    onAllComplete: (r) => {
      const failed = r.instances.filter((i) => i.error);
      console.log(`all partitions ended (on this machine): ${failed.length} failed`);
    },
  });
  const mine = result.instances.map((i) => i.instance).join(', ');
  console.log(result.complete ? `run complete; this machine walked partitions ${mine}` : `stopped (${result.interruptedBy}); others carry on`);
}

async function main() {
  const command = process.argv[2] ?? 'work';
  try {
    if (command === 'enqueue') console.log(await engine.enqueue({ instances: 8 }));
    else if (command === 'progress') console.table(await engine.progress());
    else if (command === 'destroy') await engine.destroy();
    else await work();
  } finally {
    await engine.close();
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});

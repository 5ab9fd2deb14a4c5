// The library form: `node --single-threaded examples/prefork-worker.js`
// (or `npx cowfork run examples/prefork-worker.js`).
//
// worker(ctx) runs in each forked worker. ctx.num is durable: a replaced
// worker gets the lowest free number, so per-worker resources (a metrics file,
// a shard) can be keyed on it.
'use strict';
const { prefork } = require('cowfork');

const master = prefork({
  workers: 4,
  listen: Number(process.env.PORT ?? 3000),
  timeout: 30_000,
  shutdownTimeout: 10_000,
  worker(ctx) {
    ctx.serve((req, res) => res.end(`worker ${ctx.num} (pid ${process.pid}, generation ${ctx.generation})\n`));
    ctx.onShutdown(() => console.log(`worker ${ctx.num} drained`));
  },
});

master.on('exit', (e) => console.log(`worker ${e.num} (pid ${e.pid}) exited: ${e.reason}`));
master.ready.then(() => {
  console.log(`ready on port ${master.addresses[0].port}; try: kill -HUP ${process.pid}`);
  console.table(master.stats());
});

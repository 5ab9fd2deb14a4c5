// An ioredis client that each forked child replaces with its own (docs/recipes.md).
// The server comes from REDIS_HOST and REDIS_PORT (default 127.0.0.1:6379).
'use strict';
const { atFork } = require('cowfork');
const Redis = require('ioredis');

const options = { host: process.env.REDIS_HOST || '127.0.0.1', port: Number(process.env.REDIS_PORT || 6379) };
let redis = new Redis(options);

atFork({
  child() {
    // The inherited client's socket is the parent's connection, dead in this
    // process. Connect a client of this process's own; it queues commands
    // until it is connected. Leave the inherited one alone: quit() would only
    // write to a dead socket.
    redis = new Redis(options);
  },
});

/** This process's client. */
exports.redis = () => redis;

// A pino logger that works the same in the parent and in every forked child
// (docs/recipes.md). A transport (`pino({ transport })`) runs in a Worker, and
// a child does not have the parent's Worker threads: its lines would be lost.
// Write to a file opened for appending instead, synchronously, so that no line
// waits in a buffer when a child exits; run transports (pino-pretty, shipping
// to a log service) in a process of their own, reading that file or stdout.
// LOG_FILE names the file; without it the lines go to stdout.
'use strict';
const pino = require('pino');

const dest = pino.destination({ dest: process.env.LOG_FILE || 1, append: true, sync: true });

module.exports = pino(dest);

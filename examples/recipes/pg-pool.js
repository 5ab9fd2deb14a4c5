// A pg Pool that each forked child replaces with its own (docs/recipes.md).
// Settings come from the PG* environment variables (PGHOST, PGPORT, ...).
'use strict';
const { atFork } = require('cowfork');
const { Pool } = require('pg');

const config = { max: 4 };
let pool = new Pool(config);

atFork({
  child() {
    // The inherited pool's connections are the parent's server sessions,
    // dead in this process. Start an empty pool here; it connects on first
    // use. Leave the inherited one alone: ending it would only write to dead
    // sockets.
    pool = new Pool(config);
  },
});

/** pool.query on this process's pool. */
exports.query = (text, params) => pool.query(text, params);
/** Closes this process's pool (at shutdown). */
exports.end = () => pool.end();

'use strict';
// piscina worker for bench/parallel.bench.js: the same work cowfork runs.
function fib(n) {
  return n < 2 ? n : fib(n - 1) + fib(n - 2);
}
module.exports = ({ op, n }) => (op === 'fib' ? fib(n) : n + 1);

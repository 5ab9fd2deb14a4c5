'use strict';
// piscina worker for bench/parallel.bench.js: the same work cowfork runs.
function fib(n) {
  return n < 2 ? n : fib(n - 1) + fib(n - 2);
}
module.exports = ({ op, n }) => {
  if (op === 'fib') return fib(n);
  if (op === 'time') {
    const t = performance.now();
    fib(n);
    return performance.now() - t;
  }
  return n + 1;
};

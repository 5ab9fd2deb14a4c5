// A small app for `npx cowfork serve examples/prefork-app.js --workers 4 --port 3000`.
//
// Everything at the top level runs once, in the master, before any fork: the
// table below is built once and every worker shares it copy-on-write.
'use strict';

const words = [];
for (let i = 0; i < 100_000; i++) words.push(`word-${i.toString(36)}`);

// Two or more parameters: cowfork serves this as a request handler.
module.exports = function handler(req, res) {
  const url = new URL(req.url, 'http://localhost');
  if (url.pathname === '/word') {
    const i = Number(url.searchParams.get('i') ?? 0) % words.length;
    res.setHeader('content-type', 'application/json');
    return res.end(JSON.stringify({ i, word: words[i], pid: process.pid }));
  }
  res.setHeader('content-type', 'text/plain');
  res.end(`hello from worker pid ${process.pid}\n`);
};

#!/usr/bin/env node
// Runs the benchmark suites in bench/*.bench.js one after another (never in
// parallel: this machine has 2 cores) and rewrites each suite's section of
// docs/benchmarks.md. `npm run bench` runs all; `npm run bench -- parallel`
// runs the suites whose file name contains "parallel", and `npm run bench -- fork`
// runs fork.bench.js alone, since a filter that names a suite exactly runs only it.
//
// A suite is a script run as `node --single-threaded --expose-gc <file>` that
// prints its section as Markdown on stdout. Progress goes to stderr.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const dir = __dirname;
const doc = path.join(dir, '..', 'docs', 'benchmarks.md');
const filters = process.argv.slice(2);
const suites = fs
  .readdirSync(dir)
  .filter((f) => f.endsWith('.bench.js'))
  // A filter that names a suite exactly runs only that suite (`fork`, not `prefork`).
  .filter((f, _, all) => filters.length === 0 || filters.some((x) => (all.includes(`${x}.bench.js`) ? f === `${x}.bench.js` : f.includes(x))))
  .sort();

if (suites.length === 0) {
  console.error(`bench: no suite matches ${filters.join(' ')}`);
  process.exit(2);
}

const HEADER = `# Benchmarks

Written by \`npm run bench\` (bench/run.js); do not edit by hand. Each section
is rewritten when its suite runs. This machine is noisy: compare ratios within
one section, which were measured side by side in one run, not absolute numbers
across sections.
`;

let text = fs.existsSync(doc) ? fs.readFileSync(doc, 'utf8') : HEADER;
if (!text.startsWith('# Benchmarks')) text = HEADER + '\n' + text;

/** The machine's load averages, for each section's footer: this VM is shared and noisy. */
function loadAverages() {
  return os.loadavg().map((l) => l.toFixed(1)).join(' / ');
}

/** More runnable work than cores over the last minute. */
function loaded() {
  return os.loadavg()[0] > os.cpus().length;
}

let failed = 0;
for (const file of suites) {
  const name = file.replace(/\.bench\.js$/, '');
  console.error(`bench: ${name} ...`);
  const started = Date.now();
  const loadBefore = loadAverages();
  const loadedBefore = loaded();
  const r = spawnSync(process.execPath, ['--single-threaded', '--expose-gc', path.join(dir, file)], {
    cwd: path.join(dir, '..'),
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.status !== 0) {
    console.error(`bench: ${name} failed (status ${r.status}, signal ${r.signal})`);
    failed++;
    continue;
  }
  const meta =
    `_Measured ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC on ${os.cpus().length} × ` +
    `${os.cpus()[0]?.model ?? 'cpu'}, Node ${process.version}, in ${((Date.now() - started) / 1000).toFixed(0)} s; ` +
    `load average (1, 5, 15 min) ${loadBefore} at the start, ${loadAverages()} at the end` +
    `${loadedBefore || loaded() ? ' (a loaded machine: trust the ratios, not the absolute numbers)' : ''}. ` +
    `Command: \`npm run bench -- ${name}\`._`;
  const section = `<!-- bench:${name} -->\n${r.stdout.trim()}\n\n${meta}\n<!-- /bench:${name} -->`;
  const re = new RegExp(`<!-- bench:${name} -->[\\s\\S]*?<!-- /bench:${name} -->`);
  text = re.test(text) ? text.replace(re, section) : `${text.trimEnd()}\n\n${section}\n`;
  fs.writeFileSync(doc, text);
}
process.exit(failed ? 1 : 0);

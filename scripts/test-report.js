// Summarizes vitest JSON reports: one line per report, naming its failed
// tests, then one last line for all of them together, exactly
// "N passed, N failed, N skipped" (CI reads that line). Exits 1 when a report
// has a failure or is missing: a run that died before writing its report
// must not read as a pass.
//
// Usage: node scripts/test-report.js <label>=<report.json> ...
'use strict';
const fs = require('node:fs');
const path = require('node:path');

/**
 * The first lines of a failed test's messages, indented under its name: CI
 * keeps only the tail of a run's output, and this summary is that tail.
 */
function excerpt(messages, maxLines = 30) {
  const lines = (messages ?? []).join('\n').replace(/\x1b\[[0-9;]*m/g, '').split('\n').filter((l) => l.trim() !== '');
  if (lines.length === 0) return '';
  const shown = lines.slice(0, maxLines).map((l) => `\n      ${l.slice(0, 300)}`);
  if (lines.length > maxLines) shown.push(`\n      ... (${lines.length - maxLines} more lines)`);
  return shown.join('');
}

/** Counts of one report, or null if the file is missing or not a vitest report. */
function read(file) {
  let r;
  try {
    r = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch {
    return null;
  }
  if (typeof r.numPassedTests !== 'number') return null;
  const failedNames = [];
  for (const suite of r.testResults ?? []) {
    const file = path.relative(process.cwd(), suite.name);
    for (const t of suite.assertionResults ?? []) {
      if (t.status === 'failed') failedNames.push(`${file} > ${t.fullName ?? t.title}${excerpt(t.failureMessages)}`);
    }
    // A file that failed to load has no assertions, only a message.
    if (suite.status === 'failed' && (suite.assertionResults ?? []).length === 0) failedNames.push(`${file}: ${String(suite.message).split('\n')[0]}`);
  }
  return {
    passed: r.numPassedTests,
    // A suite that failed to load counts once, so the total shows it.
    failed: Math.max(r.numFailedTests, failedNames.length),
    skipped: r.numPendingTests + (r.numTodoTests ?? 0),
    failedNames,
  };
}

/** The line CI reads; keep the exact shape. */
const line = (c) => `${c.passed} passed, ${c.failed} failed, ${c.skipped} skipped`;

/** Prints the summary of `<label>=<file>` entries; returns the exit code. */
function summarize(args) {
  const total = { passed: 0, failed: 0, skipped: 0 };
  let ok = true;
  for (const arg of args) {
    const eq = arg.indexOf('=');
    const [label, file] = eq > 0 ? [arg.slice(0, eq), arg.slice(eq + 1)] : [arg, arg];
    const c = read(file);
    if (c === null) {
      console.log(`${label}: no report (${file}); the run did not finish`);
      total.failed++;
      ok = false;
      continue;
    }
    console.log(`${label}: ${line(c)}`);
    for (const name of c.failedNames) console.log(`  failed: ${name}`);
    total.passed += c.passed;
    total.failed += c.failed;
    total.skipped += c.skipped;
    if (c.failed > 0) ok = false;
  }
  console.log(line(total));
  return ok ? 0 : 1;
}

module.exports = { summarize };

if (require.main === module) {
  const args = process.argv.slice(2);
  if (args.length === 0) {
    process.stderr.write('usage: node scripts/test-report.js <label>=<report.json> ...\n');
    process.exitCode = 2;
  } else {
    process.exitCode = summarize(args);
  }
}

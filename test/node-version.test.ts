// The suite runs under each supported Node.js major (scripts/test-versions.js).
// A run only tells something about a version if every process in it runs that
// version: this test process, the fixtures the tests spawn (through
// process.execPath) and a plain `node` on PATH (npm scripts, the launcher's
// shebang). These checks make a mixed run fail instead of passing quietly.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, runCommand, runNode } from './helpers';

const major = Number(process.versions.node.split('.')[0]);

/** The majors package.json's engines field lists, e.g. "^20.0.0 || ^22.0.0" gives [20, 22]. */
function supportedMajors(): number[] {
  const engines = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).engines.node as string;
  return [...engines.matchAll(/\^(\d+)\./g)].map((m) => Number(m[1]));
}

describe('the Node.js this suite runs on', () => {
  it('is a major that package.json supports, and the one the version matrix asked for', () => {
    expect(supportedMajors()).toContain(major);
    // Set by scripts/test-versions.js for each version it runs.
    const wanted = process.env.COWFORK_TEST_NODE_MAJOR;
    if (wanted !== undefined) expect(major).toBe(Number(wanted));
  });

  it('runs the spawned fixtures with the same binary', async () => {
    const r = await runNode(['-p', 'JSON.stringify([process.version, process.execPath])']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual([process.version, process.execPath]);
  });

  it('finds the same version as `node` on PATH', async () => {
    const r = await runCommand('node', ['-p', 'process.version'], { env: process.env });
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(process.version);
  });
});

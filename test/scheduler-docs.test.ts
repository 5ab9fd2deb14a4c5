// The examples in docs/scheduler.md run as written, at the top level of an
// ES module importing 'cowfork' (the package's self-reference), and print
// what their `// prints:` comments say.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, runNode } from './helpers';

const doc = fs.readFileSync(path.join(ROOT, 'docs', 'scheduler.md'), 'utf8');
const examples = [...doc.matchAll(/```js\n\/\/ example: (\S+)\n([\s\S]*?)```/g)].map((m) => ({ name: m[1], code: m[2] }));

describe('scheduler: the examples in docs/scheduler.md', () => {
  it('there are examples for generator fibers, tick, cancellation and deadlines', () => {
    expect(examples.map((e) => e.name)).toEqual(['quick.mjs', 'generators.mjs', 'tick.mjs', 'cancel.mjs', 'deadline.mjs']);
  });

  for (const { name, code } of examples) {
    it(`${name} prints what it says`, async () => {
      const expected = [...code.matchAll(/\/\/ prints: (.*)$/gm)].map((m) => m[1].trim());
      expect(expected.length).toBeGreaterThan(0);
      const r = await runNode(['--single-threaded', '--input-type=module', '-e', code], { cwd: ROOT, timeoutMs: 20_000 });
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout.trim().split('\n')).toEqual(expected);
    });
  }
});

// sharp (libvips, a native library with a thread pool of its own). Threads do
// not survive fork(), so the rule is: use such a library first after the
// fork, or re-initialize it in atFork({ child }). A child of a parent that
// never processed an image works; one whose parent did either works or fails
// with an error naming that rule, and never hangs, and the parent is warned.
// (A prefork worker has no item timeout: there the master's warning is all
// there is, so prefork is tested only with sharp first used after the fork.)
// The tests run in this order: the parent has not processed an image until
// the third.
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { inspectFork } from '../../src/index';
import { inChildren, preforkAnswers } from './support';

// Loaded through Node's own require, lazily: importing sharp at the top would
// load it before the first test.
const nodeRequire = createRequire(import.meta.url);
type Sharp = typeof import('sharp').default;
const loadSharp = (): Sharp => nodeRequire('sharp') as Sharp;

/** A PNG made by sharp, then resized to 50 + i pixels wide: the output's byte count. */
async function resize(i: number): Promise<number> {
  const sharp = loadSharp();
  const png = await sharp({ create: { width: 400, height: 300, channels: 3, background: '#c00' } }).png().toBuffer();
  return (await sharp(png).resize(50 + i).toBuffer()).length;
}

/** vips threads in this process, by name (/proc/self/task/<tid>/comm). */
function hasVipsThreads(): boolean {
  const fs = nodeRequire('node:fs') as typeof import('node:fs');
  return fs.readdirSync('/proc/self/task').some((t) => /vips/.test(fs.readFileSync(`/proc/self/task/${t}/comm`, 'utf8')));
}

/** The rule, as an error or warning states it: first use after the fork, or re-initialize in atFork({ child }). */
const THE_RULE = /after the fork[\s\S]*atFork\(\{ child \}\)/;

describe('sharp', () => {
  const items = [0, 1, 2, 3];

  it('used only after the fork: children and prefork workers work', async () => {
    expect(hasVipsThreads()).toBe(false);
    const got = await inChildren(items, resize, 10_000);
    expect(got.pool).toEqual(got.isolation);
    for (const n of got.pool) expect(n).toEqual(expect.any(Number));
    const answers = await preforkAnswers((p) => resize(Number(p.slice(2))), { requests: 4, ms: 10_000 });
    expect(answers.map((a) => a.error)).toEqual(answers.map(() => undefined));
    expect(hasVipsThreads()).toBe(false);
  });

  it('loaded in the parent, used only after the fork: children work', async () => {
    loadSharp();
    const got = await inChildren(items, resize, 10_000);
    for (const n of [...got.pool, ...got.isolation]) expect(n).toEqual(expect.any(Number));
  });

  it('used in the parent first: each child works or fails naming the rule, never hangs; the parent is warned once', async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error): number => warnings.push(w);
    process.on('warning', onWarning);
    try {
      const want = await Promise.all(items.map(resize));
      expect(hasVipsThreads()).toBe(true);
      const got = await inChildren(items, resize, 3000);
      for (const mode of ['pool', 'isolation'] as const) {
        for (const [i, o] of got[mode].entries()) {
          if (o !== want[i]) expect(o, `${mode} item ${i}`).toMatch(THE_RULE);
        }
      }
      await new Promise((r) => setImmediate(r)); // process.emitWarning delivers on the next tick
      const foreign = warnings.filter((w) => (w as Error & { code?: string }).code === 'COWFORK_FOREIGN_THREADS');
      expect(foreign).toHaveLength(1);
      expect(foreign[0].message).toMatch(/vips/);
      expect(foreign[0].message).toMatch(THE_RULE);
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('inspectFork() lists the vips threads the parent started, as foreign', async () => {
    await resize(0); // libvips ends idle threads after a while: start them again
    expect(hasVipsThreads()).toBe(true);
    const { threads, foreignThreads } = inspectFork();
    const vips = threads.filter((t) => /vips/.test(t.name));
    expect(vips.length).toBeGreaterThan(0);
    expect(foreignThreads).toEqual(expect.arrayContaining(vips));
    for (const t of vips) expect(t.foreign).toBe(true);
  });
});

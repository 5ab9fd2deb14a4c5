// Results are authenticated: a truncated or forged results file is detected
// and reported as ResultIntegrityError, and its contents are never returned.
import fs from 'node:fs';
import crypto from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ResultIntegrityError, map } from '../src/index';
import { BatchWriter, FrameError, Outcome, decodeAll, decodeBatch, newKey } from '../src/frame';
import { scratchDirsOf, zombiesOf } from './helpers';

/** In a child: the fd of its own results file, found through /proc. */
function ownResultsFd(): number {
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      if (/\/cowfork-\d+-\d+-\d+\/w\d+\.\d+$/.test(fs.readlinkSync(`/proc/self/fd/${fd}`))) return Number(fd);
    } catch {
      // The fd used by readdir itself is gone by now.
    }
  }
  throw new Error('results file not found');
}

describe('authenticated results', () => {
  it('a results file truncated in the middle of a record is reported, not returned', async () => {
    const err = await map(
      [0, 1],
      async (i) => {
        if (i === 0) {
          await null; // an async item: its record is written before the next item starts
          return 'first';
        }
        const fd = ownResultsFd();
        fs.ftruncateSync(fd, fs.fstatSync(fd).size - 7);
        // Leave cleanly (exit code 0) with the torn record as the file's tail.
        return process.exit(0);
      },
      { concurrency: 1 },
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ResultIntegrityError);
    expect((err as ResultIntegrityError).code).toBe('ERR_RESULT_INTEGRITY');
    expect((err as Error).message).toMatch(/truncated record/);
    expect(scratchDirsOf()).toEqual([]);
    expect(zombiesOf()).toEqual([]);
  });

  it('a forged record (valid framing, wrong key) is reported, not returned', async () => {
    const err = await map(
      [0, 1],
      (i) => {
        if (i === 1) {
          // Write a well-formed batch claiming item 0 is "forged", under a key of our own.
          const w = new BatchWriter(ownResultsFd(), crypto.randomBytes(32), (fd, buf) => fs.writeSync(fd, buf));
          w.add(0, Outcome.Value, 'forged', 0);
          w.flush();
        }
        return `real ${i}`;
      },
      { concurrency: 1 },
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ResultIntegrityError);
    expect((err as Error).message).toMatch(/failed HMAC authentication/);
    expect(scratchDirsOf()).toEqual([]);
  });

  it('the codec round-trips, rejects flipped bits, and tolerates a torn tail only when asked', () => {
    const key = newKey();
    const chunks: Buffer[] = [];
    const w = new BatchWriter(0, key, (_fd, buf) => chunks.push(Buffer.from(buf)));
    w.add(3, Outcome.Value, { a: 1 }, 0);
    w.add(4, Outcome.Error, new RangeError('r'), 0);
    w.flush();
    w.add(5, Outcome.Done, undefined, 0);
    w.flush();
    const file = Buffer.concat(chunks);
    const records = decodeAll(key, file, false);
    expect(records.length).toBe(2);
    const first = decodeBatch(records[0].payload);
    expect(first.indexes).toEqual([3, 4]);
    expect(first.values[0]).toEqual({ a: 1 });
    expect((first.values[1] as { name: string }).name).toBe('RangeError');

    for (const pos of [0, 10, 25, file.length - 1]) {
      const bad = Buffer.from(file);
      bad[pos] ^= 0x40;
      expect(() => decodeAll(key, bad, false)).toThrow(FrameError);
    }
    const torn = file.subarray(0, file.length - 3);
    expect(() => decodeAll(key, torn, false)).toThrow(/truncated/);
    expect(decodeAll(key, torn, true).length).toBe(1);
    expect(() => decodeAll(newKey(), file, false)).toThrow(/HMAC/);
  });
});

// Built-in builders. A builder is called in each instance's process as
// build(instance, instances, cursor) and yields [item, cursor] pairs, starting
// after `cursor` (null on a first run). The cursor of a pair is what gets saved
// once that item's `each` has finished, so resuming from it must skip exactly
// the items up to and including that one.
import fs from 'node:fs';

export type Pair<I, C> = readonly [item: I, cursor: C];

export type Builder<I, C> = (
  instance: number,
  instances: number,
  cursor: C | null,
) => Iterable<Pair<I, C>> | AsyncIterable<Pair<I, C>>;

/** A builder whose iterable is synchronous (fromArray, range, lines). */
export type SyncBuilder<I, C> = (instance: number, instances: number, cursor: C | null) => Iterable<Pair<I, C>>;

/** A builder whose iterable is asynchronous (byKey). */
export type AsyncBuilder<I, C> = (instance: number, instances: number, cursor: C | null) => AsyncIterable<Pair<I, C>>;

/** The half-open share [lo, hi) of [start, end) that `instance` of `instances` owns: contiguous blocks. */
export function share(start: number, end: number, instance: number, instances: number): [number, number] {
  const len = end - start;
  return [start + Math.floor((len * instance) / instances), start + Math.floor((len * (instance + 1)) / instances)];
}

function checkIntegerCursor(cursor: unknown, what: string): number | null {
  if (cursor === null) return null;
  if (typeof cursor !== 'number' || !Number.isInteger(cursor)) {
    throw new TypeError(`${what}: the saved cursor ${JSON.stringify(cursor)} is not an integer; was the checkpoint written by another builder?`);
  }
  return cursor;
}

/**
 * Items of an array, split into contiguous blocks of indexes. The cursor is the
 * index of the last finished item. The array is not copied: instances see it
 * copy-on-write.
 */
export function fromArray<T>(array: readonly T[]): SyncBuilder<T, number> {
  if (!Array.isArray(array)) throw new TypeError('fromArray(array): array must be an array');
  return function* fromArrayBuilder(instance, instances, cursor) {
    const [lo, hi] = share(0, array.length, instance, instances);
    const last = checkIntegerCursor(cursor, 'fromArray');
    for (let i = last === null ? lo : last + 1; i < hi; i++) yield [array[i], i] as const;
  };
}

/** The integers start, start+1, ..., end-1, split into contiguous blocks. The cursor is the last finished integer. */
export function range(start: number, end: number): SyncBuilder<number, number> {
  if (!Number.isSafeInteger(start)) throw new TypeError('range(start, end): start must be a safe integer');
  if (!Number.isSafeInteger(end)) throw new TypeError('range(start, end): end must be a safe integer');
  if (end < start) throw new RangeError(`range(start, end): end (${end}) must not be less than start (${start})`);
  return function* rangeBuilder(instance, instances, cursor) {
    const [lo, hi] = share(start, end, instance, instances);
    const last = checkIntegerCursor(cursor, 'range');
    for (let i = last === null ? lo : last + 1; i < hi; i++) yield [i, i] as const;
  };
}

export interface LinesOptions {
  /** Bytes per read. Default 64 KiB. */
  chunkSize?: number;
}

/**
 * The lines of a file (without their "\n", and without a trailing "\r").
 * The file is split by bytes: instance i owns the lines that start in its
 * share of the file's size. The cursor is the byte offset just past the last
 * finished line, so a resume reads from there, not from the start of the file.
 */
export function lines(file: string, options: LinesOptions = {}): SyncBuilder<string, number> {
  if (typeof file !== 'string' || file === '') throw new TypeError('lines(path): path must be a non-empty string');
  const chunkSize = options.chunkSize ?? 64 * 1024;
  if (!Number.isInteger(chunkSize) || chunkSize < 1) throw new TypeError('lines(path, options): options.chunkSize must be a positive integer');
  return function* linesBuilder(instance, instances, cursor) {
    const fd = fs.openSync(file, 'r');
    try {
      const [lo, hi] = share(0, fs.fstatSync(fd).size, instance, instances);
      // buf holds the file's bytes [bufStart, bufStart + bufLen).
      let buf = Buffer.allocUnsafe(chunkSize);
      let bufStart = 0;
      let bufLen = 0;

      // Keeps the held bytes from `at` on, then reads once after them. False at end of file.
      const readMore = (at: number): boolean => {
        const from = at - bufStart;
        const keep = from >= 0 && from < bufLen ? bufLen - from : 0;
        if (keep > 0 && from > 0) buf.copy(buf, 0, from, bufLen);
        if (keep === buf.length) {
          const bigger = Buffer.allocUnsafe(buf.length * 2);
          buf.copy(bigger, 0, 0, keep);
          buf = bigger;
        }
        bufStart = at;
        bufLen = keep;
        const n = fs.readSync(fd, buf, bufLen, buf.length - bufLen, bufStart + bufLen);
        bufLen += n;
        return n > 0;
      };

      // The file offset of the first "\n" at or after `from`, or -1 when there is none
      // (then buf holds everything from `from` to the end of the file).
      const newlineFrom = (from: number): number => {
        let scan = from;
        for (;;) {
          if (scan >= bufStart && scan < bufStart + bufLen) {
            const i = buf.subarray(0, bufLen).indexOf(10, scan - bufStart);
            if (i >= 0) return bufStart + i;
            scan = bufStart + bufLen;
          }
          if (!readMore(from)) return -1;
        }
      };

      const text = (start: number, end: number): string => {
        if (end > start && buf[end - 1 - bufStart] === 13) end--;
        return buf.toString('utf8', start - bufStart, end - bufStart);
      };

      let pos = checkIntegerCursor(cursor, 'lines');
      if (pos === null) {
        pos = lo;
        if (lo > 0) {
          // The first line that starts at or after lo begins just past the first "\n" at or after lo - 1.
          const nl = newlineFrom(lo - 1);
          if (nl < 0) return;
          pos = nl + 1;
        }
      }
      while (pos < hi) {
        const nl = newlineFrom(pos);
        if (nl < 0) {
          // The last line has no "\n".
          const end = bufStart + bufLen;
          if (end > pos) yield [text(pos, end), end] as const;
          return;
        }
        yield [text(pos, nl), nl + 1] as const;
        pos = nl + 1;
      }
    } finally {
      fs.closeSync(fd);
    }
  };
}

export interface ByKeyOptions<T, K> {
  /** The key of an item. Default: item.id. */
  key?: (item: T) => K;
}

/**
 * Keyset pagination: fetchPage(afterKey, { instance, instances }) returns the
 * next page of this instance's items in key order (afterKey is null for the
 * first page); an empty page ends the partition. The cursor is the last
 * finished item's key.
 */
export function byKey<T, K>(
  fetchPage: (afterKey: K | null, ctx: { instance: number; instances: number }) => readonly T[] | Promise<readonly T[]>,
  options: ByKeyOptions<T, K> = {},
): AsyncBuilder<T, K> {
  if (typeof fetchPage !== 'function') throw new TypeError('byKey(fetchPage): fetchPage must be a function');
  const key = options.key ?? ((item: T) => (item as { id: K }).id);
  if (typeof key !== 'function') throw new TypeError('byKey(fetchPage, options): options.key must be a function');
  return async function* byKeyBuilder(instance, instances, cursor) {
    let after = cursor;
    for (;;) {
      const page = await fetchPage(after, { instance, instances });
      if (!Array.isArray(page)) throw new TypeError(`byKey: fetchPage must return an array, got ${typeof page}`);
      if (page.length === 0) return;
      for (const item of page) {
        const k = key(item);
        if (k === undefined) throw new TypeError('byKey: an item has no key (options.key returned undefined)');
        yield [item, k] as const;
        after = k;
      }
    }
  };
}

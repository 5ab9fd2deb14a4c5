// Outcomes of a call, and their delivery. Items settle in any order; the
// ledger releases them in input order (onResult, an ordered stream) or as
// they arrive (an unordered stream), and keeps only what it must: every
// value for map, nothing for each, a bounded window for a stream.
import type { Settled } from './options';

export type Collect = 'array' | 'none' | 'stream';

interface Entry {
  ok: boolean;
  value: unknown;
}

export interface LedgerOptions {
  collect: Collect;
  settle: boolean;
  ordered: boolean;
  onResult?: (value: unknown, index: number) => void;
  /** Where a stream's outcomes go: values, or Settled records with settle. */
  emit?: (out: unknown) => void;
}

export class Ledger {
  /** Every index below it has settled and has been released. */
  prefix = 0;
  settled = 0;
  readonly values: unknown[];
  readonly reasons = new Map<number, Error>();
  /** Outcomes at or above `prefix`: held for release (null: nothing to release). */
  private readonly ahead = new Map<number, Entry | null>();
  /** When the input's length is known (an array): one byte per item, so results arriving out of order cost no map. */
  private readonly state: Uint8Array | undefined;
  private readonly hold: boolean;
  private halted = false;

  constructor(
    private readonly opts: LedgerOptions,
    length?: number,
  ) {
    this.hold = (opts.collect === 'stream' && opts.ordered) || opts.onResult !== undefined;
    this.state = length === undefined ? undefined : new Uint8Array(length);
    this.values = length === undefined || opts.collect !== 'array' ? [] : new Array(length);
  }

  has(index: number): boolean {
    if (this.state !== undefined) return this.state[index] !== 0;
    return index < this.prefix || this.ahead.has(index);
  }

  /**
   * Records an outcome; false if the item had one already. Throws what the
   * user's onResult throws (the index is released all the same).
   */
  record(index: number, ok: boolean, value: unknown): boolean {
    if (this.has(index) || this.halted) return false;
    this.settled++;
    if (this.state !== undefined) this.state[index] = 1;
    const o = this.opts;
    if (!ok && !o.settle) {
      // Fail-fast: the failure ends the call; nothing after it is released.
      this.halted = true;
      this.reasons.set(index, value as Error);
      return true;
    }
    if (o.collect === 'array') {
      if (ok) this.values[index] = value;
      else this.reasons.set(index, value as Error);
    }
    const entry: Entry = { ok, value };
    if (o.collect === 'stream' && !o.ordered) this.emit(entry);
    if (this.state !== undefined) return this.advanceKnown(index, entry);
    if (index === this.prefix && this.ahead.size === 0) {
      // The common case, in order: release at once, without the map.
      this.prefix++;
      this.release(entry, index);
      return true;
    }
    this.ahead.set(index, this.hold ? entry : null);
    while (this.ahead.has(this.prefix)) {
      const e = this.ahead.get(this.prefix)!;
      const at = this.prefix;
      this.ahead.delete(at);
      this.prefix++;
      if (e !== null) this.release(e, at);
    }
    return true;
  }

  private advanceKnown(index: number, entry: Entry): boolean {
    const state = this.state!;
    if (this.hold && index !== this.prefix) this.ahead.set(index, entry);
    while (this.prefix < state.length && state[this.prefix] !== 0) {
      const at = this.prefix++;
      if (!this.hold) continue;
      const e = at === index ? entry : this.ahead.get(at)!;
      this.ahead.delete(at);
      this.release(e, at);
    }
    return true;
  }

  private release(e: Entry, index: number): void {
    const o = this.opts;
    if (o.collect === 'stream' && o.ordered) this.emit(e);
    if (o.onResult !== undefined && e.ok) o.onResult(e.value, index);
  }

  /** map's result: the values, or Settled records with settle. */
  result(n: number): unknown[] {
    if (!this.opts.settle) {
      this.values.length = n;
      return this.values;
    }
    const out: Settled<unknown>[] = new Array(n);
    for (let i = 0; i < n; i++) {
      const reason = this.reasons.get(i);
      out[i] = reason !== undefined ? { status: 'rejected', reason } : { status: 'fulfilled', value: this.values[i] };
    }
    return out;
  }

  private emit(e: Entry): void {
    const out: unknown = this.opts.settle ? (e.ok ? { status: 'fulfilled', value: e.value } : { status: 'rejected', reason: e.value }) : e.value;
    this.opts.emit!(out);
  }
}

// One instance of a run, as the parent sees it: where it started, how far it
// got, and how it ended. A local run has one slot per instance; a leased run
// (cowfork/bullmq) one per partition lease. These functions turn slots into
// what iterate reports and saves; run.ts drives them.
import type { IterateError } from '../errors';
import type { ForkedChild } from '../fork';
import type { WatchHandle } from '../native';
import type { Failure, RecordReader } from './channel';
import type { IterateState } from './store';
import type { InstanceResult, InterruptReason, LeaseOutcome } from './types';

export interface Slot {
  readonly instance: number;
  /** Cursor the instance started this run from. */
  readonly startCursor: unknown;
  readonly processedBefore: number;
  processed: number;
  /** The newest cursor as JSON text, parsed lazily. */
  cursorText: string | null;
  cursor: unknown;
  done: boolean;
  failure?: Failure;
  /** The signal the instance itself got, when it stopped because of one. */
  stoppedBy?: InterruptReason;
  error?: IterateError;
  child?: ForkedChild;
  readFd?: number;
  watch?: WatchHandle;
  reader?: RecordReader;
  /** Leased slots: the cursor changed since the last save to the engine. */
  unsaved?: boolean;
  /** Leased slots: the lease was lost; the instance's stop is not the run's interruption. */
  revoked?: boolean;
  /** Leased slots: settles the engine's lease once the instance has ended. */
  ended?: (outcome: LeaseOutcome) => void;
}

export function newSlot(instance: number, cursor: unknown, processedBefore: number, done: boolean): Slot {
  return { instance, startCursor: cursor, processedBefore, processed: 0, cursorText: null, cursor, done };
}

/** The slot's newest cursor, parsed from the instance's JSON on first use. */
export function cursorOf(slot: Slot): unknown {
  if (slot.cursorText !== null) {
    slot.cursor = JSON.parse(slot.cursorText);
    slot.cursorText = null;
  }
  return slot.cursor;
}

export function resultOf<C>(s: Slot): InstanceResult<C> {
  const r: InstanceResult<C> = {
    instance: s.instance,
    processed: s.processed,
    processedTotal: s.processedBefore + s.processed,
    cursor: cursorOf(s) as C | null,
    done: s.done,
  };
  if (s.error !== undefined) r.error = s.error;
  return r;
}

/** The slots to report: a leased partition worked on more than once here counts by its last lease. */
export function reportedSlots(slots: Slot[], leased: boolean): Slot[] {
  if (!leased) return slots;
  const last = new Map<number, Slot>();
  for (const s of slots) last.set(s.instance, s);
  return [...last.values()].sort((a, b) => a.instance - b.instance);
}

/** The checkpoint of a local run: every instance's cursor, in one state. */
export function snapshotOf(slots: Slot[], instances: number, allComplete: boolean): IterateState {
  return {
    version: 1,
    instances,
    allComplete,
    cursors: slots.map((s) => ({
      instance: s.instance,
      instances,
      innerCursor: cursorOf(s),
      done: s.done,
      processed: s.processedBefore + s.processed,
    })),
  };
}

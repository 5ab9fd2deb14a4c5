// The shared-memory layout of a call: a few counters, then one slot per
// worker number. Children write; the parent reads for crash attribution,
// timeouts, and how to stop each child.
export const DONE = 0; // items with a record written (pool mode)
export const STOP = 1; // set when the call stops: children claim nothing more, ctx.signal aborts
export const CURSOR = 2; // next position in the current round's list (pool mode)
export const SLOT_BASE = 4;
export const SLOT_SIZE = 3;
// Offsets inside a slot.
export const SLOT_INDEX = 0; // current index + 1 (0 = idle)
export const SLOT_START = 1; // when the current item started (ms, performance.now())
export const SLOT_ASYNC = 2; // 1 while the item awaits a promise

export const slotBase = (worker: number): number => SLOT_BASE + worker * SLOT_SIZE;

export const shmCount = (workers: number): number => SLOT_BASE + SLOT_SIZE * workers;

export const now = (): number => performance.now();

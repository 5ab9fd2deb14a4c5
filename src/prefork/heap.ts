// A full collection in the master before it forks. It keeps copy-on-write
// sharing: otherwise each worker's first GC sweeps the master's garbage and
// writes to (so copies) the pages holding it (docs/hazards.md).
import v8 from 'node:v8';
import vm from 'node:vm';

/** The old generation has to grow this much since the last collection for a new one to run. */
const GROWTH = 4 * 1024 * 1024;

export class PreForkGc {
  private heapAfterGc = -1;
  private due = false;

  /**
   * Collects now, if the old generation grew since the last collection, so a
   * replacement in a quiet master forks at once (the young generation's churn
   * does not count: it is small, and a scavenge does not sweep the old pages).
   */
  collect(): void {
    this.due = false;
    const used = oldGenerationUsed();
    if (this.heapAfterGc >= 0 && used < this.heapAfterGc + GROWTH) return;
    const gc = fullGc();
    gc();
    gc();
    this.heapAfterGc = oldGenerationUsed();
  }

  /** A replacement for a lost worker forks first; its collection runs at the end of the turn. */
  defer(): void {
    this.due = true;
  }

  /** Runs a deferred collection, so the next fork finds a clean heap. */
  collectIfDeferred(): void {
    if (this.due) this.collect();
  }
}

function oldGenerationUsed(): number {
  let used = 0;
  for (const space of v8.getHeapSpaceStatistics()) if (space.space_name !== 'new_space') used += space.space_used_size;
  return used;
}

let gcFn: (() => void) | null = null;

/** global.gc when --expose-gc is on; otherwise V8's gc extension, fetched once. */
function fullGc(): () => void {
  if (gcFn !== null) return gcFn;
  const g = (globalThis as { gc?: () => void }).gc;
  if (typeof g === 'function') {
    gcFn = g;
  } else {
    v8.setFlagsFromString('--expose-gc');
    gcFn = vm.runInNewContext('gc') as () => void;
  }
  return gcFn;
}

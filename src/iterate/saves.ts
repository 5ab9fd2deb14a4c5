// When the run loop saves its cursors: one save at a time, a save asked for
// while one is in flight runs once that one has finished, and the run can wait
// until every change is saved. What a save writes (the whole state to a
// CursorStore, or each moved partition to a lease engine) is the caller's.
import { isThenable } from '../util';

export class Saves {
  /** Something changed since the last save. */
  dirty = false;
  /** Items finished since the last save (checkpointEvery.items). */
  itemsSinceSave = 0;
  private saving: Promise<void> | null = null;
  private again = false;

  constructor(
    /** Writes the current state; may return a promise. */
    private readonly write: () => unknown,
    /** A save threw or rejected. */
    private readonly failed: (err: unknown) => void,
  ) {}

  /** Saves now, or right after the save in flight. */
  save(): void {
    if (this.saving !== null) {
      this.again = true;
      return;
    }
    this.itemsSinceSave = 0;
    this.dirty = false;
    let r: unknown;
    try {
      r = this.write();
    } catch (err) {
      return this.failed(err);
    }
    if (!isThenable(r)) return;
    this.saving = Promise.resolve(r).then(
      () => {
        this.saving = null;
        if (this.again) {
          this.again = false;
          this.save();
        }
      },
      (err) => {
        this.saving = null;
        this.failed(err);
      },
    );
  }

  /** Resolves once every change so far is saved (or its save failed). */
  async settle(): Promise<void> {
    while (this.saving !== null) await this.saving;
    if (this.dirty || this.again) {
      this.again = false;
      this.save();
      while (this.saving !== null) await this.saving;
    }
  }
}

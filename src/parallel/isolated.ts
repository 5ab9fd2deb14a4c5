// Isolation mode: one fresh fork per item, with a per-index results file.
import { exitChild, forkChild, libraryMacrotask, libraryTimeout, onChildFatal } from '../fork';
import { BatchWriter, Outcome } from '../frame';
import { native } from '../native';
import { writeAll } from '../scratch';
import { Call, type Live, now } from './call';

export class IsolatedCall<T, R> extends Call<T, R> {
  private next = 0;
  private scheduled = false;
  private doneItems = 0;

  start(): void {
    this.schedulePump();
  }

  override continueWork(): boolean {
    return this.scheduled || this.next < this.n;
  }

  private schedulePump(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    libraryMacrotask(() => {
      this.scheduled = false;
      if (this.isStopped) return this.maybeFinish();
      while (this.live.size < this.opts.concurrency && this.next < this.n) this.spawnItem(this.next++);
    });
  }

  private spawnItem(index: number): void {
    const file = String(index);
    const child = forkChild(() => this.childMain(index, file));
    const live: Live = { child, slot: 0, file, timedOut: false, index };
    this.live.set(child.pid, live);
    let cancelTimer: (() => void) | undefined;
    if (this.opts.timeout !== undefined) {
      cancelTimer = libraryTimeout(() => {
        live.timedOut = true;
        child.kill('SIGKILL');
      }, this.opts.timeout);
    }
    child.exited.then((exit) => {
      cancelTimer?.();
      this.live.delete(child.pid);
      const clean = exit.exitCode === 0 && !live.timedOut;
      if (this.absorb(file, clean, exit.pid) && this.state[index] === 0 && !this.isStopped) {
        this.failByParent(index, this.crashError(index, exit, live.timedOut));
      }
      this.doneItems++;
      this.reportProgress(this.doneItems);
      if (!this.isStopped && this.next < this.n) this.schedulePump();
      this.maybeFinish();
    });
  }

  // Runs in the child.
  private childMain(index: number, file: string): number | Promise<number> {
    const out = new BatchWriter(native.scratchOpen(this.dir, file, true), this.key, writeAll);
    onChildFatal((err) => {
      out.add(index, Outcome.Error, err, now());
      out.flush();
      exitChild(0);
    });
    const r = this.runItem(out, index, () => this.flush(out));
    return r === undefined ? 0 : r.then(() => 0);
  }
}

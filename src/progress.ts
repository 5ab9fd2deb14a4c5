// Progress reporting: a callback, and an optional bar on a TTY stderr.

export type ProgressCallback = (done: number, total: number) => void;

export class Progress {
  private last = -1;
  private readonly started = Date.now();
  private readonly bar: boolean;

  constructor(
    private readonly total: number,
    private readonly callback: ProgressCallback | undefined,
    drawBar: boolean,
    private readonly label = 'cowfork',
  ) {
    this.bar = drawBar && process.stderr.isTTY === true;
  }

  get active(): boolean {
    return this.callback !== undefined || this.bar;
  }

  /** Reports `done` if it changed. Throws whatever the user's callback throws. */
  update(done: number): void {
    if (done === this.last) return;
    this.last = done;
    if (this.bar) this.draw(done);
    this.callback?.(done, this.total);
  }

  finish(done: number): void {
    this.update(done);
    if (this.bar) process.stderr.write('\n');
  }

  private draw(done: number): void {
    const width = Math.max(10, Math.min(40, (process.stderr.columns ?? 80) - 50));
    const frac = this.total === 0 ? 1 : done / this.total;
    const filled = Math.round(frac * width);
    const elapsed = (Date.now() - this.started) / 1000;
    const eta = done > 0 ? (elapsed / done) * (this.total - done) : 0;
    process.stderr.write(
      `\r${this.label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ` +
        `${done}/${this.total} ${(frac * 100).toFixed(0)}% ${elapsed.toFixed(1)}s eta ${eta.toFixed(1)}s `,
    );
  }
}

// The signals an operator sends the master. A handler only queues the signal
// and wakes the loop; the loop acts on the queue in its own turn.
//
// Each one has a listener, so each one is handled explicitly. That matters when
// the master is PID 1 of a container: the kernel drops a signal whose
// disposition is the default for init, so without a listener `docker stop`'s
// SIGTERM would do nothing.

export const MASTER_SIGNALS = ['SIGTERM', 'SIGINT', 'SIGQUIT', 'SIGHUP', 'SIGUSR2', 'SIGTTIN', 'SIGTTOU'] as const;

export type MasterSignal = (typeof MASTER_SIGNALS)[number];

export class SignalQueue {
  private readonly queue: MasterSignal[] = [];
  private readonly handlers = new Map<MasterSignal, () => void>();

  install(wake: () => void): void {
    for (const sig of MASTER_SIGNALS) {
      const fn = (): void => {
        this.queue.push(sig);
        wake();
      };
      this.handlers.set(sig, fn);
      process.on(sig, fn);
    }
  }

  /** The signals received since the last call, oldest first. */
  take(): MasterSignal[] {
    return this.queue.splice(0);
  }

  uninstall(): void {
    for (const [sig, fn] of this.handlers) process.removeListener(sig, fn);
    this.handlers.clear();
  }
}

// The signals an operator sends the master. A handler only queues the signal
// and wakes the loop; the loop acts on the queue in its own turn.
//
// Each one has a listener, so each one is handled explicitly. That matters when
// the master is PID 1 of a container: the kernel drops a signal whose
// disposition is the default for init, so without a listener `docker stop`'s
// SIGTERM would do nothing.

export const MASTER_SIGNALS = ['SIGTERM', 'SIGINT', 'SIGQUIT', 'SIGHUP', 'SIGUSR2', 'SIGTTIN', 'SIGTTOU'] as const;

export type MasterSignal = (typeof MASTER_SIGNALS)[number];

/** What the master does for the signals an operator sends it. */
export interface SignalActions {
  /** SIGTERM, SIGINT, SIGQUIT: drain and stop. */
  stop(): void;
  /** SIGHUP: a rolling restart. */
  restart(): void;
  /** SIGUSR2: reload the code. */
  reload(): void;
  /** SIGTTIN: one worker more; SIGTTOU: one fewer. */
  scaleBy(delta: 1 | -1): void;
}

export function actOn(sig: MasterSignal, act: SignalActions): void {
  switch (sig) {
    case 'SIGTERM':
    case 'SIGINT':
    case 'SIGQUIT':
      return act.stop();
    case 'SIGHUP':
      return act.restart();
    case 'SIGUSR2':
      return act.reload();
    case 'SIGTTIN':
      return act.scaleBy(1);
    case 'SIGTTOU':
      return act.scaleBy(-1);
  }
}

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

// The MessagePorts whose other end the parent handed to one of its Workers.
// Libraries that run a pool of Workers talk to each one over such a port: a
// piscina pool makes a MessageChannel per Worker, sends `port2` to it with
// `worker.postMessage(init, [port2])`, and posts every task on `port1`. In a
// forked child the Worker's thread does not exist, so a task posted on
// `port1` was never answered: `pool.run()` waited until the item's timeout,
// or forever without one (docs/hazards.md, "worker_threads").
//
// Node has no API that names a port's other end, so cowfork notes it as the
// channel is made: `MessageChannel` (on `node:worker_threads` and on
// `globalThis`) becomes a subclass that records the pair, and
// `Worker.prototype.postMessage` records, once a post succeeded, for each
// port in its transfer list, the end that stays behind. In a child,
// `MessagePort.prototype.postMessage` throws on such an end, as the Worker's
// own postMessage() does. Not known, and waiting as before: channels made
// from a `MessageChannel` read before cowfork was loaded (`const {
// MessageChannel } = require(...)` in a module loaded earlier; ESM imports
// read the new class), ports handed over in `new Worker(file, { transferList
// })` or through another port, and transfer lists that are not arrays.
import worker_threads, { type MessagePort, type Worker } from 'node:worker_threads';
import { processState, replaceValue } from './util';

interface PortState {
  /** Each end of every channel made since cowfork was loaded, to its other end. */
  readonly peers: WeakMap<MessagePort, MessagePort>;
  /** The end that stayed here of each port handed to a Worker, to that Worker. */
  readonly workerOf: WeakMap<MessagePort, Worker>;
  /** In a child: the parent's Workers, each with the error a post to it throws. */
  readonly gone: WeakMap<Worker, () => Error>;
  installed: boolean;
  /** Whether MessagePort.prototype.postMessage checks for a gone Worker (children only). */
  checking: boolean;
}

// The copy of cowfork that installs the wrappers fills it, and the copy that forks reads it.
const state = processState<PortState>('cowfork.workerPorts', () => ({
  peers: new WeakMap(),
  workerOf: new WeakMap(),
  gone: new WeakMap(),
  installed: false,
  checking: false,
}));

/** The MessagePorts in a postMessage transfer argument: an array, or `{ transfer }` with an array. */
function portsIn(transfer: unknown): MessagePort[] {
  const list = Array.isArray(transfer) ? transfer : (transfer as { transfer?: unknown } | null | undefined)?.transfer;
  if (!Array.isArray(list)) return [];
  return list.filter((x): x is MessagePort => x instanceof worker_threads.MessagePort);
}

/** At load: notes each channel's two ends, and which end stays behind when the other goes to a Worker. */
export function trackWorkerPorts(): void {
  if (state.installed) return;
  state.installed = true;
  const Base = worker_threads.MessageChannel;
  // Named as the class it extends: `channel.constructor.name` and `instanceof MessageChannel` read as before.
  const MessageChannel = class MessageChannel extends Base {
    constructor() {
      super();
      state.peers.set(this.port1, this.port2);
      state.peers.set(this.port2, this.port1);
    }
  };
  (worker_threads as { MessageChannel: unknown }).MessageChannel = MessageChannel;
  // A replacement someone else installed (a polyfill, a test environment) stays.
  const g = globalThis as { MessageChannel?: unknown };
  if (g.MessageChannel === Base) g.MessageChannel = MessageChannel;

  const post = worker_threads.Worker.prototype.postMessage;
  replaceValue(worker_threads.Worker.prototype, 'postMessage', function postMessage(this: Worker, ...args: unknown[]) {
    const result = Reflect.apply(post, this, args);
    // Only once the post succeeded: a port that did not move is still usable here, and in a child.
    if (args.length > 1) {
      for (const port of portsIn(args[1])) {
        const stays = state.peers.get(port);
        if (stays !== undefined) state.workerOf.set(stays, this);
      }
    }
    return result;
  });
}

/** In a child: postMessage() on a port whose other end went to `worker` throws `gone()`. */
export function standInForGonePorts(worker: Worker, gone: () => Error): void {
  state.gone.set(worker, gone);
  if (state.checking) return;
  state.checking = true;
  const post = worker_threads.MessagePort.prototype.postMessage;
  replaceValue(worker_threads.MessagePort.prototype, 'postMessage', function postMessage(this: MessagePort, ...args: unknown[]) {
    const worker = state.workerOf.get(this);
    const error = worker === undefined ? undefined : state.gone.get(worker);
    if (error !== undefined) throw error();
    return Reflect.apply(post, this, args);
  });
}

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
// `Worker.prototype.postMessage` records, for each port in its transfer list,
// the end that stays behind. In a child, `standInForGonePorts()` gives those
// ends a `postMessage()` that throws, as the Worker's own does. Channels made
// before cowfork was loaded, and ports handed over in `new Worker(file, {
// transferList })`, are not known, and wait as before.
import module from 'node:module';
import worker_threads, { type MessagePort, type Worker } from 'node:worker_threads';

/** Each end of every channel made since cowfork was loaded, to its other end. */
const peers = new WeakMap<MessagePort, MessagePort>();
/** Per Worker, the ends that stayed here of the ports handed to it. */
const handed = new WeakMap<Worker, Array<WeakRef<MessagePort>>>();

// One install per process, shared by every copy of cowfork loaded in it.
const INSTALLED = Symbol.for('cowfork.workerPorts');

/** The MessagePorts in a postMessage transfer argument (a list, or `{ transfer }`). */
function portsIn(transfer: unknown): MessagePort[] {
  const list = Array.isArray(transfer) ? transfer : (transfer as { transfer?: unknown } | null | undefined)?.transfer;
  if (!Array.isArray(list)) return [];
  return list.filter((x): x is MessagePort => x instanceof worker_threads.MessagePort);
}

/** At load: notes each channel's two ends, and which end stays behind when the other goes to a Worker. */
export function trackWorkerPorts(): void {
  const g = globalThis as { [INSTALLED]?: boolean };
  if (g[INSTALLED]) return;
  g[INSTALLED] = true;
  const Base = worker_threads.MessageChannel;
  // Named as the class it extends: `channel.constructor.name` and `instanceof MessageChannel` read as before.
  const MessageChannel = class MessageChannel extends Base {
    constructor() {
      super();
      peers.set(this.port1, this.port2);
      peers.set(this.port2, this.port1);
    }
  };
  (worker_threads as { MessageChannel: unknown }).MessageChannel = MessageChannel;
  (globalThis as { MessageChannel: unknown }).MessageChannel = MessageChannel;
  // `import { MessageChannel } from 'node:worker_threads'` reads the new class too.
  module.syncBuiltinESMExports();

  const proto = worker_threads.Worker.prototype;
  const post = proto.postMessage;
  Object.defineProperty(proto, 'postMessage', {
    configurable: true,
    writable: true,
    enumerable: false,
    value: function postMessage(this: Worker, value: unknown, transfer?: unknown) {
      if (transfer !== undefined) {
        for (const port of portsIn(transfer)) {
          const stays = peers.get(port);
          if (stays === undefined) continue;
          let ends = handed.get(this);
          if (ends === undefined) handed.set(this, (ends = []));
          ends.push(new WeakRef(stays));
        }
      }
      return post.call(this, value, transfer as never);
    },
  });
}

/** In a child: each port whose other end went to `worker` throws `gone()` from postMessage(). */
export function standInForGonePorts(worker: Worker, gone: () => Error): void {
  for (const ref of handed.get(worker) ?? []) {
    const port = ref.deref();
    if (port === undefined) continue;
    Object.defineProperty(port, 'postMessage', {
      value: () => {
        throw gone();
      },
      writable: true,
      configurable: true,
      enumerable: false,
    });
  }
  handed.delete(worker);
}

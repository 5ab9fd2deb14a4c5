// The master's listening sockets. They are opened once, before any fork, and
// every worker inherits them. With SO_REUSEPORT each num has sockets of its
// own, which the master keeps across that num's workers so that a replacement
// accepts on the same socket and no queued connection is lost.
import { type Address, type Endpoint, closeSocket, openSocket } from './listen';

export class MasterSockets {
  /** The sockets `master.addresses` reports (num 0's own sockets with SO_REUSEPORT). */
  readonly addresses: Address[] = [];
  /** SO_REUSEPORT mode: each num's own sockets. */
  private readonly own = new Map<number, Address[]>();

  constructor(
    private readonly endpoints: Endpoint[],
    private readonly backlog: number,
    private readonly reusePort: boolean,
  ) {
    const opened: Address[] = [];
    try {
      for (const e of endpoints) opened.push(openSocket(e, backlog, reusePort));
    } catch (err) {
      for (const a of opened) closeSocket(a);
      throw err;
    }
    this.addresses.push(...opened);
    if (reusePort) this.own.set(0, opened);
  }

  /** The fds the worker of `num` accepts on. */
  listenFdsOf(num: number): number[] {
    if (!this.reusePort) return this.addresses.map((a) => a.fd);
    let own = this.own.get(num);
    if (own === undefined) {
      // Same port as num 0's socket, which may have been an ephemeral one.
      own = this.endpoints.map((e, i) => openSocket(e, this.backlog, true, this.addresses[i].port));
      this.own.set(num, own);
    }
    return own.map((a) => a.fd);
  }

  /** The other nums' sockets, which the worker of `num` closes. */
  otherSockets(num: number): number[] {
    const out: number[] = [];
    for (const [n, socks] of this.own) if (n !== num) for (const a of socks) out.push(a.fd);
    return out;
  }

  /** Whether `num` has sockets of its own. */
  hasOwn(num: number): boolean {
    return this.own.has(num);
  }

  /** Closes the sockets of a num that is gone (scaled down). */
  closeOwn(num: number): void {
    // num 0's sockets are `addresses`; they live as long as the master.
    if (num === 0) return;
    for (const a of this.own.get(num) ?? []) closeSocket({ fd: a.fd });
    this.own.delete(num);
  }

  closeAll(): void {
    for (const num of [...this.own.keys()]) this.closeOwn(num);
    for (const a of this.addresses) closeSocket(a);
  }
}

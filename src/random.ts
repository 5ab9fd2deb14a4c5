// Random state across fork(). Math.random's state and the batch of random
// bytes crypto.randomUUID hands out are both in the copied heap, so without
// this every child would repeat the parent's next values.
//
// What this costs is counted in page faults, not instructions: every page a
// child writes is a copy-on-write fault, and on a busy VM each one costs tens
// of microseconds. OpenSSL's generator reseeds itself on its first use after
// fork(), which writes about forty pages of its state. So a child takes its
// fresh bytes from the kernel (getrandom(2)), and it only does so for the
// generators it actually uses.
import crypto from 'node:crypto';
import { native } from './native';

// The original, even if the app replaces crypto.randomUUID later.
const { randomUUID } = crypto;

/**
 * Node's cached UUID batch: a Uint8Array of 128 × 16 random bytes, refilled
 * when its last UUID has been handed out. undefined until the first fork
 * looks for it; null where it cannot be found.
 */
let uuidBatch: Uint8Array | null | undefined;

/** The same 16 bytes, except for the version nibble and variant bits that a v4 UUID overwrites. */
function sameUuidBytes(uuid: string, bytes: Uint8Array, offset: number): boolean {
  const hex = uuid.replace(/-/g, '');
  for (let i = 0; i < 16; i++) {
    const mask = i === 6 ? 0x0f : i === 8 ? 0x3f : 0xff;
    if ((parseInt(hex.slice(2 * i, 2 * i + 2), 16) & mask) !== (bytes[offset + i] & mask)) return false;
  }
  return true;
}

/**
 * Finds the batch by watching it being refilled. Node 20 to 24 read
 * `buf.byteLength` when they refill it, so a getter placed on
 * Uint8Array.prototype for the length of one batch sees it go by; 128 draws
 * always pass through a refill. The getter is removed at once, and the find
 * is checked: the UUID drawn by the refill must come from bytes 16 to 31 of
 * what was seen. Node 26 reads the length through an internal that no getter
 * can see, so there the result is null.
 */
function findUuidBatch(): Uint8Array | null {
  const proto = Uint8Array.prototype;
  const typedArrayProto = Object.getPrototypeOf(proto) as object;
  const realGetter = Object.getOwnPropertyDescriptor(typedArrayProto, 'byteLength')?.get;
  if (realGetter === undefined || Object.prototype.hasOwnProperty.call(proto, 'byteLength')) return null;
  let seen: Uint8Array | null = null;
  let uuid = '';
  Object.defineProperty(proto, 'byteLength', {
    configurable: true,
    get(this: Uint8Array) {
      if (seen === null && this.length >= 32 && this.length % 16 === 0) seen = this;
      return realGetter.call(this) as number;
    },
  });
  try {
    for (let i = 0; i < 129 && seen === null; i++) uuid = randomUUID();
  } finally {
    delete (proto as { byteLength?: number }).byteLength;
  }
  const found = seen as Uint8Array | null;
  return found !== null && sameUuidBytes(uuid, found, 16) ? found : null;
}

/** In the parent, before a fork: the first one looks for the UUID batch. */
export function prepareRandom(): void {
  if (uuidBatch === undefined) uuidBatch = findUuidBatch();
}

// Math.random in a child: fed by the kernel, 53 random bits per call as V8's
// own gives. Made once, in the parent; the pool is only allocated and filled
// when a child first calls it.
const POOL_WORDS = 256;
let pool: Uint32Array | undefined;
let next = POOL_WORDS;

function childMathRandom(): number {
  if (next >= POOL_WORDS) {
    pool ??= new Uint32Array(POOL_WORDS);
    native.randomFill(new Uint8Array(pool.buffer));
    next = 0;
  }
  const hi = pool![next++] >>> 5;
  const lo = pool![next++] >>> 6;
  return (hi * 67108864 + lo) / 9007199254740992;
}

/** In the child: new random state for Math.random and crypto.randomUUID. */
export function reseedRandom(): void {
  // V8 offers no way to reseed Math.random, so the child gets a new one, with
  // an empty pool (a grandchild must not reuse its parent's numbers).
  next = POOL_WORDS;
  Math.random = childMathRandom;
  if (uuidBatch) {
    // Fresh bytes in place: the UUIDs left in the batch become this child's own.
    native.randomFill(uuidBatch);
  } else {
    // No handle on the batch: draw the rest of it, so that a refill made in
    // this child is what the next UUID comes from (about 60 page faults).
    for (let i = 0; i < 128; i++) randomUUID();
  }
}

/** Tests: whether the first fork found the UUID batch ('unknown' before it). */
export function uuidBatchState(): 'found' | 'missing' | 'unknown' {
  return uuidBatch === undefined ? 'unknown' : uuidBatch === null ? 'missing' : 'found';
}

/** Tests only: 'forget' makes children take the drawing path; 'reset' makes the next fork look again. */
export function setUuidBatchForTest(state: 'forget' | 'reset'): void {
  uuidBatch = state === 'forget' ? null : undefined;
}

// Option validation shared by the public facades. Messages name the option path.

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function optionsObject(v: unknown, name = 'options'): Record<string, unknown> {
  if (v === undefined) return {};
  if (!isPlainObject(v)) throw new TypeError(`${name} must be an object`);
  return v;
}

export function positiveInteger(v: unknown, name: string, fallback: number): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new TypeError(`${name} must be a positive integer`);
  if (v < 1) throw new RangeError(`${name} must be a positive integer, got ${v}`);
  return v;
}

export function nonNegativeInteger(v: unknown, name: string, fallback: number): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new TypeError(`${name} must be a non-negative integer`);
  if (v < 0) throw new RangeError(`${name} must be a non-negative integer, got ${v}`);
  return v;
}

export function positiveNumber(v: unknown, name: string): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || Number.isNaN(v)) throw new TypeError(`${name} must be a positive number`);
  if (!(v > 0) || !Number.isFinite(v)) throw new RangeError(`${name} must be a positive finite number, got ${v}`);
  return v;
}

export function boolean(v: unknown, name: string, fallback: boolean): boolean {
  if (v === undefined) return fallback;
  if (typeof v !== 'boolean') throw new TypeError(`${name} must be a boolean`);
  return v;
}

export function optionalFunction<F extends (...args: never[]) => unknown>(v: unknown, name: string): F | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'function') throw new TypeError(`${name} must be a function`);
  return v as F;
}

export function optionalSignal(v: unknown, name: string): AbortSignal | undefined {
  if (v === undefined) return undefined;
  if (!(v instanceof AbortSignal)) throw new TypeError(`${name} must be an AbortSignal`);
  return v;
}

export function rejectUnknown(opts: Record<string, unknown>, known: readonly string[], name = 'options'): void {
  for (const key of Object.keys(opts)) {
    if (!known.includes(key)) {
      throw new TypeError(`${name}.${key} is not a known option (known: ${known.join(', ')})`);
    }
  }
}

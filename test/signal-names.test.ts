// Signals are reported by the names users know. Where two names share a
// number, os.constants.signals lists both; signal 6 is SIGABRT (abort(), a
// failed assertion), not SIGIOT. The end-to-end case, a child that aborts,
// is in fork-worker-threads.test.ts.
import os from 'node:os';
import { describe, expect, it } from 'vitest';
import { signalName } from '../src/errors';

describe('signalName', () => {
  it('prefers SIGABRT to its alias SIGIOT, and SIGIO to SIGPOLL', () => {
    expect(signalName(os.constants.signals.SIGABRT)).toBe('SIGABRT');
    expect(signalName(os.constants.signals.SIGIO)).toBe('SIGIO');
  });

  it('names every other signal as os.constants.signals does, and none for 0', () => {
    const aliases = new Set(['SIGIOT', 'SIGPOLL']);
    for (const [name, num] of Object.entries(os.constants.signals)) {
      if (!aliases.has(name)) expect(signalName(num)).toBe(name);
    }
    expect(signalName(0)).toBeNull();
  });
});

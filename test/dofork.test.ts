// MADV_DOFORK in a few ranged madvise() calls (native/dofork.c) instead of one
// call per mapping, with the per-mapping walk as the fallback.
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { native } from '../src/native';

/** Mappings that fork() would leave out of a child: VmFlags "dc" (VM_DONTCOPY) in /proc/self/smaps. */
function dontfork(): string[] {
  const out: string[] = [];
  let range = '';
  for (const line of fs.readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) range = line;
    else if (line.startsWith('VmFlags:') && line.split(' ').includes('dc')) out.push(range);
  }
  return out;
}

/** Runs of adjacent mappings that refuse MADV_DOFORK, counted from /proc/self/maps. */
function specialRuns(): number {
  let runs = 0;
  let end = -1n;
  for (const line of fs.readFileSync('/proc/self/maps', 'utf8').trim().split('\n')) {
    if (!/\[(vvar|vvar_vclock|uprobes)\]$/.test(line)) continue;
    const [a, b] = line.split(' ')[0].split('-').map((x) => BigInt(`0x${x}`));
    if (a !== end) runs++;
    end = b;
  }
  return runs;
}

/** Allocates fresh V8 pages, which V8 maps MADV_DONTFORK. Keep the result alive. */
function freshPages(): number[][] {
  return Array.from({ length: 8 }, (_, i) => new Array(200_000).fill(i));
}

describe('MADV_DOFORK in a few ranged calls', () => {
  it('after the first pass, a few ranged calls leave no mapping DONTFORK', () => {
    native.doforkAll(); // the first pass learns the special mappings
    const keep = freshPages();
    expect(dontfork().length).toBeGreaterThan(0);
    const calls = native.doforkAll();
    expect(native.doforkLast()).toEqual([native.DOFORK.RANGED, calls]);
    // One call below each run of adjacent special mappings ([vvar], [vvar_vclock]), one that
    // checks the run still refuses, and one above the last.
    expect(calls).toBe(2 * specialRuns() + 1);
    expect(dontfork()).toEqual([]);
    expect(keep.length).toBe(8);
  });

  it('the per-mapping walk does the same work in one call per mapping', () => {
    const keep = freshPages();
    expect(dontfork().length).toBeGreaterThan(0);
    const mappings = fs.readFileSync('/proc/self/maps', 'utf8').trim().split('\n').length;
    const calls = native.doforkAll(native.DOFORK.FORCE_WALK);
    expect(native.doforkLast()).toEqual([native.DOFORK.WALK, calls]);
    expect(calls).toBeGreaterThan(mappings / 2);
    expect(dontfork()).toEqual([]);
    expect(keep.length).toBe(8);
  });

  it('when a ranged call meets a special mapping (EINVAL), it falls back to the walk and relearns them', () => {
    // Forgetting the special mappings makes the ranged call run into [vvar].
    const keep = freshPages();
    const calls = native.doforkAll(native.DOFORK.FORGET_SPECIAL);
    expect(native.doforkLast()).toEqual([native.DOFORK.WALK, calls]);
    expect(calls).toBeGreaterThan(10);
    expect(dontfork()).toEqual([]);
    native.doforkAll();
    expect(native.doforkLast()[0]).toBe(native.DOFORK.RANGED);
    expect(keep.length).toBe(8);
  });

  it('a child of a 200 MB heap, forked after the ranged pass, runs JavaScript over all of it', () => {
    // 200 arrays of 1 MB (doubles, 8 bytes each): one large-object mapping each.
    const heap = Array.from({ length: 200 }, (_, i) => new Array(131_072).fill(i + 0.5));
    expect(process.memoryUsage().heapUsed).toBeGreaterThan(200e6);
    const sum = (): number => heap.reduce((n, a) => n + a[131_071], 0) % 251;
    const expected = sum();
    native.doforkAll();
    const pid = native.fork([], 0);
    if (pid === 0) native.exit(sum());
    const [path, calls] = native.doforkLast();
    expect(native.waitpid(pid, false)).toEqual([pid, expected, 0]);
    expect(path).toBe(native.DOFORK.RANGED);
    expect(calls).toBe(2 * specialRuns() + 1);
  });
});

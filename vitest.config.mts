import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // fork() needs V8's --single-threaded; vitest's forks pool passes it on.
    pool: 'forks',
    execArgv: ['--single-threaded'],
    // One test file at a time unless COWFORK_TEST_WORKERS says otherwise. Two at a time on this 2-core
    // machine cut the Node 20 suite from 555 s to 383-486 s, but the extra load made a fork's census starve
    // a busy threadpool thread (CI run 30: a child hung on OpenSSL's lock, fixed since in native/waiters.c),
    // and CI must not turn red on load.
    maxWorkers: Number(process.env.COWFORK_TEST_WORKERS) || 1,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // The JSON report lets .ci/run print a plain "N passed, N failed" line.
    reporters: ['default', 'json'],
    outputFile: { json: 'test-results/vitest.json' },
  },
});

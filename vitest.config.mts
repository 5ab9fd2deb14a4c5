import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // fork() needs V8's --single-threaded; vitest's forks pool passes it on.
    pool: 'forks',
    execArgv: ['--single-threaded'],
    // Two test files at a time, even on 2 cores (vitest's default there is 1): most tests wait on children,
    // servers and timeouts, and one file at a time left about half the CPU idle. COWFORK_TEST_WORKERS=1
    // runs them one at a time.
    maxWorkers: Number(process.env.COWFORK_TEST_WORKERS) || 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // The JSON report lets .ci/run print a plain "N passed, N failed" line.
    reporters: ['default', 'json'],
    outputFile: { json: 'test-results/vitest.json' },
  },
});

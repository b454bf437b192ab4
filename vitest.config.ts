import { defineConfig } from 'vitest/config';

// Test files run one after another: each GPU test file owns a Dawn device, and lavapipe already
// spreads every dispatch over all cores, so running files in parallel only makes them fight.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'src/**/*.test.ts'],
    fileParallelism: false,
    pool: 'forks',
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});

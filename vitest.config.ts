/// <reference types="@vitest/browser/providers/playwright" />
import { defineConfig } from 'vitest/config';
import { CHROMIUM_WEBGPU_ARGS, findChromium, NO_CHROMIUM } from './test/browser/chromium.js';

// Test files run one after another: each GPU test file owns a device, and lavapipe already spreads every dispatch
// over all cores, so running files in parallel only makes them fight.
const shared = { fileParallelism: false, testTimeout: 120_000, hookTimeout: 120_000 };

/**
 * What runs in headless Chromium's WebGPU (SwiftShader here): every op test (parity with PyTorch, gradient checks,
 * binding-limit slicing), the composite parity test, and the browser-only tests. New op tests under src/kernels are
 * picked up by the glob.
 */
/**
 * Left out of the Node suite's SwiftShader run (they run on lavapipe in the main run): the multi-device tests. With
 * VK_ICD_FILENAMES naming only SwiftShader, the two-adapter test finds no lavapipe ("no suitable backends found"), and
 * the device-loss and two-device CLI tests failed on SwiftShader in CI on 2026-12-02 (not yet understood).
 */
const SWIFTSHADER_GAPS = ['test/train/data-parallel.test.ts', 'test/train/data-parallel-adapters.test.ts', 'test/cli/finetune-devices.test.ts'];

export const BROWSER_TESTS = ['src/kernels/**/*.test.ts', 'src/runtime/**/*.test.ts', 'test/runtime/profiling.test.ts', 'test/autograd/composite.test.ts', 'test/browser/**/*.browser.test.ts'];

const chromium = findChromium();
if (!chromium) {
  // In CI (CI=true, which .ci/run sets) the browser project is required: fail rather than run without it.
  if (process.env.CI === 'true' || process.env.CI === '1') throw new Error(`CI=${process.env.CI}: the browser tests cannot run: ${NO_CHROMIUM}`);
  console.warn(`\n*** browser tests SKIPPED: ${NO_CHROMIUM}\n`);
}

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          ...shared,
          name: 'node',
          include: ['test/**/*.test.ts', 'src/**/*.test.ts'],
          // HOTDOG_SKIP_PAGE_TESTS=1 (the SwiftShader run of scripts/test-swiftshader.sh) leaves out the page tests and
          // the package test (npm pack + install + the examples: it tests the packaging, which the first run covered).
          exclude: ['test/browser/**/*.browser.test.ts', ...(process.env.HOTDOG_SKIP_PAGE_TESTS === '1' ? ['test/e2e/**', 'test/package/package.test.ts', ...SWIFTSHADER_GAPS] : [])],
          pool: 'forks',
        },
      },
      ...(chromium
        ? [
            {
              test: {
                ...shared,
                name: 'browser',
                include: BROWSER_TESTS,
                browser: {
                  enabled: true,
                  provider: 'playwright',
                  headless: true,
                  screenshotFailures: false,
                  instances: [{ browser: 'chromium' as const, launch: { executablePath: chromium, args: CHROMIUM_WEBGPU_ARGS } }],
                },
              },
            },
          ]
        : []),
    ],
  },
});

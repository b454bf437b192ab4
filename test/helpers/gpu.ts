// One runtime per test file (each vitest file runs in its own process or page), destroyed after the file's tests.
// The device comes from acquireGpu(): Dawn under Node, navigator.gpu in the browser project.
import { afterAll } from 'vitest';
import { createRuntime } from '../../src/kernels/engine.js';
import type { Runtime } from '../../src/kernels/runtime.js';
import type { FeatureLevel } from '../../src/kernels/device.js';

let rt: Promise<Runtime> | null = null;

const env = (): Record<string, string | undefined> | undefined =>
  (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env;

/**
 * HOTDOG_TEST_FEATURE_LEVEL=compatibility runs a Node suite on a compatibility-mode device; HOTDOG_TEST_LIMITS=defaults
 * on a device with the default limits instead of the adapter's.
 */
function featureLevel(): FeatureLevel | undefined {
  const level = env()?.HOTDOG_TEST_FEATURE_LEVEL;
  if (level === undefined || level === '') return undefined;
  if (level !== 'core' && level !== 'compatibility') throw new Error(`HOTDOG_TEST_FEATURE_LEVEL: '${level}' is neither core nor compatibility`);
  return level;
}

export function testRuntime(): Promise<Runtime> {
  if (!rt) {
    rt = createRuntime({ featureLevel: featureLevel(), limits: env()?.HOTDOG_TEST_LIMITS === 'defaults' ? 'defaults' : 'adapter' });
    afterAll(async () => {
      if (rt) (await rt).destroy();
      rt = null;
    });
  }
  return rt;
}

// One runtime per test file (each vitest file runs in its own process or page), destroyed after the file's tests.
// The device comes from acquireGpu(): Dawn under Node, navigator.gpu in the browser project.
import { afterAll } from 'vitest';
import { createRuntime } from '../../src/kernels/engine.js';
import type { Runtime } from '../../src/kernels/runtime.js';
import type { FeatureLevel } from '../../src/kernels/device.js';

let rt: Promise<Runtime> | null = null;

/** HOTDOG_TEST_FEATURE_LEVEL=compatibility runs a Node suite on a compatibility-mode device. */
function featureLevel(): FeatureLevel | undefined {
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env;
  const level = env?.HOTDOG_TEST_FEATURE_LEVEL;
  if (level === undefined || level === '') return undefined;
  if (level !== 'core' && level !== 'compatibility') throw new Error(`HOTDOG_TEST_FEATURE_LEVEL: '${level}' is neither core nor compatibility`);
  return level;
}

export function testRuntime(): Promise<Runtime> {
  if (!rt) {
    rt = createRuntime({ featureLevel: featureLevel() });
    afterAll(async () => {
      if (rt) (await rt).destroy();
      rt = null;
    });
  }
  return rt;
}

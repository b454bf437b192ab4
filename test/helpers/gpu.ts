// One runtime per test file (each vitest file runs in its own process or page), destroyed after the file's tests.
// The device comes from acquireGpu(): navigator.gpu in the browser project, Dawn (src/node) under Node.
import { afterAll } from 'vitest';
import { createRuntime } from '../../src/runtime/engine.js';
import type { RuntimeOptions } from '../../src/runtime/runtime.js';
import type { DeviceOptions } from '../../src/runtime/device.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import type { FeatureLevel } from '../../src/runtime/device.js';

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

/** Where Node's runtime comes from: a variable, so that the browser project's bundler leaves src/node out. */
const NODE_ENGINE = '../../src/node/engine-node.js';

async function newRuntime(options: DeviceOptions & RuntimeOptions): Promise<Runtime> {
  if ((globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu) return createRuntime(options);
  const node = (await import(/* @vite-ignore */ NODE_ENGINE)) as typeof import('../../src/node/engine-node.js');
  return node.createNodeRuntime(options);
}

export function testRuntime(): Promise<Runtime> {
  if (!rt) {
    rt = newRuntime({ featureLevel: featureLevel(), limits: env()?.HOTDOG_TEST_LIMITS === 'defaults' ? 'defaults' : 'adapter' });
    afterAll(async () => {
      if (rt) (await rt).destroy();
      rt = null;
    });
  }
  return rt;
}

/**
 * A second runtime with its own options (e.g. `{ kernels: 'gpu' }`), in the browser project too; the caller destroys
 * it (`rt.destroy()`).
 */
export function extraRuntime(options: DeviceOptions & RuntimeOptions): Promise<Runtime> {
  return newRuntime(options);
}

/**
 * SwiftShader (the browser project's adapter here, and npm run test:swiftshader): its compiler takes minutes over the
 * larger tiled GEMM kernels, so tests run only the smallest tile there and report the others as skipped.
 */
export function isSwiftShader(rt: Runtime): boolean {
  const i = rt.deviceCtx.adapterInfo;
  return /swiftshader/i.test(`${i.vendor} ${i.architecture} ${i.device} ${i.description}`);
}

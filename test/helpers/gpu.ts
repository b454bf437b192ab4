// One runtime per test file (each vitest file runs in its own process), destroyed after the file's tests.
import { afterAll } from 'vitest';
import { createNodeRuntime, destroyNodeRuntime } from '../../src/node/engine-node.js';
import type { Runtime } from '../../src/kernels/runtime.js';

let rt: Promise<Runtime> | null = null;

export function testRuntime(): Promise<Runtime> {
  if (!rt) {
    rt = createNodeRuntime();
    afterAll(async () => {
      if (rt) destroyNodeRuntime(await rt);
      rt = null;
    });
  }
  return rt;
}

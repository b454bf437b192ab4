// Runs in headless Chromium (the browser project): the page's WebGPU adapter, found through the same acquireGpu()
// as under Node, and a kernel round trip on it.
import { expect, it } from 'vitest';
import { describeAdapter } from '../../src/runtime/device.js';
import { Tensor } from '../../src/runtime/tensor.js';
import { sumAll } from '../../src/kernels/reduce/sum.js';
import { testRuntime } from '../helpers/gpu.js';

it('acquires the page\'s adapter through navigator.gpu and runs a kernel', async () => {
  expect(typeof navigator.gpu).toBe('object');
  const rt = await testRuntime();
  const ctx = rt.ctx;
  console.log(
    `browser adapter: ${describeAdapter(ctx)}; maxStorageBufferBindingSize ${ctx.limits.maxStorageBufferBindingSize}, ` +
      `maxStorageBuffersPerShaderStage ${ctx.limits.maxStorageBuffersPerShaderStage}, ` +
      `maxComputeInvocationsPerWorkgroup ${ctx.limits.maxComputeInvocationsPerWorkgroup}, features ${[...ctx.features].join(',')}`,
  );
  const x = Tensor.fromArray(rt, Float32Array.from({ length: 1000 }, (_, i) => i));
  const s = sumAll(x);
  expect((await s.read())[0]).toBe(499500);
  x.release();
  s.release();
});

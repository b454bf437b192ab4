import { describe, expect, it } from 'vitest';
import { Tensor } from '../../src/runtime/tensor.js';
import type { KernelDef } from '../../src/runtime/kernel.js';
import { acquireGpu, describeAdapter } from '../../src/runtime/device.js';
import { withBindingLimit } from '../helpers/binding-limit.js';
import { testRuntime } from '../helpers/gpu.js';

// y = a * x + y over n elements, with params passed by name through the reflected uniform layout.
const saxpy: KernelDef = {
  name: 'saxpyTest',
  wgsl: /* wgsl */ `
struct Params { a: f32, n: u32, offset: i32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x;
  if (i < params.n) { y[i] = params.a * x[i] + y[i] + f32(params.offset); }
}`,
};

function random(n: number, seed = 1): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return s / 2 ** 31 - 0.5;
  });
}

describe('runtime', () => {
  it('reports the adapter and the raised limits', async () => {
    const rt = await testRuntime();
    console.log(`adapter: ${describeAdapter(rt.ctx)}; maxStorageBufferBindingSize ${rt.ctx.limits.maxStorageBufferBindingSize}, ` +
      `maxBufferSize ${rt.ctx.limits.maxBufferSize}, maxComputeWorkgroupStorageSize ${rt.ctx.limits.maxComputeWorkgroupStorageSize}, ` +
      `maxStorageBuffersPerShaderStage ${rt.ctx.limits.maxStorageBuffersPerShaderStage}, features ${[...rt.ctx.features].join(',')}`);
    // The spec defaults are 8 storage buffers and 16 KiB of workgroup storage; every adapter we target offers more.
    expect(rt.ctx.limits.maxStorageBuffersPerShaderStage).toBeGreaterThanOrEqual(8);
    expect(rt.ctx.limits.maxComputeWorkgroupStorageSize).toBeGreaterThanOrEqual(16384);
  });

  it.each([0, 1, 3, 5, 255, 1023, 65537, 1_000_003])('round-trips %i floats', async (n) => {
    const rt = await testRuntime();
    const data = random(n, n + 1);
    const t = Tensor.fromArray(rt, data);
    expect(t.shape).toEqual([n]);
    const back = await t.read();
    expect(back).toEqual(data);
    t.release();
  });

  it('round-trips i32 and u32 and fills on the GPU', async () => {
    const rt = await testRuntime();
    const labels = Int32Array.from([0, 1, -7, 2 ** 31 - 1, -(2 ** 31)]);
    const t = Tensor.fromArray(rt, labels);
    expect(t.dtype).toBe('i32');
    expect(await t.read()).toEqual(labels);
    t.fill(-3);
    expect(Array.from(await t.read())).toEqual([-3, -3, -3, -3, -3]);
    const u = Tensor.zeros(rt, [7], 'u32');
    expect(Array.from(await u.read())).toEqual([0, 0, 0, 0, 0, 0, 0]);
    const f = Tensor.full(rt, [3, 5], 2.5);
    expect(Array.from(await f.read())).toEqual(new Array(15).fill(2.5));
    const z = Tensor.zeros(rt, [0]);
    expect((await z.read()).length).toBe(0);
    for (const x of [t, u, f, z]) x.release();
  });

  it('runs a kernel with params packed from the reflected layout', async () => {
    const rt = await testRuntime();
    const n = 1000;
    const xs = random(n, 3);
    const ys = random(n, 4);
    const x = Tensor.fromArray(rt, xs);
    const y = Tensor.fromArray(rt, ys);
    rt.dispatch(saxpy, Math.ceil(n / 64), { x, y }, { a: 1.5, n, offset: -2 });
    const got = await y.read();
    for (let i = 0; i < n; i++) expect(got[i]).toBeCloseTo(Math.fround(1.5 * xs[i]! + ys[i]! - 2), 5);
    x.release();
    y.release();
  });

  it('rejects wrong bindings and params by name', async () => {
    const rt = await testRuntime();
    const x = Tensor.zeros(rt, [4]);
    const y = Tensor.zeros(rt, [4]);
    expect(() => rt.dispatch(saxpy, 1, { x }, { a: 1, n: 4, offset: 0 })).toThrow(/saxpyTest: binding "y" was not given/);
    expect(() => rt.dispatch(saxpy, 1, { x, y, z: x }, { a: 1, n: 4, offset: 0 })).toThrow(/no binding "z"/);
    expect(() => rt.dispatch(saxpy, 1, { x, y }, { a: 1, n: 4 })).toThrow(/param "offset" was not given/);
    expect(() => rt.dispatch(saxpy, 1, { x, y }, { a: 1, n: 4, offset: 0, b: 2 })).toThrow(/unknown param "b"/);
    expect(() => rt.dispatch(saxpy, 1, { x, y }, { a: 1, n: 4.5, offset: 0 })).toThrow(/"n" is u32/);
    // A buffer written by one binding may not be bound again in the same dispatch.
    expect(() => rt.dispatch(saxpy, 1, { x, y: x }, { a: 1, n: 4, offset: 0 })).toThrow(/saxpyTest: "x" and "y" are the same buffer/);
    await rt.sync();
    x.release();
    y.release();
  });

  it('reports a WGSL compile error naming the kernel and the compiler message', async () => {
    const rt = await testRuntime();
    const broken: KernelDef = {
      name: 'brokenKernel',
      wgsl: `@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(1) fn main() { out[0] = undefinedThing; }`,
    };
    await expect(rt.compile(broken)).rejects.toThrow(/kernel brokenKernel failed to compile:[\s\S]*undefinedThing/);
    // The runtime stays usable afterwards.
    const t = Tensor.fromArray(rt, [1, 2, 3]);
    expect(Array.from(await t.read())).toEqual([1, 2, 3]);
    t.release();
  });

  it('a repeated step allocates no new buffer after the first', async () => {
    const rt = await testRuntime();
    const step = async (): Promise<number> => {
      const x = Tensor.fromArray(rt, random(5000, 9));
      const y = Tensor.zeros(rt, [5000]);
      const tmp = Tensor.empty(rt, [123, 7]);
      tmp.fill(1);
      rt.dispatch(saxpy, Math.ceil(5000 / 64), { x, y }, { a: 2, n: 5000, offset: 0 });
      const v = (await y.read())[10]!;
      x.release();
      y.release();
      tmp.release();
      return v;
    };
    await step();
    const before = rt.pool.stats();
    for (let i = 0; i < 5; i++) await step();
    const after = rt.pool.stats();
    expect(after.allocations).toBe(before.allocations);
    expect(after.liveBuffers).toBe(before.liveBuffers);
    expect(after.bytesInUse).toBe(before.bytesInUse);
  });

  it('views share storage and release once', async () => {
    const rt = await testRuntime();
    const live = rt.pool.stats().liveBuffers;
    const t = Tensor.fromArray(rt, [1, 2, 3, 4, 5, 6], [2, 3]);
    const v = t.view([3, -1]);
    expect(v.shape).toEqual([3, 2]);
    t.release();
    expect(rt.pool.stats().liveBuffers).toBe(live + 1);
    expect(Array.from(await v.read())).toEqual([1, 2, 3, 4, 5, 6]);
    v.release();
    expect(rt.pool.stats().liveBuffers).toBe(live);
    expect(() => t.buffer).toThrow(/was released/);
    expect(() => t.view([7])).toThrow(/released/);
  });
});

describe('tensors over the binding limit', () => {
  it('fill splits into bindable slices', async () => {
    const rt = await testRuntime();
    await withBindingLimit(rt, 4096, async () => {
      const t = Tensor.full(rt, [3, 1001], 1.25);
      const got = await t.read();
      expect(got.every((v) => v === 1.25)).toBe(true);
      t.release();
    });
  });
});

describe('errors', () => {
  it('a GPU validation error surfaces at the next wait, naming the kernels of the batch', async () => {
    const rt = await testRuntime();
    const x = Tensor.zeros(rt, [4]);
    const y = Tensor.zeros(rt, [4]);
    const max = rt.ctx.limits.maxComputeWorkgroupsPerDimension;
    rt.dispatch(saxpy, max + 1, { x, y }, { a: 1, n: 4, offset: 0 });
    await expect(rt.sync()).rejects.toThrow(/GPU error \(kernels in this batch: saxpyTest\)/);
    x.release();
    y.release();
    // The failed batch was dropped whole (its clears too); later batches run normally.
    const x2 = Tensor.zeros(rt, [4]);
    const y2 = Tensor.zeros(rt, [4]);
    rt.dispatch(saxpy, 1, { x: x2, y: y2 }, { a: 1, n: 4, offset: 1 });
    expect(Array.from(await y2.read())).toEqual([1, 1, 1, 1]);
    x2.release();
    y2.release();
  });

  it('no adapter: the error says what to install', async () => {
    const noAdapter = { requestAdapter: async () => null } as unknown as GPU;
    await expect(acquireGpu({ gpu: noAdapter })).rejects.toThrow(/No WebGPU adapter was found[\s\S]*mesa-vulkan-drivers libvulkan1/);
    await expect(acquireGpu({ gpu: null })).rejects.toThrow(/WebGPU is not available/);
  });
});

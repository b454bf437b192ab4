// GPU acquisition: the compatibility-mode fallback, what the context tells kernels, and the runtime's refusal (by
// kernel name) of kernels a device's limits or features cannot run.
import { afterAll, describe, expect, it } from 'vitest';
import { acquireGpu, describeAdapter, type GpuContext } from '../../src/runtime/device.js';
import type { KernelDef } from '../../src/runtime/kernel.js';
import { reflectKernel } from '../../src/runtime/kernel.js';
import { checkFitsDevice, Runtime } from '../../src/runtime/runtime.js';
import { matmul } from '../../src/kernels/matmul/matmul.js';
import { Tensor } from '../../src/runtime/tensor.js';
import { nodeGpu } from '../../src/node/webgpu-node.js';
import { acquireNodeGpu } from '../../src/node/engine-node.js';
import { matmulRef } from '../../src/kernels/matmul/matmul.reference.js';
import { maxRelError, randn } from '../helpers/gradcheck.js';
import { resnet18 } from '../../src/nn/resnet.js';
import { SGD } from '../../src/nn/sgd.js';
import { crossEntropy } from '../../src/autograd/functions.js';
import { backward } from '../../src/autograd/tape.js';
import { textureGemmSupported } from '../../src/kernels/matmul/texture-gemm.js';
import { im2colApplies } from '../../src/kernels/conv2d/im2col.js';
import { winogradApplies } from '../../src/kernels/conv2d/winograd.js';
import { conv2dGeometry } from '../../src/kernels/conv2d/conv2d.js';

const contexts: GpuContext[] = [];
afterAll(() => {
  for (const c of contexts) c.dispose();
});

async function context(options: Parameters<typeof acquireGpu>[0]): Promise<GpuContext> {
  const ctx = options?.gpu ? await acquireGpu(options) : await acquireNodeGpu(options);
  contexts.push(ctx);
  return ctx;
}

/**
 * The CPU drivers this project runs on, and the fixed subgroup size each reports: the texture GEMM (and with it
 * Winograd and im2col) needs 4 or 8, so a driver update that stopped reporting it would turn those paths, and their
 * tests, off without a failure anywhere else.
 */
const KNOWN_DRIVERS: { name: string; matches: (description: string) => boolean; subgroupSize: number }[] = [
  // One subgroup is one vector of f32: 8 lanes at llvmpipe's default 256 bits (LP_NATIVE_VECTOR_WIDTH=512 makes
  // it 16, a setting the user chose, which the texture paths do not cover).
  { name: 'lavapipe (llvmpipe, 256-bit vectors)', matches: (d) => /llvmpipe/.test(d) && (/(\d+).bits/.exec(d)?.[1] ?? '256') === '256', subgroupSize: 8 },
  { name: 'SwiftShader', matches: (d) => /swiftshader/.test(d), subgroupSize: 4 },
];
const adapterDescription = (info: GPUAdapterInfo): string => `${info.vendor} ${info.architecture} ${info.device} ${info.description}`.toLowerCase();
/** This machine's default adapter, as Dawn reports it (asked directly, not through acquireGpu). */
const rawAdapter = (await (await nodeGpu()).requestAdapter({ powerPreference: 'high-performance' }))!;
const knownDriver = KNOWN_DRIVERS.find((d) => d.matches(adapterDescription(rawAdapter.info)));

describe('acquireGpu', () => {
  it("opens a core device by default with the adapter's own subgroup sizes, features and limits", async () => {
    const ctx = await context({});
    console.log(`default: ${describeAdapter(ctx)}`);
    expect(ctx.featureLevel).toBe('core');
    // What the context says, against what Dawn's adapter offers (asked for separately above): every wanted feature
    // the adapter has is on the device, and the limits are the adapter's, not the spec's defaults.
    const raw = rawAdapter.info as GPUAdapterInfo & { subgroupMinSize?: number; subgroupMaxSize?: number };
    expect(ctx.subgroups).toBe(rawAdapter.features.has('subgroups'));
    expect(ctx.shaderF16).toBe(rawAdapter.features.has('shader-f16'));
    expect(ctx.timestampQuery).toBe(rawAdapter.features.has('timestamp-query'));
    expect([ctx.subgroupMinSize, ctx.subgroupMaxSize]).toEqual([raw.subgroupMinSize ?? 0, raw.subgroupMaxSize ?? 0]);
    const fixed = ctx.subgroups && raw.subgroupMinSize === raw.subgroupMaxSize ? raw.subgroupMinSize : null;
    expect(ctx.subgroupSize).toBe(fixed);
    for (const limit of ['maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupStorageSize', 'maxComputeInvocationsPerWorkgroup'] as const) {
      expect(ctx.limits[limit], limit).toBe(rawAdapter.limits[limit]);
    }
    expect(ctx.isCpuDriver).toBe(/llvmpipe|lavapipe|swiftshader/.test(adapterDescription(rawAdapter.info)));
  });

  it.skipIf(!knownDriver)(`${knownDriver?.name ?? 'a known CPU driver'} reports the fixed subgroup size the texture GEMM, Winograd and im2col need`, async () => {
    const ctx = await context({});
    const rt = new Runtime(ctx);
    expect(rawAdapter.features.has('subgroups'), 'the adapter offers subgroups').toBe(true);
    expect(ctx.subgroupSize, describeAdapter(ctx)).toBe(knownDriver!.subgroupSize);
    expect(textureGemmSupported(rt)).toBe(true);
    expect(im2colApplies(rt)).toBe(true);
    expect(winogradApplies(rt, conv2dGeometry([2, 64, 56, 56], [64, 64, 3, 3], { stride: 1, padding: 1 }))).toBe(true);
  });

  it('falls back to a compatibility-mode adapter when no core adapter exists, and the engine runs on it', async () => {
    const real = await nodeGpu();
    // A WebGPU entry point like a browser that has only a compatibility-mode adapter (e.g. OpenGL ES through ANGLE).
    const compatOnly = {
      requestAdapter: async (o?: GPURequestAdapterOptions & { featureLevel?: string }) =>
        o?.featureLevel === 'compatibility' ? real.requestAdapter({ ...o, featureLevel: 'compatibility' } as GPURequestAdapterOptions) : null,
    } as unknown as GPU;
    await expect(acquireGpu({ gpu: compatOnly, featureLevel: 'core' })).rejects.toThrow(/No WebGPU adapter was found/);
    // Dawn's compatibility adapter here can also do core; 'compatibility' keeps the device in compatibility mode.
    const ctx = await acquireGpu({ gpu: compatOnly, featureLevel: 'compatibility' });
    const rt = new Runtime(ctx);
    try {
      expect(ctx.featureLevel).toBe('compatibility');
      expect(ctx.features.has('core-features-and-limits')).toBe(false);
      // The adapter's limits were requested, not compatibility mode's low defaults (128 invocations, 4 storage buffers).
      expect(ctx.limits.maxComputeInvocationsPerWorkgroup).toBeGreaterThanOrEqual(256);
      const a = randn(37 * 29, 1);
      const b = randn(29 * 41, 2);
      const y = matmul(Tensor.fromArray(rt, a, [37, 29]), Tensor.fromArray(rt, b, [29, 41]));
      const err = maxRelError(await y.read(), matmulRef(Float64Array.from(a), Float64Array.from(b), 37, 41, 29));
      expect(err).toBeLessThan(1e-5);
    } finally {
      rt.destroy();
    }
    const auto = await context({ gpu: compatOnly });
    expect(auto.featureLevel).toBe('core'); // auto takes core where the compatibility adapter offers it
  });
});

it('a ResNet-18 training step runs on a compatibility-mode device with only the default limits (the weakest device)', async () => {
  const rt = new Runtime(await acquireNodeGpu({ featureLevel: 'compatibility', limits: 'defaults' }));
  try {
    expect(rt.ctx.limits.maxComputeInvocationsPerWorkgroup).toBe(128);
    const model = resnet18(rt, { numClasses: 3 });
    const sgd = new SGD(model.parameters(), { lr: 0.01, momentum: 0.9, weightDecay: 1e-3 });
    const x = Tensor.fromArray(rt, randn(2 * 3 * 32 * 32, 3), [2, 3, 32, 32]);
    const y = Tensor.fromArray(rt, Int32Array.of(0, 2));
    const loss = crossEntropy(model.forward(x), y, 'sum');
    backward(loss);
    sgd.step();
    const value = (await loss.read())[0]!;
    expect(Number.isFinite(value)).toBe(true);
    await rt.sync();
  } finally {
    rt.destroy();
  }
});

describe('kernels a device cannot run are refused by name', () => {
  const wide: KernelDef = {
    name: 'wideTest',
    wgsl: /* wgsl */ `
override WG: u32 = 64;
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) g: vec3u) { y[g.x] = a[g.x] + b[g.x]; }`,
  };

  async function limited(limits: Partial<Record<keyof GPUSupportedLimits, number>>, features: string[] = []): Promise<GpuContext> {
    const ctx = await context({});
    return { ...ctx, featureLevel: 'compatibility', limits: { ...ctx.limits, ...limits } as GPUSupportedLimits, features: new Set(features) };
  }

  it('too many storage buffers', async () => {
    const ctx = await limited({ maxStorageBuffersPerShaderStage: 2 });
    expect(() => checkFitsDevice(wide, reflectKernel(wide), ctx)).toThrow(/kernel wideTest binds 3 storage buffers; this compatibility-mode device allows 2/);
  });

  it('a workgroup over the invocation limit, also when an override constant sets it', async () => {
    const ctx = await limited({ maxComputeInvocationsPerWorkgroup: 128, maxComputeWorkgroupSizeX: 128 });
    expect(() => checkFitsDevice(wide, reflectKernel(wide), ctx)).not.toThrow();
    const def = { ...wide, constants: { WG: 256 } };
    expect(() => checkFitsDevice(def, reflectKernel(def), ctx)).toThrow(/kernel wideTest has workgroups of 256x1x1; this compatibility-mode device allows 128 invocations/);
  });

  it('a WGSL extension the adapter lacks', async () => {
    const ctx = await limited({});
    const f16: KernelDef = { name: 'halfTest', wgsl: `enable f16;\n${wide.wgsl}` };
    expect(() => checkFitsDevice(f16, reflectKernel(f16), ctx)).toThrow(/kernel halfTest needs the shader-f16 feature/);
  });
});

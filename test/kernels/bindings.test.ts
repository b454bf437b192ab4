// Every kernel's declared bindings (reflected from its WGSL with wgsl_reflect) match what its host wrapper binds.
// The runtime refuses a dispatch whose bindings or params differ from the reflection; this test drives every op's
// forward and backward once, records each dispatch, and checks that (1) each recorded binding set equals the
// kernel's reflected storage bindings, all in group 0 with distinct binding numbers, (2) every params struct has
// only u32/i32/f32 members, (3) every kernel exported from a src/kernels/**/*.wgsl.ts module was exercised, and (4)
// every kernel variant the generators make for a ResNet-18 training step (each lowering, train and eval, both
// reductions of the loss, SGD with and without momentum) is among those exercised, so (1) and (2) covered it too.
// The texture lowerings' kernels are a separate test, skipped (visibly) where the adapter has no texture GEMM.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { expect, it } from 'vitest';
import { ResourceType, WgslReflect } from 'wgsl_reflect/wgsl_reflect.module.js';
import { accuracyCount } from '../../src/kernels/accuracy/accuracy.js';
import { adaptiveAvgPool2dBackward, adaptiveAvgPool2dForward } from '../../src/kernels/avg-pool/avg-pool.js';
import { batchNormBackward, batchNormEvalBackward, batchNormEvalForward, batchNormTrainForward } from '../../src/kernels/batch-norm/batch-norm.js';
import { conv2dBackwardBias, conv2dBackwardInput, conv2dBackwardWeight, conv2dForward } from '../../src/kernels/conv2d/conv2d.js';
import { crossEntropyBackward, crossEntropyBackwardMean, crossEntropyBackwardScaled, crossEntropyForward } from '../../src/kernels/cross-entropy/cross-entropy.js';
import { backward } from '../../src/autograd/tape.js';
import { crossEntropy } from '../../src/autograd/functions.js';
import { noGrad } from '../../src/autograd/grad-mode.js';
import { resnet18 } from '../../src/nn/resnet.js';
import { SGD } from '../../src/nn/sgd.js';
import { accumulate, add, broadcastScalar, reluBackward, reluForward, scaleByTensor } from '../../src/kernels/elementwise/elementwise.js';
import { reflectKernel, type KernelDef } from '../../src/runtime/kernel.js';
import { linearBackwardBias, linearBackwardInput, linearBackwardWeight, linearForward, matmul } from '../../src/kernels/matmul/matmul.js';
import { textureGemmSupported } from '../../src/kernels/matmul/texture-gemm.js';
import { maxPool2dBackward, maxPool2dForward } from '../../src/kernels/max-pool/max-pool.js';
import { sumAll } from '../../src/kernels/reduce/sum.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import { sgdUpdate } from '../../src/kernels/sgd/sgd.js';
import { Tensor } from '../../src/runtime/tensor.js';
import { randn } from '../helpers/gradcheck.js';
import { testRuntime } from '../helpers/gpu.js';

const KERNELS_DIR = fileURLToPath(new URL('../../src/kernels/', import.meta.url));
/** The runtime's own kernels (fill) live in src/runtime. */
const RUNTIME_DIR = fileURLToPath(new URL('../../src/runtime/', import.meta.url));

function wgslModules(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? wgslModules(join(dir, e.name)) : e.name.endsWith('.wgsl.ts') ? [join(dir, e.name)] : [],
  );
}

/** A kernel: a name and WGSL with a compute entry point (not a WGSL fragment such as a tiled GEMM's gather functions). */
function isKernelDef(v: unknown): v is KernelDef {
  return typeof v === 'object' && v !== null && typeof (v as KernelDef).name === 'string' && typeof (v as KernelDef).wgsl === 'string' && /@compute/.test((v as KernelDef).wgsl);
}

/** Runs every op's forward and backward once on small tensors (the texture lowerings: exerciseTextureLowerings). */
function exerciseEveryOp(rt: Runtime): Tensor[] {
  const keep: Tensor[] = [];
  const t = (shape: number[], seed: number): Tensor<'f32'> => {
    const x = Tensor.fromArray(rt, randn(shape.reduce((a, b) => a * b, 1), seed), shape);
    keep.push(x);
    return x;
  };
  const k = <T extends Tensor>(x: T): T => (keep.push(x), x);
  const x = t([2, 3, 9, 9], 1);
  // conv2d: padding (pad copy), both data-gradient methods, weight and bias gradients.
  const w = t([4, 3, 3, 3], 2);
  const b = t([4], 3);
  const y = k(conv2dForward(x, w, b, { stride: 2, padding: 1 }));
  const gy = t([...y.shape], 4);
  k(conv2dBackwardInput(gy, w, x.shape, { stride: 2, padding: 1 }, undefined, 'implicit'));
  k(conv2dBackwardInput(gy, w, x.shape, { stride: 2, padding: 1 }, undefined, 'col2im'));
  k(conv2dBackwardWeight(gy, x, w.shape, { stride: 2, padding: 1 }));
  k(conv2dBackwardBias(gy));
  // linear / matmul with transposed operands.
  const a = t([5, 7], 5);
  const lw = t([3, 7], 6);
  const lb = t([3], 7);
  const ly = k(linearForward(a, lw, lb));
  k(linearBackwardInput(ly, lw));
  k(linearBackwardWeight(ly, a));
  k(linearBackwardBias(ly));
  k(matmul(a, t([7, 6], 8)));
  k(matmul(t([7, 5], 9), t([6, 7], 10), { transA: true, transB: true }));
  // Shapes as a ResNet's layers have them: more than 32 output columns (two column groups an invocation) and
  // reductions in whole vec4s (the last test found these variants missing here).
  const xw = t([2, 8, 6, 6], 23);
  const ww = t([40, 8, 3, 3], 24);
  const yw = k(conv2dForward(xw, ww, null, { padding: 1 }, undefined, 'implicit'));
  k(conv2dBackwardWeight(t([...yw.shape], 25), xw, ww.shape, { padding: 1 }, undefined, 'implicit'));
  k(conv2dBackwardInput(t([2, 4, 15, 15], 26), t([4, 3, 3, 3], 27), [2, 3, 15, 15], { padding: 1 }, undefined, 'col2im'));
  // The GPU lowerings on the tiled GEMM (forced: they run on any adapter): implicitTiled with a bias, im2colTiled,
  // and Winograd F(4,3), F(2,3) with buffer transforms.
  k(conv2dForward(x, w, b, { stride: 2, padding: 1 }, undefined, 'implicitTiled'));
  for (const l of ['implicitTiled', 'im2colTiled'] as const) {
    k(conv2dForward(x, w, null, { stride: 2, padding: 1 }, undefined, l));
    k(conv2dBackwardInput(gy, w, x.shape, { stride: 2, padding: 1 }, undefined, l));
    k(conv2dBackwardWeight(gy, x, w.shape, { stride: 2, padding: 1 }, undefined, l));
  }
  const gyw = t([...yw.shape], 34);
  for (const l of ['winograd4Tiled', 'winograd2Tiled'] as const) {
    k(conv2dForward(xw, ww, null, { padding: 1 }, undefined, l));
    k(conv2dBackwardInput(gyw, ww, xw.shape, { padding: 1 }, undefined, l));
    k(conv2dBackwardWeight(gyw, xw, ww.shape, { padding: 1 }, undefined, l));
  }
  k(matmul(a, t([7, 40], 28)));
  k(linearForward(t([5, 8], 29), t([3, 8], 30), t([3], 31)));
  k(linearBackwardWeight(t([2, 2], 32), t([2, 64], 33))); // a 2-way head's weight gradient at batch 2
  // batch norm, train and eval, forward and backward.
  const gamma = t([3], 11);
  const beta = t([3], 12);
  const mean = k(Tensor.zeros(rt, [3]));
  const variance = k(Tensor.full(rt, [3], 1));
  const bn = batchNormTrainForward(x, gamma, beta, mean, variance, { momentum: 0.1, eps: 1e-5 });
  keep.push(bn.y, bn.saveMean, bn.saveInvStd);
  const g = batchNormBackward(bn.y, x, gamma, bn.saveMean, bn.saveInvStd, { input: true, weight: true, bias: true });
  const ye = k(batchNormEvalForward(x, gamma, beta, mean, variance, 1e-5));
  const ge = batchNormEvalBackward(ye, x, gamma, mean, variance, 1e-5, { input: true, weight: true, bias: true });
  for (const r of [g, ge]) for (const v of [r.gx, r.gweight, r.gbias]) if (v) keep.push(v);
  // batch norm with its fused epilogues (relu, residual add), scalar (9x9 planes) and vec4 (4x4) loads.
  const all = { input: true, weight: true, bias: true };
  for (const xs of [x, t([2, 3, 4, 4], 16)]) {
    const r = t([...xs.shape], 17);
    const f0 = batchNormTrainForward(xs, gamma, beta, mean, variance, { momentum: 0.1, eps: 1e-5 });
    keep.push(f0.y, f0.saveMean, f0.saveInvStd);
    const g0 = batchNormBackward(r, xs, gamma, f0.saveMean, f0.saveInvStd, all);
    for (const v of [g0.gx, g0.gweight, g0.gbias]) if (v) keep.push(v);
    const f1 = batchNormTrainForward(xs, gamma, beta, mean, variance, { relu: true });
    const f2 = batchNormTrainForward(xs, gamma, beta, mean, variance, { relu: true, residual: r });
    const f3 = batchNormTrainForward(xs, gamma, beta, mean, variance, { residual: r });
    keep.push(...[f1, f2, f3].flatMap((f) => [f.y, f.saveMean, f.saveInvStd]));
    k(batchNormEvalForward(xs, gamma, beta, mean, variance, 1e-5, { relu: true }));
    const e2 = k(batchNormEvalForward(xs, gamma, beta, mean, variance, 1e-5, { relu: true, residual: r }));
    const grads = [
      batchNormBackward(r, xs, gamma, f1.saveMean, f1.saveInvStd, all, { relu: { bias: beta } }),
      batchNormBackward(r, xs, gamma, f2.saveMean, f2.saveInvStd, { ...all, residual: true }, { relu: { output: f2.y } }),
      batchNormBackward(r, xs, gamma, f2.saveMean, f2.saveInvStd, { ...all, residual: false }, { relu: { output: f2.y } }),
      batchNormBackward(r, xs, gamma, f3.saveMean, f3.saveInvStd, { ...all, residual: true }),
      batchNormEvalBackward(r, xs, gamma, mean, variance, 1e-5, all, { relu: { bias: beta } }),
      batchNormEvalBackward(r, xs, gamma, mean, variance, 1e-5, { input: true, weight: false, bias: false }, { relu: { bias: beta } }),
      batchNormEvalBackward(r, xs, gamma, mean, variance, 1e-5, { input: true, weight: false, bias: false }, { relu: { output: e2 } }),
      batchNormEvalBackward(r, xs, gamma, mean, variance, 1e-5, { ...all, residual: true }, { relu: { output: e2 } }),
    ];
    for (const gr of grads) for (const v of [gr.gx, gr.gweight, gr.gbias, gr.gresidual]) if (v) keep.push(v);
  }
  // pooling.
  const mp = maxPool2dForward(x, { kernel: 3, stride: 2, padding: 1 });
  keep.push(mp.y, mp.indices);
  k(maxPool2dBackward(mp.y, mp.indices, x.shape, { kernel: 3, stride: 2, padding: 1 }));
  // the tiled kernels with vec4 loads (8x8 planes), and the general ones (dilation 2).
  const x8 = t([2, 3, 8, 8], 20);
  for (const [input, opts] of [[x8, { kernel: 3, stride: 2, padding: 1 }], [x, { kernel: 3, stride: 2, padding: 1, dilation: 2 }]] as const) {
    const m = maxPool2dForward(input, opts);
    keep.push(m.y, m.indices);
    k(maxPool2dBackward(m.y, m.indices, input.shape, opts));
  }
  // the global average pool (scalar and vec4 stores in its backward) and a 2x2 one.
  for (const [input, out] of [[x, 1], [x8, 1], [x, 2]] as const) {
    const ap = k(adaptiveAvgPool2dForward(input, out));
    k(adaptiveAvgPool2dBackward(ap, input.shape));
  }
  // loss and accuracy.
  const logits = t([4, 5], 13);
  const labels = k(Tensor.fromArray(rt, Int32Array.from([0, 4, 2, 1])));
  const ce = crossEntropyForward(logits, labels);
  keep.push(ce.losses, ce.sum, ce.mean);
  k(crossEntropyBackward(logits, labels, ce.losses));
  k(crossEntropyBackwardScaled(logits, labels, ce.sum, 0.25));
  k(crossEntropyBackwardMean(logits, labels, ce.mean));
  k(accuracyCount(logits, labels));
  // elementwise, reductions, the optimizer, fill; the flat kernels with scalar (35, 21 elements) and vec4 (16) loads.
  for (const e of [a, t([4, 4], 18)]) {
    const r = k(reluForward(e));
    k(reluBackward(r, e));
    k(add(e, r));
    accumulate(r, e);
    k(scaleByTensor(e, ce.sum));
    k(broadcastScalar(ce.sum, [...e.shape]));
  }
  k(sumAll(a));
  for (const shape of [[3, 7], [4, 4]]) {
    const p = t(shape, 19);
    sgdUpdate(p, t(shape, 14), { lr: 0.1, weightDecay: 0, momentum: 0, dampening: 0, nesterov: false }, null, true);
    sgdUpdate(p, t(shape, 15), { lr: 0.1, weightDecay: 0.1, momentum: 0.9, dampening: 0, nesterov: true }, k(Tensor.zeros(rt, shape)), true);
  }
  k(Tensor.empty(rt, [10])).fill(3);
  return keep;
}

/** The texture lowerings (where the adapter runs the texture GEMM): im2col (any shape) and Winograd F(4,3), F(2,3). */
function exerciseTextureLowerings(rt: Runtime): Tensor[] {
  const keep: Tensor[] = [];
  const t = (shape: number[], seed: number): Tensor<'f32'> => {
    const x = Tensor.fromArray(rt, randn(shape.reduce((a, b) => a * b, 1), seed), shape);
    keep.push(x);
    return x;
  };
  const k = <T extends Tensor>(x: T): T => (keep.push(x), x);
  const x = t([2, 3, 9, 9], 1);
  const w = t([4, 3, 3, 3], 2);
  const gy = t([2, 4, 5, 5], 4);
  k(conv2dForward(x, w, null, { stride: 2, padding: 1 }, undefined, 'im2col'));
  k(conv2dBackwardInput(gy, w, x.shape, { stride: 2, padding: 1 }, undefined, 'im2col'));
  k(conv2dBackwardWeight(gy, x, w.shape, { stride: 2, padding: 1 }, undefined, 'im2col'));
  const xs = t([2, 8, 6, 6], 20);
  const ws = t([4, 8, 3, 3], 21);
  const gys = t([2, 4, 6, 6], 22);
  for (const m of ['winograd4', 'winograd2'] as const) {
    k(conv2dForward(xs, ws, null, { padding: 1 }, undefined, m));
    k(conv2dBackwardInput(gys, ws, xs.shape, { padding: 1 }, undefined, m));
    k(conv2dBackwardWeight(gys, xs, ws.shape, { padding: 1 }, undefined, m));
  }
  return keep;
}

type Seen = Map<string, { def: KernelDef; bound: Set<string>[] }>;

/** Every kernel `work` dispatches (keyed by its WGSL), with the names of the buffers each dispatch bound. */
async function recordDispatches(rt: Runtime, work: () => Tensor[] | Promise<Tensor[]>): Promise<Seen> {
  const seen: Seen = new Map();
  const dispatch = rt.dispatch.bind(rt);
  rt.dispatch = (def, workgroups, buffers, params) => {
    const entry = seen.get(def.wgsl) ?? { def, bound: [] };
    entry.bound.push(new Set(Object.keys(buffers)));
    seen.set(def.wgsl, entry);
    dispatch(def, workgroups, buffers, params);
  };
  let kept: Tensor[] = [];
  try {
    kept = await work();
    await rt.sync();
  } finally {
    rt.dispatch = dispatch;
    for (const t of kept) t.release();
  }
  return seen;
}

/** (1) and (2) for every recorded kernel. */
function expectBindingsMatchWgsl(seen: Seen): void {
  for (const { def, bound } of seen.values()) {
    const reflect = new WgslReflect(def.wgsl);
    const entry = reflect.entry.compute.find((f) => f.name === (def.entryPoint ?? 'main'))!;
    const bindings = entry.resources.map((v) => `${v.group}:${v.binding}`);
    expect(new Set(bindings).size, `${def.name}: duplicate binding numbers`).toBe(bindings.length);
    expect(entry.resources.every((v) => v.group === 0), `${def.name}: all bindings in group 0`).toBe(true);
    // Straight from wgsl_reflect, not through the runtime's reflectKernel, so this checks that path too.
    const bindable = [ResourceType.Storage, ResourceType.Texture, ResourceType.StorageTexture];
    const declared = new Set(entry.resources.filter((v) => bindable.includes(v.resourceType)).map((v) => v.name));
    expect([...declared].sort(), `${def.name}: runtime reflection`).toEqual(reflectKernel(def).buffers.map((x) => x.name).sort());
    for (const names of bound) expect([...names].sort(), def.name).toEqual([...declared].sort());
    const params = reflectKernel(def).params;
    if (params) for (const m of params.members.values()) expect(['u32', 'i32', 'f32']).toContain(m.type);
  }
}

/** The kernels exported as constants from the src/kernels/**\/*.wgsl.ts modules. */
async function exportedKernels(): Promise<KernelDef[]> {
  const exported: KernelDef[] = [];
  for (const file of [...wgslModules(KERNELS_DIR), ...wgslModules(RUNTIME_DIR)]) {
    const mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
    exported.push(...Object.values(mod).filter(isKernelDef));
  }
  return exported;
}

const isTextureKernel = (d: KernelDef): boolean => /texture_/.test(d.wgsl);
/** The runtime, known while tests are collected (for it.skipIf). */
const NO_TEXTURE = !textureGemmSupported(await testRuntime());

it('every kernel binds exactly what its WGSL declares, and every exported kernel is exercised', async () => {
  const rt = await testRuntime();
  const seen = await recordDispatches(rt, () => exerciseEveryOp(rt));
  expectBindingsMatchWgsl(seen);
  const exported = await exportedKernels();
  // Most kernels are factories now (variants per load width, epilogue...); the constants still left are checked here,
  // the factories' variants by the last test.
  expect(exported.length).toBeGreaterThan(10);
  const missed = exported.filter((d) => !isTextureKernel(d) && !seen.has(d.wgsl)).map((d) => d.name);
  expect(missed, 'kernels no op dispatched').toEqual([]);
  console.log(`${seen.size} distinct kernels dispatched (${exported.length} exported as constants, plus factory variants)`);
});

it.skipIf(NO_TEXTURE)('the texture lowerings (Winograd, im2col) bind exactly what their WGSL declares, and every exported texture kernel is exercised', async () => {
  const rt = await testRuntime();
  const seen = await recordDispatches(rt, () => exerciseTextureLowerings(rt));
  expectBindingsMatchWgsl(seen);
  const missed = (await exportedKernels()).filter((d) => isTextureKernel(d) && !seen.has(d.wgsl)).map((d) => d.name);
  expect(missed, 'texture kernels no op dispatched').toEqual([]);
});

it('every kernel variant a ResNet-18 training step generates is one the tests above dispatched', async () => {
  const rt = await testRuntime();
  const exercised = await recordDispatches(rt, () => [...exerciseEveryOp(rt), ...(textureGemmSupported(rt) ? exerciseTextureLowerings(rt) : [])]);
  // 56 px: planes of 28x28 down to 2x2, so both the vec4 and the scalar variants of the plane-wise kernels (7x7).
  const model = resnet18(rt, { numClasses: 2, seed: 3 });
  const x = Tensor.fromArray(rt, randn(2 * 3 * 56 * 56, 9), [2, 3, 56, 56]);
  const y = Tensor.fromArray(rt, Int32Array.from([0, 1]));
  // Each list of avoided lowerings makes the next one the default; on GPUs (and in the 'gpu' kernel mode) the
  // lowerings on the tiled GEMM likewise.
  const gpuLowerings = rt.ctx.isCpuDriver
    ? []
    : [['implicitTiled'], ['implicitTiled', 'implicit', 'col2im'], ['implicitTiled', 'implicit', 'col2im', 'winograd4Tiled']];
  const lowerings: string[][] = [
    [],
    ['winograd4'],
    ['winograd4', 'winograd2'],
    ...(textureGemmSupported(rt) ? [['winograd4', 'winograd2', 'implicit', 'col2im']] : []),
    ...gpuLowerings,
  ];
  const step = (momentum: number, reduction: 'sum' | 'mean'): Tensor[] => {
    const opt = new SGD(model.parameters(), { lr: 1e-3, weightDecay: 1e-3, momentum });
    opt.zeroGrad();
    const loss = crossEntropy(model.train().forward(x), y, reduction);
    backward(loss);
    opt.step();
    opt.release();
    return [loss];
  };
  const practice: Seen = new Map();
  try {
    for (const avoid of lowerings) {
      rt.tuner.avoid(avoid);
      const seen = await recordDispatches(rt, () => {
        const logits = noGrad(() => model.eval().forward(x));
        return [...step(0.9, 'sum'), ...step(0, 'mean'), logits, accuracyCount(logits, y)];
      });
      for (const [wgsl, e] of seen) practice.set(wgsl, e);
    }
  } finally {
    rt.tuner.avoid([]);
    for (const t of [x, y]) t.release();
    model.release();
  }
  // Every variant the step dispatched binds exactly what its WGSL declares. The tiled GPU GEMM's variants (GPUs and
  // the 'gpu' kernel mode) are generated per shape (tile, transposition, vec4 loads, gathered operand) from one
  // template, more than the small tensors above can reach: those are checked here, on the step's own dispatches;
  // every other kernel must also have been dispatched above.
  expectBindingsMatchWgsl(practice);
  const missed = [...practice.values()].filter((e) => !exercised.has(e.def.wgsl) && !e.def.name.startsWith('tiledGemm')).map((e) => e.def.name);
  const seenAbove = [...practice.values()].filter((e) => exercised.has(e.def.wgsl)).length;
  console.log(
    `a ResNet-18 step dispatches ${practice.size} distinct kernel variants; ${seenAbove} of them exercised above` +
      `${practice.size > seenAbove + missed.length ? `, ${practice.size - seenAbove - missed.length} tiled GEMM variants checked on the step's own dispatches` : ''}` +
      `${missed.length ? `; not: ${missed.join(', ')}` : ''}`,
  );
  expect(missed, 'variants a training step uses that the binding checks never saw').toEqual([]);
});

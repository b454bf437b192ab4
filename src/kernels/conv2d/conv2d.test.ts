import { describe, expect, it, vi } from 'vitest';
import { Tensor } from '../../runtime/tensor.js';
import type { Runtime } from '../../runtime/runtime.js';
import { withBindingLimit } from '../../../test/helpers/binding-limit.js';
import { expectFixtureOutputs, loadOpFixture, toTensor, type FixtureTensor, type LayerFixture } from '../../../test/helpers/fixtures.js';
import { testRuntime } from '../../../test/helpers/gpu.js';
import { dot, f64, maxRelError, numericGrad, randn } from '../../../test/helpers/gradcheck.js';
import {
  conv2dBackwardBias,
  conv2dBackwardInput,
  conv2dBackwardWeight,
  conv2dForward,
  conv2dGeometry,
  type Conv2dGeometry,
  type Conv2dOptions,
  type ConvLowering,
  type ConvTiling,
} from './conv2d.js';
import { conv2dBackwardRef, conv2dRef } from './conv2d.reference.js';
import { im2colApplies, samplesPerLayer } from './im2col.js';
import {
  TEXTURE_GEMM_REGISTER_GROUP_KEY,
  TEXTURE_GEMM_REGISTER_GROUP_ROWS,
  TEXTURE_GEMM_REGISTER_GROUPS,
  TEXTURE_GEMM_ROWS,
} from '../matmul/texture-gemm.js';
import { winogradApplies } from './winograd.js';

/** The runtime, known while tests are collected: lowerings this adapter cannot run are visible skips (it.skipIf). */
const collectRt = await testRuntime();

// Error metric throughout: maxRelError = max |gpu - ref| / max |ref| (test/helpers/gradcheck.ts).
// GPU (f32) vs float64 reference: sums of up to a few hundred products of N(0,1) values; 1e-5 is a wide margin.
const TOL = 1e-5;

interface Case {
  name: string;
  x: [number, number, number, number];
  w: [number, number, number, number];
  opts: Conv2dOptions;
  bias: boolean;
}

const cases: Case[] = [
  { name: '1x1x1x1, 1x1 kernel', x: [1, 1, 1, 1], w: [1, 1, 1, 1], opts: {}, bias: true },
  { name: '3x3 s1 p1, odd sizes', x: [2, 3, 7, 5], w: [5, 3, 3, 3], opts: { stride: 1, padding: 1 }, bias: true },
  { name: '3x3 s2 p1', x: [3, 5, 9, 11], w: [6, 5, 3, 3], opts: { stride: 2, padding: 1 }, bias: false },
  { name: '7x7 s2 p3 (conv1)', x: [2, 3, 15, 13], w: [8, 3, 7, 7], opts: { stride: 2, padding: 3 }, bias: false },
  { name: '1x1 s2 p0 (downsample)', x: [2, 8, 10, 9], w: [12, 8, 1, 1], opts: { stride: 2, padding: 0 }, bias: false },
  { name: '2x2 s3 p2 (taps skip rows)', x: [1, 4, 6, 7], w: [4, 4, 2, 2], opts: { stride: 3, padding: 2 }, bias: true },
  { name: '5x3 stride [1,2] padding [2,0]', x: [2, 2, 8, 9], w: [3, 2, 5, 3], opts: { stride: [1, 2], padding: [2, 0] }, bias: true },
  { name: '3x3 s1 p0, 33 channels out', x: [1, 7, 6, 6], w: [33, 7, 3, 3], opts: { stride: 1, padding: 0 }, bias: true },
];

interface Result {
  y: Float32Array;
  gx: Float32Array;
  gw: Float32Array;
  gb: Float32Array;
}

type DataGradMethod = ConvLowering | 'auto';
type Method = Exclude<DataGradMethod, 'col2im'>;

async function runAll(
  rt: Runtime,
  c: Case,
  xs: Float32Array,
  ws: Float32Array,
  bs: Float32Array | null,
  gys: Float32Array,
  tiling?: ConvTiling,
  method: DataGradMethod = 'auto',
  method2: Method = 'auto',
): Promise<Result> {
  const x = Tensor.fromArray(rt, xs, c.x);
  const w = Tensor.fromArray(rt, ws, c.w);
  const b = bs ? Tensor.fromArray(rt, bs, [c.w[0]]) : null;
  const g = conv2dGeometry(c.x, c.w, c.opts);
  const gy = Tensor.fromArray(rt, gys, [g.n, g.cout, g.oh, g.ow]);
  // method: the data gradient's lowering; method2: the forward pass's and the weight gradient's.
  const y = conv2dForward(x, w, b, c.opts, tiling, method2);
  const gx = conv2dBackwardInput(gy, w, c.x, c.opts, tiling, method);
  const gw = conv2dBackwardWeight(gy, x, c.w, c.opts, tiling, method2);
  const gb = conv2dBackwardBias(gy);
  const out = {
    y: (await y.read()) as Float32Array,
    gx: (await gx.read()) as Float32Array,
    gw: (await gw.read()) as Float32Array,
    gb: (await gb.read()) as Float32Array,
  };
  for (const t of [x, w, b, gy, y, gx, gw, gb]) t?.release();
  return out;
}

function data(c: Case, seed: number): { xs: Float32Array; ws: Float32Array; bs: Float32Array | null; gys: Float32Array } {
  const g = conv2dGeometry(c.x, c.w, c.opts);
  return {
    xs: randn(c.x.reduce((a, b) => a * b), seed),
    ws: randn(c.w.reduce((a, b) => a * b), seed + 1),
    bs: c.bias ? randn(c.w[0], seed + 2) : null,
    gys: randn(g.n * g.cout * g.oh * g.ow, seed + 3),
  };
}

describe('conv2d vs the float64 reference', () => {
  cases.forEach((c, idx) => {
    it(c.name, async () => {
      const rt = await testRuntime();
      const { xs, ws, bs, gys } = data(c, 100 * idx);
      const g = conv2dGeometry(c.x, c.w, c.opts);
      const got = await runAll(rt, c, xs, ws, bs, gys, undefined, 'implicit');
      const ref = conv2dBackwardRef(f64(xs), f64(ws), f64(gys), g);
      expect(maxRelError(got.y, conv2dRef(f64(xs), f64(ws), bs && f64(bs), g)), 'y').toBeLessThan(TOL);
      expect(maxRelError(got.gx, ref.gx), 'gx').toBeLessThan(TOL);
      expect(maxRelError(got.gw, ref.gw), 'gw').toBeLessThan(TOL);
      expect(maxRelError(got.gb, ref.gb), 'gb').toBeLessThan(TOL);
      // The data gradient's other method (GEMM + col2im, used for few input channels).
      const viaCols = await runAll(rt, c, xs, ws, bs, gys, undefined, 'col2im');
      expect(maxRelError(viaCols.gx, ref.gx), 'gx via col2im').toBeLessThan(TOL);
    });
  });

  // The GPU tile shapes (wide workgroups) run here too.
  const gpuTilings: ConvTiling[] = [
    { tm: 8, tnv: 1, wg: 32 },
    { tm: 4, tnv: 2, wg: 8 },
  ];
  for (const tiling of gpuTilings) {
    it(`tiling tm=${tiling.tm} tnv=${tiling.tnv} wg=${tiling.wg}`, async () => {
      const rt = await testRuntime();
      for (const c of [cases[2]!, cases[7]!]) {
        const { xs, ws, bs, gys } = data(c, 7);
        const g = conv2dGeometry(c.x, c.w, c.opts);
        const got = await runAll(rt, c, xs, ws, bs, gys, tiling, 'implicit');
        const ref = conv2dBackwardRef(f64(xs), f64(ws), f64(gys), g);
        expect(maxRelError(got.y, conv2dRef(f64(xs), f64(ws), bs && f64(bs), g))).toBeLessThan(TOL);
        expect(maxRelError(got.gx, ref.gx)).toBeLessThan(TOL);
        expect(maxRelError(got.gw, ref.gw)).toBeLessThan(TOL);
      }
    });
  }
});

describe('conv2d shape checks', () => {
  it('matches torch output sizes and rejects what torch rejects', () => {
    expect(conv2dGeometry([32, 3, 224, 224], [64, 3, 7, 7], { stride: 2, padding: 3 })).toMatchObject({ oh: 112, ow: 112 });
    expect(conv2dGeometry([1, 64, 56, 56], [128, 64, 1, 1], { stride: 2 })).toMatchObject({ oh: 28, ow: 28 });
    expect(conv2dGeometry([1, 1, 6, 7], [1, 1, 2, 2], { stride: 3, padding: 2 })).toMatchObject({ oh: 3, ow: 4 });
    expect(() => conv2dGeometry([1, 3, 8, 8], [4, 2, 3, 3])).toThrow(/3 channels but w expects 2/);
    expect(() => conv2dGeometry([1, 3, 2, 2], [4, 3, 3, 3])).toThrow(/does not fit/);
    expect(() => conv2dGeometry([1, 3, 8, 8], [4, 3, 3, 3], { stride: 0 })).toThrow(/invalid stride/);
    expect(() => conv2dGeometry([3, 8, 8], [4, 3, 3, 3])).toThrow(/must be \[N, C, H, W\]/);
  });
});

describe('conv2d gradient check (central differences of the float64 reference)', () => {
  // loss = sum(conv2d(x, w, b) * R): the GPU backward with gy = R vs numeric gradients, eps 1e-6 in float64.
  // The loss is linear in each input, so the numeric gradient is exact up to rounding; the GPU side is f32.
  // Bound: maxRelError < 1e-4.
  const tiny: Case[] = [
    { name: '3x3 s1 p1', x: [2, 2, 5, 4], w: [3, 2, 3, 3], opts: { stride: 1, padding: 1 }, bias: true },
    { name: '3x3 s2 p1', x: [1, 3, 5, 6], w: [2, 3, 3, 3], opts: { stride: 2, padding: 1 }, bias: true },
    { name: '7x7 s2 p3', x: [1, 2, 7, 6], w: [2, 2, 7, 7], opts: { stride: 2, padding: 3 }, bias: false },
    { name: '1x1 s2 p0', x: [2, 3, 5, 5], w: [4, 3, 1, 1], opts: { stride: 2, padding: 0 }, bias: true },
  ];
  for (const c of tiny) {
    it(c.name, async () => {
      const rt = await testRuntime();
      const { xs, ws, bs, gys } = data(c, 55);
      const g = conv2dGeometry(c.x, c.w, c.opts);
      const got = await runAll(rt, c, xs, ws, bs, gys);
      const inputs = [f64(xs), f64(ws), ...(bs ? [f64(bs)] : [])];
      const loss = (v: Float64Array[]): number => dot(conv2dRef(v[0]!, v[1]!, v[2] ?? null, g), gys);
      const errs = [maxRelError(got.gx, numericGrad(loss, inputs, 0)), maxRelError(got.gw, numericGrad(loss, inputs, 1))];
      if (bs) errs.push(maxRelError(got.gb, numericGrad(loss, inputs, 2)));
      console.log(`conv2d gradcheck ${c.name}: gx ${errs[0]!.toExponential(2)} gw ${errs[1]!.toExponential(2)}${bs ? ` gb ${errs[2]!.toExponential(2)}` : ''}`);
      for (const e of errs) expect(e).toBeLessThan(1e-4);
    });
  }
});

describe('conv2d data gradient: every lowering vs central differences of the float64 reference', () => {
  // Each lowering of conv2dBackwardInput: the `method` that forces it, a kernel that only it dispatches (so the test
  // knows which one ran) and, for lowerings limited to some geometries, which. A new lowering is one more line.
  interface Lowering {
    method: DataGradMethod;
    kernel: RegExp;
    applies?: (g: Conv2dGeometry, rt: Runtime) => boolean;
  }
  const lowerings: Lowering[] = [
    { method: 'implicit', kernel: /^conv2dGemm/ },
    { method: 'implicitTiled', kernel: /^tiledGemm\w*_convData$/ },
    // The register-tile GEMM (CPU drivers), or a tiled GPU GEMM variant (GPUs, and the 'gpu' kernel mode).
    { method: 'col2im', kernel: /^(gemm_tn|tiledGemm\w*_tn)/ },
    { method: 'winograd4', kernel: /^winogradInputTransform_F4x3$/, applies: (g, rt) => winogradApplies(rt, g) },
    { method: 'winograd2', kernel: /^winogradInputTransform_F2x3$/, applies: (g, rt) => winogradApplies(rt, g) },
    { method: 'im2col', kernel: /^stridedTexture$/, applies: (_g, rt) => im2colApplies(rt) },
  ];
  // The shapes of training's data gradients (every ResNet layer has Cin >= 16, conv1 has 3), small, with uneven
  // sizes, and the lowering that 'auto' picks for each.
  const shapes: (Case & { auto: DataGradMethod })[] = [
    { name: '3x3 s1 p1, Cin 16', x: [2, 16, 5, 6], w: [4, 16, 3, 3], opts: { stride: 1, padding: 1 }, bias: false, auto: 'winograd4' },
    { name: '3x3 s1 p1, Cin 16, uneven (partial Winograd tiles)', x: [2, 16, 7, 5], w: [8, 16, 3, 3], opts: { stride: 1, padding: 1 }, bias: false, auto: 'winograd4' },
    { name: '3x3 s1 p0, Cin 20, Cout 12', x: [1, 20, 9, 6], w: [12, 20, 3, 3], opts: { stride: 1, padding: 0 }, bias: false, auto: 'winograd4' },
    { name: '3x3 s1 p2, Cin 16', x: [1, 16, 5, 5], w: [4, 16, 3, 3], opts: { stride: 1, padding: 2 }, bias: false, auto: 'winograd4' },
    { name: '3x3 s2 p1, Cin 17, odd sizes', x: [1, 17, 7, 6], w: [5, 17, 3, 3], opts: { stride: 2, padding: 1 }, bias: false, auto: 'implicit' },
    { name: '1x1 s2 p0, Cin 16 (downsample)', x: [2, 16, 5, 7], w: [6, 16, 1, 1], opts: { stride: 2, padding: 0 }, bias: false, auto: 'implicit' },
    { name: '7x7 s2 p3, Cin 16', x: [1, 16, 9, 8], w: [3, 16, 7, 7], opts: { stride: 2, padding: 3 }, bias: false, auto: 'implicit' },
    { name: '5x3 stride [2,1] padding [2,1], Cin 20', x: [1, 20, 8, 5], w: [4, 20, 5, 3], opts: { stride: [2, 1], padding: [2, 1] }, bias: false, auto: 'implicit' },
    { name: '3x3 s1 p1, Cin 15', x: [1, 15, 6, 5], w: [4, 15, 3, 3], opts: { stride: 1, padding: 1 }, bias: false, auto: 'col2im' },
    { name: '7x7 s2 p3, Cin 3 (conv1)', x: [2, 3, 11, 10], w: [8, 3, 7, 7], opts: { stride: 2, padding: 3 }, bias: false, auto: 'col2im' },
  ];
  // loss = sum(conv2d(x, w) * R) is linear in x, so the central difference (eps 1e-6, float64) is exact up to
  // float64 rounding (about 1e-10 relative here); the GPU side is f32 sums of at most Cout*KH*KW = 196 products,
  // about 1e-7 relative. Bound: maxRelError < 1e-5, while one missing tap or phase is an error of order 1e-1.
  const BOUND = 1e-5;

  /** gx by one lowering, and the names of the kernels it dispatched. */
  async function dataGrad(rt: Runtime, c: Case, ws: Float32Array, gys: Float32Array, method: DataGradMethod) {
    const g = conv2dGeometry(c.x, c.w, c.opts);
    const w = Tensor.fromArray(rt, ws, c.w);
    const gy = Tensor.fromArray(rt, gys, [g.n, g.cout, g.oh, g.ow]);
    // Pooled buffers of gx's size hold NaN, so an element that no kernel writes cannot pass as a zero.
    const poison = Array.from({ length: 4 }, () => Tensor.full(rt, c.x, NaN));
    for (const t of poison) t.release();
    const spy = vi.spyOn(rt, 'dispatch');
    try {
      const gx = conv2dBackwardInput(gy, w, c.x, c.opts, undefined, method);
      const kernels = new Set(spy.mock.calls.map((call) => call[0].name));
      const values = (await gx.read()) as Float32Array;
      for (const t of [w, gy, gx]) t.release();
      return { values, kernels: [...kernels] };
    } finally {
      spy.mockRestore();
    }
  }

  const ran = (kernels: string[], l: Lowering) => kernels.some((k) => l.kernel.test(k));

  shapes.forEach((c, idx) => {
    it(c.name, async () => {
      const rt = await testRuntime();
      const { xs, ws, gys } = data(c, 300 + 10 * idx);
      const g = conv2dGeometry(c.x, c.w, c.opts);
      const loss = (v: Float64Array[]): number => dot(conv2dRef(v[0]!, v[1]!, null, g), gys);
      const numeric = numericGrad(loss, [f64(xs), f64(ws)], 0);
      const report: string[] = [];
      for (const l of lowerings.filter((x) => x.applies?.(g, rt) ?? true)) {
        const got = await dataGrad(rt, c, ws, gys, l.method);
        // The forced lowering ran, and no other one.
        for (const other of lowerings) expect(ran(got.kernels, other), `${l.method} dispatched ${got.kernels.join(', ')}`).toBe(other === l);
        const err = maxRelError(got.values, numeric);
        report.push(`${l.method} ${err.toExponential(2)}`);
        expect(err, l.method).toBeLessThan(BOUND);
      }
      // What 'auto' picks for this shape before any tuning (the test runtime has no saved choices): the case names
      // the default where the adapter runs the texture GEMM; without it Winograd falls back to the implicit GEMM.
      const auto = await dataGrad(rt, c, ws, gys, 'auto');
      // The names are a CPU driver's; elsewhere (GPUs, the 'gpu' kernel mode) the direct choice is the implicit GEMM
      // on the tiled GPU GEMM.
      const direct = rt.ctx.isCpuDriver ? 'implicit' : 'implicitTiled';
      const expected = (c.auto.startsWith('winograd') && !winogradApplies(rt, g)) || c.auto === 'implicit' ? direct : c.auto;
      expect(lowerings.filter((l) => ran(auto.kernels, l)).map((l) => l.method)).toEqual([expected]);
      expect(maxRelError(auto.values, numeric)).toBeLessThan(BOUND);
      console.log(`conv2d data-gradient check ${c.name} (auto: ${expected}): ${report.join(', ')}`);
    });
  });
});

describe('conv2d texture lowerings (Winograd, im2col): forward, data and weight gradients vs float64', () => {
  // Winograd trades exact multiplies for transforms: its float32 error grows with the tile (F(4,3) ~1e-6 of the
  // output's scale here, F(2,3) a few 1e-7; scripts/winograd/winograd_matrices.py) and stays within the same bound
  // as the implicit GEMM, 1e-5. The weight gradient's reference is the central difference of the float64 loss
  // sum(conv2d(x, w) * gy) in w (exact up to float64 rounding: the loss is linear in w); for the largest shape the
  // analytic float64 gradient.
  const BOUND = 1e-5;
  const stride1: Case[] = [
    { name: '3x3 s1 p1, 16->8, uneven', x: [2, 16, 7, 5], w: [8, 16, 3, 3], opts: { stride: 1, padding: 1 }, bias: false },
    { name: '3x3 s1 p0, 20->12', x: [1, 20, 9, 6], w: [12, 20, 3, 3], opts: { stride: 1, padding: 0 }, bias: false },
    { name: '3x3 s1 p2, 16->4', x: [2, 16, 5, 4], w: [4, 16, 3, 3], opts: { stride: 1, padding: 2 }, bias: false },
    { name: '3x3 s1 p1, 64->64 @ 14 (several GEMM tiles)', x: [2, 64, 14, 14], w: [64, 64, 3, 3], opts: { stride: 1, padding: 1 }, bias: false },
  ];
  // im2col takes any shape: the ResNet kinds Winograd does not (7x7 s2 with 3 channels, 3x3 s2, 1x1 s2), uneven.
  const any: Case[] = [
    ...stride1.slice(0, 2),
    { name: '7x7 s2 p3, 3->8 (conv1)', x: [2, 3, 15, 13], w: [8, 3, 7, 7], opts: { stride: 2, padding: 3 }, bias: false },
    { name: '3x3 s2 p1, 17->20, odd sizes', x: [2, 17, 9, 7], w: [20, 17, 3, 3], opts: { stride: 2, padding: 1 }, bias: false },
    { name: '1x1 s2 p0, 16->24 (downsample)', x: [3, 16, 7, 6], w: [24, 16, 1, 1], opts: { stride: 2, padding: 0 }, bias: false },
    { name: '3x3 s2 p1, 64->128 @ 15 (several GEMM tiles)', x: [2, 64, 15, 15], w: [128, 64, 3, 3], opts: { stride: 2, padding: 1 }, bias: false },
    // Small feature maps: samples stacked per texture layer (im2col.ts' samplesPerLayer), 6 per layer at 3x3
    // outputs (forward, data gradient) and 2 per layer in the weight gradient's 6 sample groups; 4 per layer at 2x2.
    { name: '3x3 s2 p1, 16->128 @ 5, 12 samples (stacked)', x: [12, 16, 5, 5], w: [128, 16, 3, 3], opts: { stride: 2, padding: 1 }, bias: false },
    { name: '3x3 s1 p1, 8->8 @ 2, 4 samples (stacked)', x: [4, 8, 2, 2], w: [8, 8, 3, 3], opts: { stride: 1, padding: 1 }, bias: false },
    // Stacked in every pass with few enough weights for the central-difference weight gradient: 11 column tiles
    // (K = 324) give the weight gradient sample groups of 2 (lavapipe) or 3 (SwiftShader) samples, stacked per layer.
    { name: '3x3 s2 p1, 36->4 @ 5, 12 samples (stacked, central differences)', x: [12, 36, 5, 5], w: [4, 36, 3, 3], opts: { stride: 2, padding: 1 }, bias: false },
  ];
  const runs: [Method, Case[], RegExp, (g: Conv2dGeometry, rt: Runtime) => boolean][] = [
    ['winograd4', stride1, /^winogradInputTransposedTransform_F3x4$/, (g, rt) => winogradApplies(rt, g)],
    ['winograd2', stride1, /^winogradInputTransposedTransform_F3x2$/, (g, rt) => winogradApplies(rt, g)],
    ['im2col', any, /^conv2dIm2colTexture$/, (_g, rt) => im2colApplies(rt)],
  ];
  // Every texture GEMM register group the tuner may choose per adapter (texture-gemm.ts), each pinned in turn: the
  // default one under the plain test names.
  const [defaultGroup] = TEXTURE_GEMM_REGISTER_GROUPS;
  for (const group of TEXTURE_GEMM_REGISTER_GROUPS) {
    for (const [method, shapes, kernel, applies] of runs) {
      shapes.forEach((c, idx) => {
        const name = `${method}: ${c.name}${group === defaultGroup ? '' : `, register group ${group}`}`;
        it.skipIf(!applies(conv2dGeometry(c.x, c.w, c.opts), collectRt))(name, async () => {
          const rt = await testRuntime();
          const g = conv2dGeometry(c.x, c.w, c.opts);
          const { xs, ws, gys } = data(c, 700 + 10 * idx);
          const spy = vi.spyOn(rt, 'dispatch');
          rt.tuner.pin({ [TEXTURE_GEMM_REGISTER_GROUP_KEY]: group });
          let got: Awaited<ReturnType<typeof runAll>>;
          try {
            got = await runAll(rt, c, xs, ws, null, gys, undefined, method, method);
          } finally {
            rt.tuner.pin({ [TEXTURE_GEMM_REGISTER_GROUP_KEY]: defaultGroup });
          }
          const kernels = [...new Set(spy.mock.calls.map((call) => call[0].name))];
          spy.mockRestore();
          // This lowering ran, and neither implicit-GEMM kernel did; its texture GEMMs in the pinned register group.
          expect(kernels.some((k) => kernel.test(k)), kernels.join(', ')).toBe(true);
          expect(kernels.some((k) => k.startsWith('conv2dGemm') || k.startsWith('conv2dBackwardWeight'))).toBe(false);
          const gemms = kernels.filter((k) => k.startsWith('textureGemm_'));
          expect(gemms.length).toBeGreaterThan(0);
          expect(gemms.every((k) => k.endsWith(`g${TEXTURE_GEMM_REGISTER_GROUP_ROWS[group]}`)), gemms.join(', ')).toBe(true);
          const ref = conv2dRef(f64(xs), f64(ws), null, g);
          const analytic = conv2dBackwardRef(f64(xs), f64(ws), f64(gys), g);
          const gw = ws.length <= 2304 ? numericGrad((v) => dot(conv2dRef(f64(xs), v[0]!, null, g), gys), [f64(ws)], 0) : analytic.gw;
          // The data gradient ran through the same lowering (runAll's `method`): the float64 analytic one.
          const errs = { y: maxRelError(got.y, ref), gx: maxRelError(got.gx, analytic.gx), gw: maxRelError(got.gw, gw) };
          console.log(`conv2d ${method} ${c.name}: y ${errs.y.toExponential(2)} gx ${errs.gx.toExponential(2)} gw ${errs.gw.toExponential(2)}`);
          expect(errs.y, 'y').toBeLessThan(BOUND);
          expect(errs.gx, 'gx').toBeLessThan(BOUND);
          expect(errs.gw, 'gw').toBeLessThan(BOUND);
        });
      });
    }
  }
});

describe('conv2d im2col on small feature maps', () => {
  it.skipIf(!im2colApplies(collectRt))('im2col stacks the samples of small feature maps in one texture layer', async () => {
    const rt = await testRuntime();
    // P = 9 positions per sample: 12 samples in 4 layers of 3 (27 of 32 rows used) rather than 12 layers of 9.
    expect(samplesPerLayer(rt, 12, 9, 32)).toBe(3);
    expect(samplesPerLayer(rt, 12, 9, 64)).toBe(6);
    expect(samplesPerLayer(rt, 32, 4, 32)).toBe(8);
    expect(samplesPerLayer(rt, 32, 64, 32)).toBe(1);
    expect(samplesPerLayer(rt, 7, 20, 32)).toBe(7);
    expect(samplesPerLayer(rt, 2, 20, 32)).toBe(1);
    // The stacked cases above run with S > 1 in every pass.
    for (const w of [[128, 16, 3, 3], [4, 36, 3, 3]] as [number, number, number, number][]) {
      const c: Case = { name: 'stacked', x: [12, w[1]!, 5, 5], w, opts: { stride: 2, padding: 1 }, bias: false };
      const { xs, ws, gys } = data(c, 31);
      const spy = vi.spyOn(rt, 'dispatch');
      await runAll(rt, c, xs, ws, null, gys, undefined, 'im2col', 'im2col');
      const stacked = spy.mock.calls.filter((call) => call[0].name === 'conv2dIm2colTexture').map((call) => call[0].constants?.S);
      const grouped = spy.mock.calls.filter((call) => call[0].name === 'stridedTexture').map((call) => [call[3]?.rg, call[3]?.cg]);
      spy.mockRestore();
      // Forward (samples per row tile of TEXTURE_GEMM_ROWS) and weight gradient (its sample groups reduce over k blocks
      // of 4 * subgroup size: 2 per layer on lavapipe, 3 on SwiftShader); the data gradient's gy^T in row groups of 9,
      // the weight gradient's gy in column groups of 9.
      expect(stacked).toHaveLength(2);
      expect(stacked[0]).toBe(samplesPerLayer(rt, 12, 9, TEXTURE_GEMM_ROWS));
      expect(stacked[0]).toBeGreaterThan(1);
      expect(stacked[1]).toBeGreaterThan(1);
      expect(grouped).toContainEqual([9, 0xffffffff]);
      expect(grouped).toContainEqual([0xffffffff, 9]);
    }
  });
});

describe('conv2d over the binding limit', () => {
  const winogradSplit: Case = { name: 'split', x: [7, 4, 28, 28], w: [4, 4, 3, 3], opts: { stride: 1, padding: 1 }, bias: false };
  it.skipIf(!winogradApplies(collectRt, conv2dGeometry(winogradSplit.x, winogradSplit.w, winogradSplit.opts)))('splits the batch on the Winograd path: the same results as one piece, and the float64 reference\'s', async () => {
    const rt = await testRuntime();
    const c = winogradSplit;
    const { xs, ws, gys } = data(c, 19);
    const d0 = rt.stats.dispatches;
    const whole = await runAll(rt, c, xs, ws, null, gys, undefined, 'winograd4', 'winograd4');
    const wholeDispatches = rt.stats.dispatches - d0;
    // 12.25 KiB per input sample, 40 KiB limit: slices of at most 3 samples. (The weight gradient's per-position
    // product, 36 x Cin x 64 floats, is bound whole: 36 KiB here, at most 38 MB in ResNet-18.)
    const split = await withBindingLimit(rt, 40 * 1024, async () => {
      const d1 = rt.stats.dispatches;
      const r = await runAll(rt, c, xs, ws, null, gys, undefined, 'winograd4', 'winograd4');
      expect(rt.stats.dispatches - d1).toBeGreaterThan(wholeDispatches + 6);
      return r;
    });
    // Tiles are independent in the forward pass and the data gradient; the weight gradient adds the slices' sums in
    // the transformed domain, whose rounding the output transform amplifies: within Winograd's bound, 1e-5.
    expect(maxRelError(split.y, whole.y)).toBe(0);
    expect(maxRelError(split.gx, whole.gx)).toBe(0);
    expect(maxRelError(split.gw, whole.gw)).toBeLessThan(1e-5);
    // Both against float64 (an error common to the sliced and the whole run would pass the comparisons above).
    const g = conv2dGeometry(c.x, c.w, c.opts);
    const ref = { y: conv2dRef(f64(xs), f64(ws), null, g), ...conv2dBackwardRef(f64(xs), f64(ws), f64(gys), g) };
    for (const [label, r] of [['whole', whole], ['split', split]] as const) {
      const errs = { y: maxRelError(r.y, ref.y), gx: maxRelError(r.gx, ref.gx), gw: maxRelError(r.gw, ref.gw) };
      console.log(`conv2d winograd4 ${label} batch vs float64: y ${errs.y.toExponential(2)} gx ${errs.gx.toExponential(2)} gw ${errs.gw.toExponential(2)}`);
      for (const [k, e] of Object.entries(errs)) expect(e, `${label} ${k}`).toBeLessThan(TOL);
    }
  });

  it.skipIf(!im2colApplies(collectRt))('splits the batch on the im2col path and gives the same results as one piece', async () => {
    const rt = await testRuntime();
    const c: Case = { name: 'split', x: [7, 16, 8, 8], w: [8, 16, 3, 3], opts: { stride: 2, padding: 1 }, bias: false };
    const { xs, ws, gys } = data(c, 29);
    const d0 = rt.stats.dispatches;
    const whole = await runAll(rt, c, xs, ws, null, gys, undefined, 'im2col', 'im2col');
    const wholeDispatches = rt.stats.dispatches - d0;
    const split = await withBindingLimit(rt, 16 * 1024, async () => {
      const d1 = rt.stats.dispatches;
      const r = await runAll(rt, c, xs, ws, null, gys, undefined, 'im2col', 'im2col');
      expect(rt.stats.dispatches - d1).toBeGreaterThan(wholeDispatches + 4);
      return r;
    });
    expect(maxRelError(split.y, whole.y)).toBe(0);
    expect(maxRelError(split.gx, whole.gx)).toBe(0);
    expect(maxRelError(split.gw, whole.gw)).toBeLessThan(1e-6);
  });

  for (const method of ['implicit', 'col2im'] as const) {
    it(`splits the batch and gives the same results as one piece (data gradient: ${method})`, async () => {
      const rt = await testRuntime();
      // 4 KiB per input sample, 16 KiB limit: slices of at most 3 samples (and the padded copy must fit too).
      const c: Case = { name: 'split', x: [7, 4, 16, 16], w: [8, 4, 3, 3], opts: { stride: 2, padding: 1 }, bias: true };
      const { xs, ws, bs, gys } = data(c, 9);
      const d0 = rt.stats.dispatches;
      const whole = await runAll(rt, c, xs, ws, bs, gys, undefined, method, 'implicit');
      const wholeDispatches = rt.stats.dispatches - d0;
      const split = await withBindingLimit(rt, 16 * 1024, async () => {
        const d1 = rt.stats.dispatches;
        const r = await runAll(rt, c, xs, ws, bs, gys, undefined, method, 'implicit');
        // More dispatches than the one-piece run: it really was sliced.
        expect(rt.stats.dispatches - d1).toBeGreaterThan(2 * wholeDispatches);
        return r;
      });
      // Slices change only the order of the batch sum in gw and gb.
      expect(maxRelError(split.y, whole.y)).toBe(0);
      expect(maxRelError(split.gx, whole.gx)).toBe(0);
      expect(maxRelError(split.gw, whole.gw)).toBeLessThan(1e-6);
      expect(maxRelError(split.gb, whole.gb)).toBeLessThan(1e-6);
    });
  }
});

interface ConvFixture extends LayerFixture {
  stride: [number, number];
  padding: [number, number];
}

describe('conv2d vs PyTorch 1.13 (fixtures/ops/conv2d.json, scripts/fixtures/make_conv_linear_fixtures.py)', () => {
  const fixture = loadOpFixture<{ cases: ConvFixture[] }>('conv2d.json');
  // Metric: maxRelError (max |gpu - torch| / max |torch|) < 1e-4 for y and every gradient.
  for (const c of fixture.cases) {
    it(c.name, async () => {
      const rt = await testRuntime();
      const opts: Conv2dOptions = { stride: c.stride, padding: c.padding };
      const [x, w, gy] = [toTensor(rt, c.x), toTensor(rt, c.w), toTensor(rt, c.gy)];
      const b = c.b ? toTensor(rt, c.b) : null;
      const outs: [Tensor, FixtureTensor][] = [
        [conv2dForward(x, w, b, opts), c.y],
        [conv2dBackwardInput(gy, w, c.x.shape, opts), c.gx],
        [conv2dBackwardWeight(gy, x, c.w.shape, opts), c.gw],
      ];
      if (c.gb) outs.push([conv2dBackwardBias(gy), c.gb]);
      console.log(`${c.name}: worst max rel error vs torch ${(await expectFixtureOutputs(outs, 1e-4)).toExponential(2)}`);
      const g = conv2dGeometry(c.x.shape, c.w.shape, opts);
      if (c.name.includes('Winograd') && winogradApplies(rt, g)) {
        // 'auto' took F(4,3) above; F(2,3) too.
        const outs2: [Tensor, FixtureTensor][] = [
          [conv2dForward(x, w, null, opts, undefined, 'winograd2'), c.y],
          [conv2dBackwardInput(gy, w, c.x.shape, opts, undefined, 'winograd2'), c.gx],
          [conv2dBackwardWeight(gy, x, c.w.shape, opts, undefined, 'winograd2'), c.gw],
        ];
        console.log(`${c.name} F(2,3): worst max rel error vs torch ${(await expectFixtureOutputs(outs2, 1e-4)).toExponential(2)}`);
      }
      for (const z of [x, w, gy, b]) z?.release();
    });
  }
});

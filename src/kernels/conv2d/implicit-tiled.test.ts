import { describe, expect, it, vi } from 'vitest';
import { Tensor } from '../../runtime/tensor.js';
import type { Runtime } from '../../runtime/runtime.js';
import { kernelView } from '../../runtime/device.js';
import { withBindingLimit } from '../../../test/helpers/binding-limit.js';
import { isSwiftShader, testRuntime } from '../../../test/helpers/gpu.js';
import { dot, f64, maxRelError, numericGrad, randn } from '../../../test/helpers/gradcheck.js';
import { TILED_GEMM_NAMES, TILED_GEMM_VARIANTS, defaultTiledGemm, tiledGemmApplies, type TiledGemmName } from '../matmul/tiled-gemm.js';
import { conv2dGeometry, type Conv2dGeometry, type Conv2dOptions } from './geometry.js';
import type { ConvPass } from './lowering.js';
import { conv2dBackwardRef, conv2dRef } from './conv2d.reference.js';
import {
  conv2dBackwardInputImplicitTiled,
  conv2dBackwardWeightImplicitTiled,
  conv2dForwardImplicitTiled,
  implicitTiledKey,
  implicitTiledLowering,
  implicitTiledVariant,
  type TiledVariant,
} from './implicit-tiled.js';

// Error metric throughout: maxRelError = max |gpu - ref| / max |ref| (test/helpers/gradcheck.ts).
// GPU (f32) vs float64: sums of at most ~1200 products of N(0,1) values, about 1e-7 relative; 1e-5 is a wide margin,
// while one lost tap, row or K step is an error of order 1e-1.
const TOL = 1e-5;

interface Case {
  name: string;
  x: [number, number, number, number];
  w: [number, number, number, number];
  opts: Conv2dOptions;
  bias: boolean;
}

// conv2d.test.ts' awkward shapes.
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

function data(c: Case, seed: number): { xs: Float32Array; ws: Float32Array; bs: Float32Array | null; gys: Float32Array } {
  const g = conv2dGeometry(c.x, c.w, c.opts);
  return {
    xs: randn(c.x.reduce((a, b) => a * b), seed),
    ws: randn(c.w.reduce((a, b) => a * b), seed + 1),
    bs: c.bias ? randn(c.w[0], seed + 2) : null,
    gys: randn(g.n * g.cout * g.oh * g.ow, seed + 3),
  };
}

interface Pass {
  values: Float32Array;
  /** The dispatches: kernel name and bindings. */
  calls: { kernel: string; buffers: Record<string, unknown> }[];
}

interface Result {
  y: Pass;
  gx: Pass;
  gw: Pass;
}

const ALL: readonly ConvPass[] = ['forward', 'data', 'weight'];

/** The three passes, each with its own dispatch log; pooled buffers hold NaN first, so unwritten elements show. */
async function runAll(rt: Runtime, c: Case, d: ReturnType<typeof data>, variant: TiledVariant = 'auto'): Promise<Result & { w: Tensor }> {
  return runPasses(rt, c, d, variant, ALL) as Promise<Result & { w: Tensor }>;
}

async function runPasses(rt: Runtime, c: Case, d: ReturnType<typeof data>, variant: TiledVariant, passes: readonly ConvPass[]): Promise<Partial<Result> & { w: Tensor }> {
  const g = conv2dGeometry(c.x, c.w, c.opts);
  const x = Tensor.fromArray(rt, d.xs, c.x);
  const w = Tensor.fromArray(rt, d.ws, c.w);
  const b = d.bs ? Tensor.fromArray(rt, d.bs, [c.w[0]]) : null;
  const gy = Tensor.fromArray(rt, d.gys, [g.n, g.cout, g.oh, g.ow]);
  const logged = async (shape: readonly number[], run: () => Tensor<'f32'>): Promise<Pass> => {
    for (const t of Array.from({ length: 4 }, () => Tensor.full(rt, shape, NaN))) t.release();
    const spy = vi.spyOn(rt, 'dispatch');
    const copy = vi.spyOn(rt, 'copy');
    try {
      const out = run();
      const calls = spy.mock.calls.map((call) => ({ kernel: call[0].name, buffers: call[2] as Record<string, unknown> }));
      expect(copy).not.toHaveBeenCalled();
      const values = (await out.read()) as Float32Array;
      out.release();
      return { values, calls };
    } finally {
      spy.mockRestore();
      copy.mockRestore();
    }
  };
  const y = passes.includes('forward') ? await logged([g.n, g.cout, g.oh, g.ow], () => conv2dForwardImplicitTiled(x, w, b, g, variant)) : undefined;
  const gx = passes.includes('data') ? await logged(c.x, () => conv2dBackwardInputImplicitTiled(gy, w, g, variant)) : undefined;
  const gw = passes.includes('weight') ? await logged(c.w, () => conv2dBackwardWeightImplicitTiled(gy, x, g, variant)) : undefined;
  for (const t of [x, b, gy]) t?.release();
  return { y, gx, gw, w };
}

const GEMM = /^tiledGemm(\d+)x(\d+)x(\d+)_(\d+)x(\d+)_conv(Forward|Data|Weight)(_rowBias)?$/;

/** The kernels each pass may dispatch, and which operands: no padded copy, no transpose of activations. */
function checkDispatches(r: Partial<Result> & { w: Tensor }, bias: boolean): void {
  const kernels = (p: Pass) => [...new Set(p.calls.map((c) => c.kernel))];
  if (r.y) {
    // Forward: the gathered GEMM alone (one dispatch per batch slice), with the bias per row when given.
    expect(kernels(r.y).length, kernels(r.y).join(', ')).toBe(1);
    expect(kernels(r.y)[0]).toMatch(bias ? /_convForward_rowBias$/ : /_convForward$/);
    expect(kernels(r.y)[0]).toMatch(GEMM);
  }
  if (r.gx) {
    // Data gradient: the permute of w (its only transpose), then the gathered GEMM.
    expect(kernels(r.gx).sort()).toEqual(['conv2dTranspose', expect.stringMatching(/_convData$/)]);
    for (const c of r.gx.calls) if (c.kernel === 'conv2dTranspose') expect(c.buffers.src).toBe(r.w);
  }
  if (r.gw) {
    // Weight gradient: the gathered GEMM, and the fixed-order sum of its split-K partials.
    for (const k of kernels(r.gw)) expect(k).toMatch(/_convWeight$|^conv2dSumPartials$/);
    expect(kernels(r.gw).some((k) => GEMM.test(k))).toBe(true);
  }
}

function reference(c: Case, d: ReturnType<typeof data>) {
  const g = conv2dGeometry(c.x, c.w, c.opts);
  return { y: conv2dRef(f64(d.xs), f64(d.ws), d.bs && f64(d.bs), g), ...conv2dBackwardRef(f64(d.xs), f64(d.ws), f64(d.gys), g) };
}

describe('implicitTiled conv2d vs float64: the forward reference and central differences of the gradients', () => {
  cases.forEach((c, idx) => {
    it(c.name, async () => {
      const rt = await testRuntime();
      const d = data(c, 100 * idx);
      const g = conv2dGeometry(c.x, c.w, c.opts);
      const got = await runAll(rt, c, d);
      checkDispatches(got, c.bias);
      // The loss sum(conv2d(x, w, b) * gy) is linear in x and in w: its central difference (eps 1e-6, float64) is
      // exact up to float64 rounding, about 1e-9 relative here.
      const inputs = [f64(d.xs), f64(d.ws)];
      const loss = (v: Float64Array[]): number => dot(conv2dRef(v[0]!, v[1]!, null, g), d.gys);
      const errs = {
        y: maxRelError(got.y.values, reference(c, d).y),
        gx: maxRelError(got.gx.values, numericGrad(loss, inputs, 0)),
        gw: maxRelError(got.gw.values, numericGrad(loss, inputs, 1)),
      };
      got.w.release();
      console.log(`implicitTiled ${c.name}: y ${errs.y.toExponential(2)} gx ${errs.gx.toExponential(2)} gw ${errs.gw.toExponential(2)}`);
      for (const [k, e] of Object.entries(errs)) expect(e, k).toBeLessThan(TOL);
    });
  });
});

describe('implicitTiled: every tiled GEMM variant, forced on shapes that fill its tile', () => {
  // Per pass the GEMM is forward Cout x OH*OW, data Cin x H*W, weight Cout x Cin*KH*KW; each shape below fills the
  // variant's full BM x BN tile in all three and leaves partial edge tiles. Each pipeline costs seconds to compile
  // on lavapipe without its shader cache (2-17 s), so the smallest tile (also the default on the small shapes
  // above) runs every pass and the others one pass each, every pass on two or three tile shapes, both K tiles
  // (BK 16 and 8) included. Reference: the analytic float64 gradients.
  const runs: [TiledGemmName, readonly ConvPass[]][] = [
    ['tiled32x32', ALL],
    ['tiled64x64', ['weight']],
    ['tiled64x64r8', ['forward']],
    ['tiled128x64', ['weight']],
    ['tiled128x128', ['data']],
  ];
  expect(runs.map((r) => r[0]).sort()).toEqual([...TILED_GEMM_NAMES].sort());
  const tileShape = (name: TiledGemmName): Case => {
    const { bm, bn } = TILED_GEMM_VARIANTS[name];
    const side = Math.ceil(Math.sqrt(bn)) + 1;
    return {
      name: `${bm + 3} channels, ${side}x${side + 1} (${name})`,
      x: [2, bm + 2, side, side + 1],
      w: [bm + 3, bm + 2, 3, 3],
      opts: { stride: 1, padding: 1 },
      bias: true,
    };
  };
  runs.forEach(([name, passes], idx) => {
    it(`${name}: ${passes.join(', ')}`, async (ctx) => {
      const rt = await testRuntime();
      if (!tiledGemmApplies(rt, name) || (name !== 'tiled32x32' && isSwiftShader(rt))) ctx.skip();
      const c = tileShape(name);
      const v = TILED_GEMM_VARIANTS[name];
      const g = conv2dGeometry(c.x, c.w, c.opts);
      expect(Math.min(g.cout, g.cin)).toBeGreaterThanOrEqual(v.bm);
      expect(Math.min(g.oh * g.ow, g.h * g.w, g.cin * g.kh * g.kw)).toBeGreaterThanOrEqual(v.bn);
      const d = data(c, 500 + idx);
      const got = await runPasses(rt, c, d, name, passes);
      got.w.release();
      checkDispatches(got, true);
      const tile = `tiledGemm${v.bm}x${v.bn}x${v.bk}_${v.tm}x${v.tn}_`;
      const ref = reference(c, d);
      const report: string[] = [];
      for (const [label, p, want] of [['y', got.y, ref.y], ['gx', got.gx, ref.gx], ['gw', got.gw, ref.gw]] as const) {
        if (!p) continue;
        expect(p.calls.some((call) => call.kernel.startsWith(tile))).toBe(true);
        const err = maxRelError(p.values, want);
        report.push(`${label} ${err.toExponential(2)}`);
        expect(err, label).toBeLessThan(TOL);
      }
      console.log(`implicitTiled ${c.name}: ${report.join(' ')}`);
    });
  });
});

describe('implicitTiled over the binding limit', () => {
  it('splits the batch: the same results as one piece, and the float64 reference\'s', async () => {
    const rt = await testRuntime();
    // 4 KiB per input sample, 12 KiB limit: slices of at most 3 samples (7 = 3 + 3 + 1). The weight gradient's
    // slices of 3 are split-K over partials, the last one goes straight into gw: both ways of accumulating.
    const c: Case = { name: 'split', x: [7, 4, 16, 16], w: [8, 4, 3, 3], opts: { stride: 2, padding: 1 }, bias: true };
    const d = data(c, 9);
    const whole = await runAll(rt, c, d);
    whole.w.release();
    const split = await withBindingLimit(rt, 12 * 1024, async () => runAll(rt, c, d));
    split.w.release();
    const gemms = (p: Pass) => p.calls.filter((call) => GEMM.test(call.kernel)).length;
    expect([gemms(whole.y), gemms(whole.gx), gemms(whole.gw)]).toEqual([1, 1, 1]);
    expect([gemms(split.y), gemms(split.gx), gemms(split.gw)]).toEqual([3, 3, 3]);
    expect(split.gw.calls.filter((call) => call.kernel === 'conv2dSumPartials').length).toBe(2);
    // Slices change only the order of the batch sum in gw.
    expect(maxRelError(split.y.values, whole.y.values)).toBe(0);
    expect(maxRelError(split.gx.values, whole.gx.values)).toBe(0);
    expect(maxRelError(split.gw.values, whole.gw.values)).toBeLessThan(1e-6);
    const ref = reference(c, d);
    for (const [label, r] of [['whole', whole], ['split', split]] as const) {
      const errs = { y: maxRelError(r.y.values, ref.y), gx: maxRelError(r.gx.values, ref.gx), gw: maxRelError(r.gw.values, ref.gw) };
      console.log(`implicitTiled ${label} batch vs float64: y ${errs.y.toExponential(2)} gx ${errs.gx.toExponential(2)} gw ${errs.gw.toExponential(2)}`);
      for (const [k, e] of Object.entries(errs)) expect(e, `${label} ${k}`).toBeLessThan(TOL);
    }
  });
});

describe('implicitTiled: the lowering and its tile choice', () => {
  it('is offered on GPUs only, supports every pass and shape, and defaults to the largest tile the output fills', async () => {
    const rt = await testRuntime();
    const g: Conv2dGeometry = conv2dGeometry([2, 64, 14, 14], [128, 64, 3, 3], { stride: 1, padding: 1 });
    for (const pass of ['forward', 'data', 'weight'] as const) {
      expect(implicitTiledLowering.unsupported(rt, g, pass, pass === 'forward')).toBeNull();
      expect(implicitTiledLowering.offered?.({ ...rt, ctx: kernelView(rt.ctx, 'gpu') } as Runtime, g, pass)).toBe(true);
      expect(implicitTiledLowering.offered?.(rt, g, pass)).toBe(!rt.ctx.isCpuDriver);
    }
    expect(implicitTiledKey(g, 'forward')).toBe('conv2d.forward.implicitTiled 64x14x14->128 k3x3 s1x1 p1x1');
    // Before tuning: the defaults (forward 128 x 196, data 64 x 196, weight 128 x 576).
    expect(implicitTiledVariant(rt, g, 'forward')).toBe(defaultTiledGemm(rt, 128, 196));
    expect(implicitTiledVariant(rt, g, 'data')).toBe(defaultTiledGemm(rt, 64, 196));
    expect(implicitTiledVariant(rt, g, 'weight')).toBe(defaultTiledGemm(rt, 128, 576));
  });

  it('weight gradient: split-K ranges of unequal length', async () => {
    const rt = await testRuntime();
    // 2 samples x 65 positions = 130 reduction steps in 3 ranges (44, 44, 42) of the 32x32 tile's one output tile.
    const c: Case = { name: 'uneven splits', x: [2, 5, 13, 5], w: [4, 5, 3, 3], opts: { stride: 1, padding: 1 }, bias: false };
    const d = data(c, 31);
    const got = await runPasses(rt, c, d, 'tiled32x32', ['weight']);
    got.w.release();
    const gemm = got.gw!.calls.filter((call) => GEMM.test(call.kernel));
    expect(gemm.length).toBe(1);
    expect(got.gw!.calls.filter((call) => call.kernel === 'conv2dSumPartials').length).toBe(1);
    const err = maxRelError(got.gw!.values, reference(c, d).gw);
    console.log(`implicitTiled uneven split-K: gw ${err.toExponential(2)}`);
    expect(err).toBeLessThan(TOL);
  });

  it('runs the tuner\'s choice', async (ctx) => {
    const rt = await testRuntime();
    if (isSwiftShader(rt)) ctx.skip();
    // Choices other than the default (tiled32x32 here), whose pipelines the forced runs above compiled.
    const c: Case = { name: 'tuned', x: [1, 6, 9, 7], w: [10, 6, 3, 3], opts: { stride: 2, padding: 1 }, bias: true };
    const g = conv2dGeometry(c.x, c.w, c.opts);
    const picks: Record<ConvPass, [TiledGemmName, string]> = {
      forward: ['tiled64x64r8', 'tiledGemm64x64x16_8x8_convForward_rowBias'],
      data: ['tiled128x128', 'tiledGemm128x128x8_8x8_convData'],
      weight: ['tiled64x64', 'tiledGemm64x64x16_4x4_convWeight'],
    };
    for (const pass of ALL) expect(implicitTiledVariant(rt, g, pass)).toBe('tiled32x32');
    rt.tuner.pin(Object.fromEntries(ALL.map((pass) => [implicitTiledKey(g, pass), picks[pass][0]])));
    const d = data(c, 77);
    const got = await runAll(rt, c, d);
    got.w.release();
    expect(got.y.calls.map((call) => call.kernel)).toEqual([picks.forward[1]]);
    expect(got.gx.calls.map((call) => call.kernel)).toContain(picks.data[1]);
    expect(got.gw.calls.map((call) => call.kernel)).toContain(picks.weight[1]);
    const ref = reference(c, d);
    expect(maxRelError(got.y.values, ref.y)).toBeLessThan(TOL);
    expect(maxRelError(got.gx.values, ref.gx)).toBeLessThan(TOL);
    expect(maxRelError(got.gw.values, ref.gw)).toBeLessThan(TOL);
  });
});

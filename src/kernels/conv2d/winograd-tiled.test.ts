import { describe, expect, it } from 'vitest';
import { withBindingLimit } from '../../../test/helpers/binding-limit.js';
import { convCaseData, runLoweringPasses, tiledKernel, type ConvCase } from '../../../test/helpers/conv-lowering.js';
import { isSwiftShader, testRuntime } from '../../../test/helpers/gpu.js';
import { dot, f64, maxRelError, numericGrad } from '../../../test/helpers/gradcheck.js';
import type { TiledGemmName } from '../matmul/tiled-gemm.js';
import { conv2dBackwardRef, conv2dRef } from './conv2d.reference.js';
import { conv2dGeometry } from './geometry.js';
import { winograd2Tiled, winograd2TiledLowering, winograd4Tiled, winograd4TiledLowering } from './winograd-tiled.js';

// Winograd F(4,3) / F(2,3) on the tiled GPU GEMM, its passes called directly. Error metric: maxRelError =
// max |gpu - ref| / max |ref| (test/helpers/gradcheck.ts). Winograd trades exact multiplies for transforms: its
// float32 error grows with the tile (F(4,3) ~1e-6 of the output's scale, F(2,3) a few 1e-7;
// scripts/winograd/winograd_matrices.py) and stays within the bound conv2d.test.ts gives the texture Winograd
// lowering, 1e-5, while one wrong transform coefficient is an error of order 1e-1.
const BOUND = 1e-5;

type Case = ConvCase;

// Every padding Winograd takes (0, 1, 2, and unequal), sizes that leave partial tiles of 4 and of 2, channel counts
// that are not multiples of 4 (scalar loads in the GEMM) and ones that are (vec4 loads).
const cases: Case[] = [
  { name: '3x3 s1 p1, 3->5, odd sizes (partial tiles)', x: [2, 3, 7, 5], w: [5, 3, 3, 3], opts: { stride: 1, padding: 1 } },
  { name: '3x3 s1 p0, 6->7', x: [1, 6, 9, 6], w: [7, 6, 3, 3], opts: { stride: 1, padding: 0 } },
  { name: '3x3 s1 p2, 5->2', x: [2, 5, 5, 4], w: [2, 5, 3, 3], opts: { stride: 1, padding: 2 } },
  { name: '3x3 s1 padding [0,2], 4->3', x: [1, 4, 6, 7], w: [3, 4, 3, 3], opts: { stride: 1, padding: [0, 2] } },
  { name: '3x3 s1 p1, 16->8', x: [2, 16, 6, 6], w: [8, 16, 3, 3], opts: { stride: 1, padding: 1 } },
];


/** The transforms each tile size dispatches: F(m, 3) for the forward pass and data gradient, F(3, m) for the weights. */
const transforms = (m: 2 | 4): string[] =>
  [
    `winogradGradTransformBuffer_F3x${m}`,
    `winogradInputTransformBuffer_F${m}x3`,
    `winogradInputTransformBuffer_F3x${m}`,
    `winogradOutputTransformBuffer_F${m}x3`,
    `winogradWeightGradOutputBuffer_F3x${m}`,
    `winogradWeightTransformBuffer_F${m}x3`,
  ].sort();

const lowerings = { 4: winograd4Tiled, 2: winograd2Tiled } as const;

describe('winograd{4,2}Tiled: forward vs float64, both gradients vs central differences', () => {
  // tiled32x32 compiles fastest on lavapipe: every shape; tiled64x64 (another tile) on two of them.
  const runs: [2 | 4, TiledGemmName, Case[]][] = [
    [4, 'tiled32x32', cases],
    [2, 'tiled32x32', cases],
    [4, 'tiled64x64', [cases[0]!, cases[4]!]],
    [2, 'tiled64x64', [cases[2]!]],
  ];
  for (const [m, variant, shapes] of runs) {
    shapes.forEach((c, idx) => {
      it(`F(${m},3), ${variant}: ${c.name}`, async (ctx) => {
        const rt = await testRuntime();
        if (variant !== 'tiled32x32' && isSwiftShader(rt)) ctx.skip();
        const { g, xs, ws, gys } = convCaseData(c, 900 + 10 * idx);
        const l = lowerings[m](variant);
        for (const pass of ['forward', 'data', 'weight'] as const) expect(l.unsupported(rt, g, pass, false)).toBeNull();
        const got = await runLoweringPasses(rt, l, g, xs, ws, gys);
        // This tile size's transforms and this variant's GEMM (nn for the convolutions, tn for the weights) ran, and
        // nothing else.
        expect(got.kernels.filter((k) => !tiledKernel(variant).test(k)).sort()).toEqual(transforms(m));
        expect(got.kernels.filter((k) => tiledKernel(variant).test(k)).map((k) => k.split('_')[2]).sort()).toEqual(['nn', 'tn']);
        // loss = sum(conv2d(x, w) * gy) is linear in x and in w: central differences (eps 1e-6, float64) are exact
        // up to float64 rounding.
        const loss = (v: Float64Array[]): number => dot(conv2dRef(v[0]!, v[1]!, null, g), gys);
        const inputs = [f64(xs), f64(ws)];
        const errs = {
          y: maxRelError(got.y, conv2dRef(f64(xs), f64(ws), null, g)),
          gx: maxRelError(got.gx, numericGrad(loss, inputs, 0)),
          gw: maxRelError(got.gw, numericGrad(loss, inputs, 1)),
        };
        console.log(`winograd${m}Tiled ${variant} ${c.name}: y ${errs.y.toExponential(2)} gx ${errs.gx.toExponential(2)} gw ${errs.gw.toExponential(2)}`);
        for (const [k, e] of Object.entries(errs)) expect(e, k).toBeLessThan(BOUND);
      });
    });
  }

  it('applies to 3x3 stride-1 padding <= 2 only, is offered only off CPU drivers, and auto picks a tiled variant', async () => {
    const rt = await testRuntime();
    const { g, xs, ws, gys } = convCaseData(cases[0]!, 77);
    for (const l of [winograd4TiledLowering, winograd2TiledLowering]) {
      expect(l.offered!(rt, g, 'forward')).toBe(!rt.ctx.isCpuDriver);
      expect(l.unsupported(rt, g, 'forward', true)).toMatch(/no bias/);
      for (const pass of ['forward', 'data', 'weight'] as const) {
        expect(l.unsupported(rt, g, pass, false)).toBeNull();
        expect(l.unsupported(rt, conv2dGeometry([1, 3, 7, 7], [4, 3, 3, 3], { stride: 2, padding: 1 }), pass, false)).toMatch(/3x3 stride-1/);
        expect(l.unsupported(rt, conv2dGeometry([1, 3, 7, 7], [4, 3, 3, 3], { padding: 3 }), pass, false)).toMatch(/padding at most 2/);
        expect(l.unsupported(rt, conv2dGeometry([1, 3, 7, 7], [4, 3, 5, 5], { padding: 2 }), pass, false)).toMatch(/3x3/);
      }
    }
    // 'auto' (the tuner's fallback, defaultTiledGemm) computes the same.
    const got = await runLoweringPasses(rt, winograd4TiledLowering, g, xs, ws, gys);
    expect(got.kernels.some((k) => /^tiledGemm/.test(k))).toBe(true);
    const ref = conv2dBackwardRef(f64(xs), f64(ws), f64(gys), g);
    expect(maxRelError(got.y, conv2dRef(f64(xs), f64(ws), null, g))).toBeLessThan(BOUND);
    expect(maxRelError(got.gx, ref.gx)).toBeLessThan(BOUND);
    expect(maxRelError(got.gw, ref.gw)).toBeLessThan(BOUND);
  });
});

describe('winograd{4,2}Tiled over the binding limit', () => {
  for (const m of [4, 2] as const) {
    it(`F(${m},3) splits the batch: the same results as one piece, and the float64 reference's`, async () => {
      const rt = await testRuntime();
      // Per sample: 12.25 KiB of input and output gradient; transformed tiles (V, M, Q) of 27.6 KiB (F(4,3): 36
      // positions x 49 tiles x 4 channels) or 49 KiB (F(2,3): 16 x 196 x 4). 64 KiB limit: slices of 2 or 1 samples.
      const c: Case = { name: 'split', x: [7, 4, 28, 28], w: [4, 4, 3, 3], opts: { stride: 1, padding: 1 } };
      const { g, xs, ws, gys } = convCaseData(c, 19);
      const l = lowerings[m]('tiled32x32');
      const d0 = rt.stats.dispatches;
      const whole = await runLoweringPasses(rt, l, g, xs, ws, gys);
      const wholeDispatches = rt.stats.dispatches - d0;
      const split = await withBindingLimit(rt, 64 * 1024, async () => {
        const d1 = rt.stats.dispatches;
        const r = await runLoweringPasses(rt, l, g, xs, ws, gys);
        // At least 4 slices per pass instead of 1: three more of each pass's 3 dispatches per slice.
        expect(rt.stats.dispatches - d1).toBeGreaterThanOrEqual(wholeDispatches + 27);
        return r;
      });
      // Tiles are independent in the forward pass and the data gradient; the weight gradient adds the slices' sums in
      // the transformed domain, whose rounding the output transform amplifies: within Winograd's bound.
      expect(maxRelError(split.y, whole.y)).toBe(0);
      expect(maxRelError(split.gx, whole.gx)).toBe(0);
      expect(maxRelError(split.gw, whole.gw)).toBeLessThan(BOUND);
      const ref = { y: conv2dRef(f64(xs), f64(ws), null, g), ...conv2dBackwardRef(f64(xs), f64(ws), f64(gys), g) };
      for (const [label, r] of [['whole', whole], ['split', split]] as const) {
        const errs = { y: maxRelError(r.y, ref.y), gx: maxRelError(r.gx, ref.gx), gw: maxRelError(r.gw, ref.gw) };
        console.log(`winograd${m}Tiled ${label} batch vs float64: y ${errs.y.toExponential(2)} gx ${errs.gx.toExponential(2)} gw ${errs.gw.toExponential(2)}`);
        for (const [k, e] of Object.entries(errs)) expect(e, `${label} ${k}`).toBeLessThan(BOUND);
      }
    });
  }
});

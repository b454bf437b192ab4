import { describe, expect, it } from 'vitest';
import { withBindingLimit } from '../../../test/helpers/binding-limit.js';
import { convCaseData, runLoweringPasses, tiledKernel, type ConvCase } from '../../../test/helpers/conv-lowering.js';
import { isSwiftShader, testRuntime } from '../../../test/helpers/gpu.js';
import { dot, f64, maxRelError, numericGrad } from '../../../test/helpers/gradcheck.js';
import type { TiledGemmName } from '../matmul/tiled-gemm.js';
import { conv2dBackwardRef, conv2dRef } from './conv2d.reference.js';
import { im2colTiled, im2colTiledLowering } from './im2col-tiled.js';

// The im2col lowering on the tiled GPU GEMM, its passes called directly. Error metric: maxRelError = max |gpu - ref|
// / max |ref| (test/helpers/gradcheck.ts). The GPU side is f32 sums of at most a few hundred products of N(0,1)
// values; the references are float64: 1e-5 is a wide margin (conv2d.test.ts's TOL), while one wrong tap is an
// error of order 1e-1.
const TOL = 1e-5;

type Case = ConvCase;

// The shapes the lowering is for (ResNet's 7x7 s2, 3x3 s2 and 1x1 s2), uneven sizes, taps that skip rows, and
// unequal strides; channel counts not multiples of 4 (scalar loads in the GEMM) and some that are (vec4 loads).
const cases: Case[] = [
  { name: '7x7 s2 p3, 3->8 (conv1)', x: [2, 3, 11, 10], w: [8, 3, 7, 7], opts: { stride: 2, padding: 3 } },
  { name: '3x3 s2 p1, 5->6, odd sizes', x: [2, 5, 9, 7], w: [6, 5, 3, 3], opts: { stride: 2, padding: 1 } },
  { name: '1x1 s2 p0, 8->12 (downsample)', x: [3, 8, 7, 6], w: [12, 8, 1, 1], opts: { stride: 2, padding: 0 } },
  { name: '2x2 s3 p2 (taps skip rows)', x: [2, 4, 6, 7], w: [4, 4, 2, 2], opts: { stride: 3, padding: 2 } },
  { name: '5x3 stride [1,2] padding [2,0]', x: [2, 2, 8, 9], w: [3, 2, 5, 3], opts: { stride: [1, 2], padding: [2, 0] } },
];


describe('im2colTiled: forward vs float64, both gradients vs central differences', () => {
  // tiled32x32 compiles fastest on lavapipe: every shape; tiled64x64 (another tile, and a K tile the 1x1 and 2x2
  // convolutions do not fill) on two of them.
  const runs: [TiledGemmName, Case[]][] = [
    ['tiled32x32', cases],
    ['tiled64x64', [cases[1]!, cases[3]!]],
  ];
  for (const [variant, shapes] of runs) {
    shapes.forEach((c, idx) => {
      it(`${variant}: ${c.name}`, async (ctx) => {
        const rt = await testRuntime();
        if (variant !== 'tiled32x32' && isSwiftShader(rt)) ctx.skip();
        const { g, xs, ws, gys } = convCaseData(c, 500 + 10 * idx);
        const l = im2colTiled(variant);
        expect(l.unsupported(rt, g, 'forward', false)).toBeNull();
        const got = await runLoweringPasses(rt, l, g, xs, ws, gys);
        // The im2col kernel and this variant's GEMM (forward nn, data tn, weight nt) ran; nothing else but col2im and
        // the partial sums.
        expect(got.kernels.filter((k) => !tiledKernel(variant).test(k)).sort()).toEqual(['conv2dCol2im', 'conv2dIm2colBuffer', 'conv2dSumPartials']);
        expect(got.kernels.filter((k) => tiledKernel(variant).test(k)).map((k) => k.split('_')[2]).sort()).toEqual(['nn', 'nt', 'tn']);
        // loss = sum(conv2d(x, w) * gy) is linear in x and in w: central differences (eps 1e-6, float64) are exact
        // up to float64 rounding.
        const loss = (v: Float64Array[]): number => dot(conv2dRef(v[0]!, v[1]!, null, g), gys);
        const inputs = [f64(xs), f64(ws)];
        const errs = {
          y: maxRelError(got.y, conv2dRef(f64(xs), f64(ws), null, g)),
          gx: maxRelError(got.gx, numericGrad(loss, inputs, 0)),
          gw: maxRelError(got.gw, numericGrad(loss, inputs, 1)),
        };
        console.log(`im2colTiled ${variant} ${c.name}: y ${errs.y.toExponential(2)} gx ${errs.gx.toExponential(2)} gw ${errs.gw.toExponential(2)}`);
        for (const [k, e] of Object.entries(errs)) expect(e, k).toBeLessThan(TOL);
      });
    });
  }

  it('is offered only off CPU drivers, takes no bias, and auto picks a tiled variant', async () => {
    const rt = await testRuntime();
    const c = cases[2]!;
    const { g, xs, ws, gys } = convCaseData(c, 77);
    expect(im2colTiledLowering.offered!(rt, g, 'forward')).toBe(!rt.ctx.isCpuDriver);
    expect(im2colTiledLowering.unsupported(rt, g, 'forward', true)).toMatch(/no bias/);
    expect(im2colTiledLowering.unsupported(rt, g, 'data', true)).toBeNull();
    // 'auto' (the tuner's fallback, defaultTiledGemm: tiled32x32 at this size) computes the same.
    const got = await runLoweringPasses(rt, im2colTiledLowering, g, xs, ws, gys);
    expect(got.kernels.some((k) => /^tiledGemm/.test(k))).toBe(true);
    const ref = conv2dBackwardRef(f64(xs), f64(ws), f64(gys), g);
    expect(maxRelError(got.y, conv2dRef(f64(xs), f64(ws), null, g))).toBeLessThan(TOL);
    expect(maxRelError(got.gx, ref.gx)).toBeLessThan(TOL);
    expect(maxRelError(got.gw, ref.gw)).toBeLessThan(TOL);
  });
});

describe('im2colTiled over the binding limit', () => {
  it('splits the batch: the same results as one piece, and the float64 reference\'s', async () => {
    const rt = await testRuntime();
    // Per sample: 4 KiB of input, 9 KiB of im2col matrix (K = 144 x P = 16), 4.5 KiB of weight-gradient partial;
    // 20 KiB limit: slices of 2, 2, 2 and 1 samples.
    const c: Case = { name: 'split', x: [7, 16, 8, 8], w: [8, 16, 3, 3], opts: { stride: 2, padding: 1 } };
    const { g, xs, ws, gys } = convCaseData(c, 29);
    const l = im2colTiled('tiled32x32');
    const d0 = rt.stats.dispatches;
    const whole = await runLoweringPasses(rt, l, g, xs, ws, gys);
    const wholeDispatches = rt.stats.dispatches - d0;
    const split = await withBindingLimit(rt, 20 * 1024, async () => {
      const d1 = rt.stats.dispatches;
      const r = await runLoweringPasses(rt, l, g, xs, ws, gys);
      // 4 slices per pass instead of 1: three more of each pass's 2 (forward, data) or 3 (weight) dispatches.
      expect(rt.stats.dispatches - d1).toBeGreaterThanOrEqual(wholeDispatches + 21);
      return r;
    });
    // Slices change only the order of the batch sum in gw.
    expect(maxRelError(split.y, whole.y)).toBe(0);
    expect(maxRelError(split.gx, whole.gx)).toBe(0);
    expect(maxRelError(split.gw, whole.gw)).toBeLessThan(1e-6);
    const ref = { y: conv2dRef(f64(xs), f64(ws), null, g), ...conv2dBackwardRef(f64(xs), f64(ws), f64(gys), g) };
    for (const [label, r] of [['whole', whole], ['split', split]] as const) {
      const errs = { y: maxRelError(r.y, ref.y), gx: maxRelError(r.gx, ref.gx), gw: maxRelError(r.gw, ref.gw) };
      console.log(`im2colTiled ${label} batch vs float64: y ${errs.y.toExponential(2)} gx ${errs.gx.toExponential(2)} gw ${errs.gw.toExponential(2)}`);
      for (const [k, e] of Object.entries(errs)) expect(e, `${label} ${k}`).toBeLessThan(TOL);
    }
  });
});

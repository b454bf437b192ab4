// The lowering table (lowerings.ts) as conv2d.ts reads it: what 'auto' offers per adapter and pass, what a forced
// lowering that cannot run says, and that every row computes what it claims (forward against the float64 reference
// on a shape it supports). The per-lowering numerics, gradient checks and slicing are tested in each lowering's tests
// (conv2d.test.ts for the texture lowerings and the implicit GEMM).
import { describe, expect, it } from 'vitest';
import { Tensor } from '../../runtime/tensor.js';
import { extraRuntime, testRuntime } from '../../../test/helpers/gpu.js';
import { f64, maxRelError, randn } from '../../../test/helpers/gradcheck.js';
import { conv2dForward, conv2dGeometry, convCandidates, convLowering, CONV_LOWERINGS } from './conv2d.js';
import { conv2dRef } from './conv2d.reference.js';
import { hasPass } from './lowering.js';

const rt = await testRuntime();
const texture = rt.ctx.subgroupSize === 4 || rt.ctx.subgroupSize === 8;

const winogradShape = conv2dGeometry([2, 16, 8, 8], [8, 16, 3, 3], { stride: 1, padding: 1 });
const conv1Shape = conv2dGeometry([2, 3, 15, 13], [8, 3, 7, 7], { stride: 2, padding: 3 });

describe('the conv2d lowering table', () => {
  it('has one row per name, each with at least one pass', () => {
    const names = CONV_LOWERINGS.map((l) => l.name);
    expect(new Set(names).size).toBe(names.length);
    for (const l of CONV_LOWERINGS) expect(['forward', 'data', 'weight'].some((p) => hasPass(l, p as 'forward'))).toBe(true);
  });

  it.skipIf(!texture)('offers, on a CPU driver, the texture lowerings in the table order (Winograd first where it applies)', () => {
    expect(convCandidates(rt, winogradShape, 'forward')).toEqual(['winograd4', 'winograd2', 'implicit', 'im2col']);
    // A forward bias rules out the texture lowerings; col2im leads the data gradient of few input channels.
    expect(convCandidates(rt, winogradShape, 'forward', true)).toEqual(['implicit']);
    expect(convCandidates(rt, conv1Shape, 'data')).toEqual(['col2im', 'implicit', 'im2col']);
    // The GPU lowerings are not offered to a CPU driver (forcing them works: their own tests do).
    expect(convCandidates(rt, conv1Shape, 'weight')).toEqual(['implicit', 'im2col']);
    // A forced register tiling: only the lowerings that take it, and no measuring.
    expect(convCandidates(rt, winogradShape, 'forward', false, { tm: 8, tnv: 1, wg: 32 })).toEqual(['implicit']);
    expect(convLowering(rt, conv1Shape, 'data', 'auto', false, { tm: 8, tnv: 1, wg: 32 })).toBe('col2im');
  });

  it("offers no texture lowering in the 'gpu' kernel mode", async () => {
    const gpu = await extraRuntime({ kernels: 'gpu' });
    try {
      for (const pass of ['forward', 'data', 'weight'] as const) {
        const offered = convCandidates(gpu, winogradShape, pass);
        expect(offered.filter((l) => l === 'im2col' || l === 'winograd4' || l === 'winograd2')).toEqual([]);
        expect(offered).toContain('implicit');
        // The implicit GEMM on the tiled GPU GEMM is the default before measuring.
        expect(offered[0]).toBe('implicitTiled');
      }
    } finally {
      gpu.destroy();
    }
  });

  it('a forced lowering that cannot compute the pass fails with the reason', () => {
    expect(() => convLowering(rt, winogradShape, 'forward', 'col2im')).toThrow(/col2im is a data-gradient lowering/);
    expect(() => convLowering(rt, conv1Shape, 'forward', 'winograd4')).toThrow(/Winograd needs a 3x3 stride-1/);
    if (texture) expect(() => convLowering(rt, winogradShape, 'forward', 'im2col', true)).toThrow(/im2col forward pass takes no bias/);
    expect(() => convLowering(rt, winogradShape, 'forward', 'nonesuch' as 'implicit')).toThrow(/unknown lowering 'nonesuch' \(known: winograd4/);
  });

  // Every row with a forward pass, forced on a shape it supports, agrees with the float64 reference.
  for (const l of CONV_LOWERINGS) {
    if (!l.forward) continue;
    const g = l.unsupported(rt, winogradShape, 'forward', false) === null ? winogradShape : conv1Shape;
    it.skipIf(l.unsupported(rt, g, 'forward', false) !== null)(`${l.name}: forward matches the float64 reference`, async () => {
      const xs = randn(g.n * g.cin * g.h * g.w, 1);
      const ws = randn(g.cout * g.cin * g.kh * g.kw, 2);
      const x = Tensor.fromArray(rt, xs, [g.n, g.cin, g.h, g.w]);
      const w = Tensor.fromArray(rt, ws, [g.cout, g.cin, g.kh, g.kw]);
      const opts = { stride: [g.sh, g.sw] as const, padding: [g.ph, g.pw] as const };
      const y = conv2dForward(x, w, null, opts, undefined, l.name);
      const got = await y.read();
      const ref = conv2dRef(f64(xs), f64(ws), null, g);
      // conv2d.test.ts' bound for every lowering, Winograd included.
      expect(maxRelError(got, ref)).toBeLessThan(1e-5);
      for (const t of [x, w, y]) t.release();
    });
  }
});

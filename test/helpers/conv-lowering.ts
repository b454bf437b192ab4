// What the tests of the conv2d lowerings on the tiled GPU GEMM share (src/kernels/conv2d/*-tiled.test.ts): a case's
// random operands, the three passes of one lowering called directly with the kernels they dispatched, and the
// kernel-name prefix of a tiled GEMM variant.
import { vi } from 'vitest';
import { conv2dGeometry, type Conv2dGeometry, type Conv2dOptions } from '../../src/kernels/conv2d/geometry.js';
import type { ConvLoweringDef } from '../../src/kernels/conv2d/lowering.js';
import { TILED_GEMM_VARIANTS, type TiledGemmName } from '../../src/kernels/matmul/tiled-gemm.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import { Tensor } from '../../src/runtime/tensor.js';
import { randn } from './gradcheck.js';

export interface ConvCase {
  name: string;
  x: [number, number, number, number];
  w: [number, number, number, number];
  opts: Conv2dOptions;
}

/** The case's geometry and N(0,1) operands x, w and gy. */
export function convCaseData(c: ConvCase, seed: number) {
  const g = conv2dGeometry(c.x, c.w, c.opts);
  return {
    g,
    xs: randn(c.x.reduce((a, b) => a * b), seed),
    ws: randn(c.w.reduce((a, b) => a * b), seed + 1),
    gys: randn(g.n * g.cout * g.oh * g.ow, seed + 3),
  };
}

/** The three passes by `l`, and the kernels they dispatched. Pooled buffers hold NaN first: unwritten outputs fail. */
export async function runLoweringPasses(rt: Runtime, l: ConvLoweringDef, g: Conv2dGeometry, xs: Float32Array, ws: Float32Array, gys: Float32Array) {
  const x = Tensor.fromArray(rt, xs, [g.n, g.cin, g.h, g.w]);
  const w = Tensor.fromArray(rt, ws, [g.cout, g.cin, g.kh, g.kw]);
  const gy = Tensor.fromArray(rt, gys, [g.n, g.cout, g.oh, g.ow]);
  for (const shape of [x.shape, w.shape, gy.shape]) for (const t of Array.from({ length: 2 }, () => Tensor.full(rt, shape, NaN))) t.release();
  const spy = vi.spyOn(rt, 'dispatch');
  try {
    const y = l.forward!(x, w, null, g);
    const gx = l.data!(gy, w, g);
    const gw = l.weight!(gy, x, g);
    const kernels = [...new Set(spy.mock.calls.map((call) => call[0].name))];
    const out = { y: (await y.read()) as Float32Array, gx: (await gx.read()) as Float32Array, gw: (await gw.read()) as Float32Array, kernels };
    for (const t of [x, w, gy, y, gx, gw]) t.release();
    return out;
  } finally {
    spy.mockRestore();
  }
}

/** The kernel-name prefix of a tiled variant (tiled-gemm.wgsl.ts names kernels by their tile shape). */
export function tiledKernel(name: TiledGemmName): RegExp {
  const v = TILED_GEMM_VARIANTS[name];
  return new RegExp(`^tiledGemm${v.bm}x${v.bn}x${v.bk}_${v.tm}x${v.tn}_`);
}

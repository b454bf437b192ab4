// max_pool2d (NCHW) forward with argmax indices, and its backward, as torch.nn.functional.max_pool2d.
import { batchChunks } from '../../runtime/chunks.js';
import { Tensor } from '../../runtime/tensor.js';
import {
  POOL_TILE_WG,
  POOL_WG,
  POOL_WG_ROWS,
  maxPoolBackward,
  maxPoolBackwardTiled,
  maxPoolForward,
  maxPoolForwardTiled,
  type PoolTile,
} from './max-pool.wgsl.js';

type Pair = number | readonly [number, number];

export interface MaxPool2dOptions {
  kernel: Pair;
  /** Defaults to the kernel size (as PyTorch). */
  stride?: Pair;
  padding?: Pair;
  dilation?: Pair;
  ceilMode?: boolean;
}

interface Geometry {
  N: number;
  C: number;
  H: number;
  W: number;
  OH: number;
  OW: number;
  k: [number, number];
  s: [number, number];
  p: [number, number];
  d: [number, number];
}

const pair = (v: Pair): [number, number] => (typeof v === 'number' ? [v, v] : [v[0], v[1]]);

/** PyTorch's pooling_output_shape. */
export function poolOutputSize(size: number, k: number, s: number, p: number, d: number, ceilMode: boolean): number {
  let out = Math.floor((size + 2 * p - d * (k - 1) - 1 + (ceilMode ? s - 1 : 0)) / s) + 1;
  // In ceil mode the last window must start inside the input or the left padding.
  if (ceilMode && (out - 1) * s >= size + p) out--;
  return out;
}

function geometry(op: string, inputShape: readonly number[], o: MaxPool2dOptions): Geometry {
  if (inputShape.length !== 4) throw new Error(`${op}: expected an NCHW input, got [${inputShape.join(', ')}]`);
  const [N, C, H, W] = inputShape as [number, number, number, number];
  const k = pair(o.kernel);
  const s = pair(o.stride ?? o.kernel);
  const p = pair(o.padding ?? 0);
  const d = pair(o.dilation ?? 1);
  for (const [name, v, min] of [['kernel', k, 1], ['stride', s, 1], ['padding', p, 0], ['dilation', d, 1]] as const) {
    if (!v.every((x) => Number.isInteger(x) && x >= min)) throw new Error(`${op}: ${name} must be integers >= ${min}, got ${v.join('x')}`);
  }
  for (let a = 0; a < 2; a++) {
    if (p[a]! > k[a]! / 2) throw new Error(`${op}: padding ${p[a]} should be at most half the kernel size ${k[a]}`);
  }
  const OH = poolOutputSize(H, k[0], s[0], p[0], d[0], o.ceilMode ?? false);
  const OW = poolOutputSize(W, k[1], s[1], p[1], d[1], o.ceilMode ?? false);
  if (OH < 1 || OW < 1) throw new Error(`${op}: output size ${OH}x${OW} is too small for input [${inputShape.join(', ')}]`);
  return { N, C, H, W, OH, OW, k, s, p, d };
}

function params(g: Geometry, n: number): Record<string, number> {
  return {
    n,
    H: g.H, W: g.W, OH: g.OH, OW: g.OW,
    kH: g.k[0], kW: g.k[1], sH: g.s[0], sW: g.s[1], pH: g.p[0], pW: g.p[1], dH: g.d[0], dW: g.d[1],
    negInf: -Infinity,
  };
}

/**
 * The tiled kernels' configuration (dilation 1, windows of at most 7x7, strides of at most 4), or null for the
 * general kernels. Forward: 4 outputs per invocation; backward: tiles of sH rows x 4 output columns' worth. vec4
 * loads and stores when rows and output rows are whole vec4s and the tiles align with them.
 */
function tile(g: Geometry): PoolTile | null {
  if (g.d[0] !== 1 || g.d[1] !== 1 || g.k[0] > 7 || g.k[1] > 7 || g.s[0] > 4 || g.s[1] > 4) return null;
  const R = 4;
  const vec = g.W % 4 === 0 && g.OW % 4 === 0;
  return { kH: g.k[0], kW: g.k[1], sH: g.s[0], sW: g.s[1], pH: g.p[0], pW: g.p[1], R, vec };
}

function tileParams(g: Geometry, planes: number, tileRows: number, tileCols: number): Record<string, number> {
  return { invocations: planes * tileRows * tileCols, H: g.H, W: g.W, OH: g.OH, OW: g.OW, tileRows, tileCols, negInf: -Infinity };
}

/** y [N, C, OH, OW] and indices (i32, position ih * W + iw of each maximum within its input plane). */
export function maxPool2dForward(x: Tensor<'f32'>, options: MaxPool2dOptions): { y: Tensor<'f32'>; indices: Tensor<'i32'> } {
  const rt = x.rt;
  const g = geometry('maxPool2dForward', x.shape, options);
  const inPer = g.C * g.H * g.W;
  const outPer = g.C * g.OH * g.OW;
  const y = Tensor.empty(rt, [g.N, g.C, g.OH, g.OW], 'f32', 'maxPool.y');
  const indices = Tensor.empty(rt, [g.N, g.C, g.OH, g.OW], 'i32', 'maxPool.indices');
  const t = tile(g);
  for (const c of batchChunks(rt, g.N, [inPer, outPer])) {
    const n = c.count * outPer;
    if (t) {
      const p = tileParams(g, c.count * g.C, g.OH, Math.ceil(g.OW / t.R));
      rt.dispatch(
        maxPoolForwardTiled(t),
        rt.grid(Math.ceil(p.invocations! / POOL_TILE_WG)),
        { x: x.gpuBindingRange(c.start * inPer, c.count * inPer), y: y.gpuBindingRange(c.start * outPer, n), indices: indices.gpuBindingRange(c.start * outPer, n) },
        p,
      );
      continue;
    }
    rt.dispatch(
      maxPoolForward,
      rt.grid(Math.ceil(n / POOL_WG)),
      { x: x.gpuBindingRange(c.start * inPer, c.count * inPer), y: y.gpuBindingRange(c.start * outPer, n), indices: indices.gpuBindingRange(c.start * outPer, n) },
      params(g, n),
    );
  }
  return { y, indices };
}

/** gx [inputShape] from gy and the forward's indices (same options as the forward). */
export function maxPool2dBackward(gy: Tensor<'f32'>, indices: Tensor<'i32'>, inputShape: readonly number[], options: MaxPool2dOptions): Tensor<'f32'> {
  const rt = gy.rt;
  const g = geometry('maxPool2dBackward', inputShape, options);
  const outShape = [g.N, g.C, g.OH, g.OW];
  for (const t of [gy, indices]) {
    if (t.shape.join() !== outShape.join()) throw new Error(`maxPool2dBackward: expected [${outShape.join(', ')}], got [${t.shape.join(', ')}]`);
  }
  if (indices.dtype !== 'i32') throw new Error(`maxPool2dBackward: indices must be the forward's i32 indices, got ${indices.dtype}`);
  const inPer = g.C * g.H * g.W;
  const outPer = g.C * g.OH * g.OW;
  const gx = Tensor.empty(rt, inputShape, 'f32', 'maxPool.gx');
  const t = tile(g);
  for (const c of batchChunks(rt, g.N, [inPer, outPer])) {
    const rows = c.count * g.C * g.H;
    if (t) {
      const p = tileParams(g, c.count * g.C, Math.ceil(g.H / t.sH), Math.ceil(g.W / (t.sW * t.R)));
      rt.dispatch(
        maxPoolBackwardTiled(t),
        rt.grid(Math.ceil(p.invocations! / POOL_TILE_WG)),
        { gy: gy.gpuBindingRange(c.start * outPer, c.count * outPer), indices: indices.gpuBindingRange(c.start * outPer, c.count * outPer), gx: gx.gpuBindingRange(c.start * inPer, c.count * inPer) },
        p,
      );
      continue;
    }
    rt.dispatch(
      maxPoolBackward,
      rt.grid(Math.ceil(rows / POOL_WG_ROWS)),
      { gy: gy.gpuBindingRange(c.start * outPer, c.count * outPer), indices: indices.gpuBindingRange(c.start * outPer, c.count * outPer), gx: gx.gpuBindingRange(c.start * inPer, c.count * inPer) },
      params(g, rows),
    );
  }
  return gx;
}

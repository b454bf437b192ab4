// Host side of the GPU GEMM (tiled-gemm.wgsl.ts): its variants, which of them a device can run, and the dispatch.
// A new variant is one row of TILED_GEMM_VARIANTS; matmul.ts offers every applicable one to the tuner on GPUs.
import type { BufferSource, Runtime } from '../../runtime/runtime.js';
import { tiledGemmInvocations, tiledGemmKernel, tiledGemmWorkgroupBytes, type TiledGemmGather, type TiledGemmShape } from './tiled-gemm.wgsl.js';

/**
 * The variants: output tile per workgroup (BM x BN), K tile (BK) and outputs per invocation (TM x TN). The 64-
 * invocation ones fit compatibility-mode devices (128 invocations); every one fits the spec's default 16 KiB of
 * workgroup memory.
 */
export const TILED_GEMM_VARIANTS = {
  tiled32x32: { bm: 32, bn: 32, bk: 16, tm: 4, tn: 4 },
  tiled64x64: { bm: 64, bn: 64, bk: 16, tm: 4, tn: 4 },
  tiled64x64r8: { bm: 64, bn: 64, bk: 16, tm: 8, tn: 8 },
  tiled128x64: { bm: 128, bn: 64, bk: 16, tm: 8, tn: 4 },
  tiled128x128: { bm: 128, bn: 128, bk: 8, tm: 8, tn: 8 },
} as const satisfies Record<string, TiledGemmShape>;

export type TiledGemmName = keyof typeof TILED_GEMM_VARIANTS;
export const TILED_GEMM_NAMES = Object.keys(TILED_GEMM_VARIANTS) as TiledGemmName[];

export function isTiledGemm(name: string): name is TiledGemmName {
  return Object.hasOwn(TILED_GEMM_VARIANTS, name);
}

/** Whether the device's limits admit this variant's workgroup size and workgroup memory. */
export function tiledGemmApplies(rt: Runtime, name: TiledGemmName): boolean {
  const v = TILED_GEMM_VARIANTS[name];
  const l = rt.ctx.limits;
  const n = tiledGemmInvocations(v);
  return n <= l.maxComputeInvocationsPerWorkgroup && n <= l.maxComputeWorkgroupSizeX && tiledGemmWorkgroupBytes(v) <= l.maxComputeWorkgroupStorageSize;
}

/** The default before (or without) measuring: the largest tile the shape fills and the device admits. */
export function defaultTiledGemm(rt: Runtime, M: number, N: number): TiledGemmName | null {
  const order: [TiledGemmName, boolean][] = [
    ['tiled128x64', M >= 128 && N >= 64],
    ['tiled64x64', M >= 64 && N >= 64],
    ['tiled64x64r8', M >= 64 && N >= 64],
    ['tiled32x32', true],
  ];
  return order.find(([name, fits]) => fits && tiledGemmApplies(rt, name))?.[0] ?? null;
}

/** One GEMM's operands and shape, as matmul.ts's GemmArgs (which extends this). */
export interface GemmOperands {
  a: BufferSource;
  b: BufferSource;
  c: BufferSource;
  bias?: BufferSource | null;
  M: number;
  N: number;
  K: number;
  /** A is stored [K, M] (else [M, K]). */
  transA?: boolean;
  /** B is stored [N, K] (else [K, N]). */
  transB?: boolean;
  batch?: number;
  /** Element strides between batch items; 0 shares the operand across the batch. */
  aBatch?: number;
  bBatch?: number;
  cBatch?: number;
  /** C += result instead of C = result. */
  accumulate?: boolean;
}

/** A tiled GEMM with gathered operands (tiled-gemm.wgsl.ts' TiledGemmGather) and/or a bias per row of C. */
export interface TiledGemmOperands extends GemmOperands {
  /** The gathered operands' functions: `a` / `b` are then bound as the arrays the functions read. */
  gather?: TiledGemmGather;
  /** Values of gather.params. */
  gatherParams?: Record<string, number>;
  /** bias[m] per row of C instead of bias[n] per column. */
  rowBias?: boolean;
}

/** Records one dispatch of a tiled GEMM variant. */
export function recordTiledGemm(rt: Runtime, name: TiledGemmName, g: TiledGemmOperands): void {
  const { M, N, K } = g;
  if (M === 0 || N === 0) return;
  if (!tiledGemmApplies(rt, name)) throw new Error(`matmul: the ${name} GEMM does not fit this device's workgroup limits`);
  const v = TILED_GEMM_VARIANTS[name];
  const transA = g.transA ?? false;
  const transB = g.transB ?? false;
  const batch = g.batch ?? 1;
  const aBatch = g.aBatch ?? 0;
  const bBatch = g.bBatch ?? 0;
  const cBatch = g.cBatch ?? 0;
  // A quad is one vec4 when its axis (k, or m/n when transposed) and the batch stride are whole vec4s.
  // With a gathered operand, scalar loads throughout (one pipeline for every shape); its params include the gather's.
  const vecA = (transA ? M % 4 === 0 : K % 4 === 0) && aBatch % 4 === 0 && K > 0 && !g.gather;
  const vecB = (transB ? K % 4 === 0 : N % 4 === 0) && bBatch % 4 === 0 && K > 0 && !g.gather;
  const rowBias = !!g.bias && !!g.rowBias;
  const def = tiledGemmKernel({ ...v, transA, transB, vecA, vecB, bias: !!g.bias, rowBias, gather: g.gather });
  const tilesN = Math.ceil(N / v.bn);
  const tilesM = Math.ceil(M / v.bm);
  const [x, y] = rt.grid(tilesN * tilesM);
  const buffers: Record<string, BufferSource> = { [vecA ? 'Av' : 'A']: g.a, [vecB ? 'Bv' : 'B']: g.b, C: g.c };
  if (g.bias) buffers.bias = g.bias;
  rt.dispatch(def, [x, y, batch], buffers, { M, N, K, aBatch, bBatch, cBatch, tilesN, tilesM, accumulate: g.accumulate ? 1 : 0, ...g.gatherParams });
}

// What the conv2d lowerings on the storage-buffer tiled GEMM (winograd-tiled.ts, im2col-tiled.ts) share: the GEMM
// variant of one product of a pass, chosen among the tiled variants the device admits by the runtime's tuner (which
// times the product alone, on operands of its shape, the first time the key is met), and their batch slices.
import { fittingChunks, type BatchChunk } from '../../runtime/chunks.js';
import type { Runtime } from '../../runtime/runtime.js';
import { defaultTiledGemm, recordTiledGemm, TILED_GEMM_NAMES, tiledGemmApplies, type TiledGemmName } from '../matmul/tiled-gemm.js';
import { chooseMeasured } from '../tuning.js';
import { gemmCase, type GemmShape } from '../workloads.js';
import type { Conv2dGeometry } from './geometry.js';
import type { ConvPass } from './lowering.js';

/** 'auto': the tuner's choice; a name forces that variant (tests). */
export type TiledVariantRequest = TiledGemmName | 'auto';

/** One batched product: C[b] (M x N) = op(A[b]) (M x K) @ op(B[b]) (K x N). */
export interface ConvGemmShape extends GemmShape {
  /** A (or B) is shared by every batch item. */
  aShared?: boolean;
  bShared?: boolean;
}

/** Why no tiled variant runs on this device, or null. */
export function tiledGemmUnsupported(rt: Runtime, requested: TiledVariantRequest): string | null {
  if (requested !== 'auto') return tiledGemmApplies(rt, requested) ? null : `the ${requested} GEMM does not fit this device's workgroup limits`;
  return TILED_GEMM_NAMES.some((n) => tiledGemmApplies(rt, n)) ? null : "no tiled GEMM variant fits this device's workgroup limits";
}

/** The conv geometry in a tuning key (with the batch: it sets the GEMM's rows or batch). */
export function convKey(g: Conv2dGeometry): string {
  return `n${g.n} ${g.cin}x${g.h}x${g.w}->${g.cout} k${g.kh}x${g.kw} s${g.sh}x${g.sw} p${g.ph}x${g.pw}`;
}

/**
 * The tiled variant for one product of `lowering`'s `pass` (`product` tells a pass's products apart): forced, or the
 * tuner's among the applicable variants, defaulting to defaultTiledGemm.
 */
export function chooseConvTiledGemm(
  rt: Runtime,
  requested: TiledVariantRequest,
  lowering: string,
  pass: ConvPass,
  product: string,
  g: Conv2dGeometry,
  s: ConvGemmShape,
): TiledGemmName {
  const why = tiledGemmUnsupported(rt, requested);
  if (why) throw new Error(`conv2d (${lowering}): ${why}`);
  if (requested !== 'auto') return requested;
  const candidates = TILED_GEMM_NAMES.filter((n) => tiledGemmApplies(rt, n));
  const fallback = defaultTiledGemm(rt, s.M, s.N) ?? candidates[0]!;
  const key = `conv2d.${lowering}.${pass} ${product} ${convKey(g)} gemm ${s.batch}x${s.M}x${s.N}x${s.K} ${s.transA ? 't' : 'n'}${s.transB ? 't' : 'n'}`;
  const { M, N, K, transA, transB, batch } = s;
  return chooseMeasured(rt, {
    key,
    candidates,
    fallback,
    operands: () => gemmCase(rt, { M, N, K, transA, transB, batch }),
    run({ a, b, c }, v) {
      recordTiledGemm(rt, v, { a, b, c, M, N, K, transA, transB, batch, aBatch: s.aShared ? 0 : M * K, bBatch: s.bShared ? 0 : K * N, cBatch: M * N });
      return c.view(c.shape);
    },
  });
}

/** Bytes a lowering's per-slice scratch buffers (im2col columns, transformed tiles, partial sums) may hold. */
export const SCRATCH_BUDGET = 128 * 1024 * 1024;

/**
 * The largest batch slices whose `bound` tensors (elements per sample, bound at slice offsets) fit the binding limit
 * and whose `scratch` buffers (elements per sample, bound from offset 0) fit it and SCRATCH_BUDGET.
 */
export function tiledConvChunks(rt: Runtime, what: string, n: number, bound: number[], scratch: number[]): BatchChunk[] {
  const scratchLimit = Math.min(rt.bindingLimit, SCRATCH_BUDGET);
  return fittingChunks(
    rt,
    n,
    bound,
    (count) => bound.every((p) => count * p * 4 <= rt.bindingLimit) && scratch.every((p) => count * p * 4 <= scratchLimit),
    what,
  );
}

// Host side of the texture GEMM (texture-gemm.wgsl.ts): operand textures from row-major buffers, and the dispatch.
import type { BufferSource, Runtime } from '../../runtime/runtime.js';
import { Tensor } from '../../runtime/tensor.js';
import { chooseMeasured } from '../tuning.js';
import { stridedTextureWgsl, textureGemmKernel, type TextureGemmOutputKind } from './texture-gemm.wgsl.js';

/**
 * Rows of C per workgroup and texel columns per lane: 64 x 1 (tiles of 64 x 32 columns at subgroup 8) measured
 * fastest on lavapipe of 32-128 rows x 1-2 columns (docs/kernels-performance.md).
 */
export const TEXTURE_GEMM_ROWS = 64;
export const TEXTURE_GEMM_COLS = 1;

/**
 * Rows whose accumulators the loop updates together (texture-gemm.wgsl.ts' `group`), chosen per adapter because
 * what stays in registers depends on the CPU llvmpipe compiles for: on an AVX-512 machine (32 vector registers; an
 * earlier round's AMD EPYC) groups of 4 measured fastest of 2-8; with AVX2's 16 (Zen 3) a group of 4 spills (0.76
 * stack stores per multiply-add pair, against 0.27 for groups of 1) and groups of 1 ran matmul 1024^3-2048^3
 * 20-35% faster. Every group size adds each output's products in the same order: the results are bit-identical.
 * One row per variant: its name (the tuner's choice) and its rows per group. The first is the default.
 */
export const TEXTURE_GEMM_REGISTER_GROUP_ROWS = { g4: 4, g1: 1 } as const;
export type TextureGemmRegisterGroup = keyof typeof TEXTURE_GEMM_REGISTER_GROUP_ROWS;
export const TEXTURE_GEMM_REGISTER_GROUPS = Object.keys(TEXTURE_GEMM_REGISTER_GROUP_ROWS) as readonly TextureGemmRegisterGroup[];
/** The tuner's key for it (in run records' kernelChoices; tests pin it). */
export const TEXTURE_GEMM_REGISTER_GROUP_KEY = 'textureGemm registerGroup';

/**
 * The tuner's case for the register group: one GEMM of ResNet's size (M = N = 512, K = 1024; about 25 ms here), stored
 * as a texture (the loop is the same in every output kind, and this one compiles in about 1 s on lavapipe where the
 * strided stores take 11-33 s).
 */
const REGISTER_GROUP_CASE = { M: 512, N: 512, K: 1024 };

/** The adapter's measured register group (g4 until measured; the tuner measures it before the shapes it notes). */
export function textureGemmRegisterGroup(rt: Runtime): TextureGemmRegisterGroup {
  const { M, N, K } = REGISTER_GROUP_CASE;
  return chooseMeasured(rt, {
    key: TEXTURE_GEMM_REGISTER_GROUP_KEY,
    candidates: TEXTURE_GEMM_REGISTER_GROUPS,
    first: true,
    operands() {
      const a = Tensor.full(rt, [M * K], 0.5, 'case.a');
      const b = Tensor.full(rt, [K * N], 0.01, 'case.b');
      const at = textureFrom(rt, a.buffer, 0, M, K, 1, 'case.a');
      const bt = textureFrom(rt, b.buffer, 0, K, N, 1, 'case.b');
      const ct = rt.textures.acquire({ width: N / 4, height: M, layers: 1 }, 'case.c');
      return {
        at,
        bt,
        ct,
        release: () => {
          [at, bt, ct].forEach((t) => rt.textures.release(t));
          [a, b].forEach((t) => t.release());
        },
      };
    },
    run({ at, bt, ct }, group) {
      recordTextureGemm(rt, { a: at, b: bt, out: { kind: 'texture', texture: ct }, M, N, Kp: K, group });
      return { release: () => undefined };
    },
  });
}

/** Workgroups launched per dispatch (over all batch items), each looping over tiles: enough to balance threads. */
const TEXTURE_GEMM_GROUPS = 512;

/**
 * Whether the texture GEMM can run here: it needs subgroups of a fixed, known size. Only 4 and 8 are generated
 * (CPU drivers; on GPUs subgroups are 32-64 lanes wide and the storage-buffer GEMM is used).
 */
export function textureGemmSupported(rt: Runtime): boolean {
  const sg = rt.ctx.subgroupSize;
  return sg === 4 || sg === 8;
}

/** Reduction steps per k block (4 floats per texel x one texel per lane). */
export function kBlockOf(rt: Runtime): number {
  return 4 * rt.ctx.subgroupSize!;
}

export function roundUp(n: number, multiple: number): number {
  return Math.ceil(n / multiple) * multiple;
}

/**
 * Padded operand sizes for an M x K by K x N product: K to whole k blocks and to rows of 64 floats (copies into
 * textures need 256-byte rows), M to whole row tiles, N to whole column tiles and 64-float rows.
 */
export function textureGemmPadding(rt: Runtime, M: number, N: number, K: number): { Mp: number; Np: number; Kp: number } {
  const sg = rt.ctx.subgroupSize!;
  return { Mp: roundUp(M, TEXTURE_GEMM_ROWS), Np: roundUp(roundUp(N, 4 * sg * TEXTURE_GEMM_COLS), 64), Kp: roundUp(roundUp(K, 4 * sg), 64) };
}

/**
 * Copies `layers` row-major matrices of `rows` x `cols` floats (cols a multiple of 64, matrices back to back from
 * `offset` bytes) into a pooled texture of cols/4 x rows texels per layer. The caller releases it to rt.textures.
 */
export function textureFrom(rt: Runtime, src: GPUBuffer, offset: number, rows: number, cols: number, layers: number, label: string): GPUTexture {
  if (cols % 64 !== 0) throw new Error(`textureFrom(${label}): rows of ${cols} floats; copies need a multiple of 64`);
  const size = { width: cols / 4, height: rows, layers };
  const tex = rt.textures.acquire(size, label);
  rt.copyToTexture(src, offset, cols * 4, tex, size);
  return tex;
}

export interface StridedView {
  layers: number;
  rows: number;
  cols: number;
  /** Element strides of a layer, a row and a column. */
  ls: number;
  rs: number;
  cs: number;
  /**
   * Rows in groups of `rowGroup` (stride `rowGroupStride` between groups; rs within one), likewise columns: an
   * operand stacking samples along one dimension. Default: no groups.
   */
  rowGroup?: number;
  rowGroupStride?: number;
  colGroup?: number;
  colGroupStride?: number;
  /** Padded texture size: rows and columns (a multiple of 4). */
  Rp: number;
  Cp: number;
}

const NO_GROUPS = 0xffffffff;

/** A pooled texture holding a strided view of `src` as a GEMM operand (texture-gemm.wgsl.ts' stridedTexture). */
export function stridedTexture(rt: Runtime, src: BufferSource, v: StridedView, label: string): GPUTexture {
  const T = rt.textures.acquire({ width: v.Cp / 4, height: v.Rp, layers: v.layers }, label);
  rt.dispatch(stridedTextureWgsl, rt.grid(Math.ceil((v.layers * v.Rp * (v.Cp / 4)) / 64)), { src, T }, {
    rows: v.rows,
    cols: v.cols,
    ls: v.ls,
    rs: v.rs,
    cs: v.cs,
    Rp: v.Rp,
    Cq: v.Cp / 4,
    layers: v.layers,
    rg: v.rowGroup ?? NO_GROUPS,
    rgs: v.rowGroupStride ?? 0,
    cg: v.colGroup ?? NO_GROUPS,
    cgs: v.colGroupStride ?? 0,
  });
  return T;
}

/** Where C goes (see texture-gemm.wgsl.ts): a texture in B's layout, or floats at strided offsets. */
export type TextureGemmOutput =
  | { kind: 'texture'; texture: GPUTexture }
  | {
      kind: 'strided';
      c: BufferSource;
      /** Offsets and strides in floats: row m at (m / rowsPerGroup) * groupStride + (m % rowsPerGroup) * rowStride. */
      base?: number;
      batchStride?: number;
      rowsPerGroup?: number;
      groupStride?: number;
      rowStride: number;
      colStride: number;
      /** Add to what C holds (batch slices summed in order). */
      accumulate?: boolean;
    };

export interface TextureGemmArgs {
  a: GPUTexture;
  b: GPUTexture;
  out: TextureGemmOutput;
  M: number;
  N: number;
  /** Reduction length per layer, padded to whole k blocks (the padding zero in both operands). */
  Kp: number;
  /** Layers summed per batch item (default 1). */
  kLayers?: number;
  batch?: number;
  /** Layers between batch items of A and of B (0: shared). Default kLayers. */
  aLayers?: number;
  bLayers?: number;
  /** The register group (default: the adapter's measured one, textureGemmRegisterGroup). */
  group?: TextureGemmRegisterGroup;
}

/** Records C (+)= A @ B from operand textures (see texture-gemm.wgsl.ts for layouts). */
export function recordTextureGemm(rt: Runtime, g: TextureGemmArgs): void {
  const sg = rt.ctx.subgroupSize;
  if (sg !== 4 && sg !== 8) throw new Error('recordTextureGemm: needs subgroups of size 4 or 8');
  const steps = 4 * sg;
  if (g.Kp % steps !== 0) throw new Error(`recordTextureGemm: Kp ${g.Kp} is not a multiple of ${steps}`);
  const kLayers = g.kLayers ?? 1;
  const batch = g.batch ?? 1;
  const tilesN = Math.ceil(g.N / (steps * TEXTURE_GEMM_COLS));
  const tilesM = Math.ceil(g.M / TEXTURE_GEMM_ROWS);
  checkTexture('A', g.a, g.Kp / 4, tilesM * TEXTURE_GEMM_ROWS);
  checkTexture('B', g.b, tilesN * sg * TEXTURE_GEMM_COLS, g.Kp);
  const o = g.out;
  const params: Record<string, number> = {
    kBlocks: g.Kp / steps,
    kLayers,
    aLayers: g.aLayers ?? kLayers,
    bLayers: g.bLayers ?? kLayers,
    tilesN,
    tiles: tilesN * tilesM,
  };
  let kind: TextureGemmOutputKind;
  let c: BufferSource | GPUTexture;
  if (o.kind === 'texture') {
    checkTexture('C', o.texture, tilesN * sg * TEXTURE_GEMM_COLS, tilesM * TEXTURE_GEMM_ROWS);
    kind = 'texture';
    c = o.texture;
  } else {
    kind = o.accumulate ? 'strided-accumulate' : 'strided';
    c = o.c;
    Object.assign(params, {
      cBase: o.base ?? 0,
      cBatch: o.batchStride ?? 0,
      rowsPerGroup: o.rowsPerGroup ?? 0xffffffff,
      groupStride: o.groupStride ?? 0,
      rowStride: o.rowStride,
      colStride: o.colStride,
      M: g.M,
      N: g.N,
    });
  }
  const groups = Math.min(tilesN * tilesM, Math.ceil(TEXTURE_GEMM_GROUPS / batch));
  const group = TEXTURE_GEMM_REGISTER_GROUP_ROWS[g.group ?? textureGemmRegisterGroup(rt)];
  rt.dispatch(textureGemmKernel({ sg, rows: TEXTURE_GEMM_ROWS, cols: TEXTURE_GEMM_COLS, group, output: kind }), [...rt.grid(groups), batch], { A: g.a, B: g.b, C: c }, params);
}

function checkTexture(name: string, t: GPUTexture, minWidth: number, minHeight: number): void {
  if (t.width < minWidth || t.height < minHeight) {
    throw new Error(`recordTextureGemm: texture ${name} is ${t.width}x${t.height} texels, needs at least ${minWidth}x${minHeight}`);
  }
}

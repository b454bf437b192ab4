import { describe, expect, it } from 'vitest';
import { testRuntime } from '../../../test/helpers/gpu.js';
import { maxRelError, randn } from '../../../test/helpers/gradcheck.js';
import type { Runtime } from '../../runtime/runtime.js';
import { Tensor } from '../../runtime/tensor.js';
import { matmulRef } from './matmul.reference.js';
import {
  recordTextureGemm,
  textureFrom,
  textureGemmPadding,
  textureGemmSupported,
  TEXTURE_GEMM_COLS,
  TEXTURE_GEMM_REGISTER_GROUPS,
  TEXTURE_GEMM_ROWS,
  type TextureGemmRegisterGroup,
} from './texture-gemm.js';

// The texture GEMM against a float64 reference: every output kind in every register group (each group's results
// bit-identical to the first's), reductions over several layers, batches with a shared operand, and sizes that are
// not whole tiles (the padding of k must be zeros in both operands; rows past M and columns past N are never
// stored). Metric: maxRelError = max |gpu - ref| / max |ref|; f32 sums of at most a few hundred products of N(0,1)
// values are within 1e-6 of that scale, a missing or doubled k block is off by 1e-2.
const BOUND = 1e-5;

/** `layers` row-major matrices rows x cols, zero-padded to Rp x Cp, as a texture (cols on the texel axis). */
function padded(rt: Runtime, data: Float32Array[], rows: number, cols: number, Rp: number, Cp: number): { tex: GPUTexture; buf: Tensor<'f32'> } {
  const out = new Float32Array(data.length * Rp * Cp);
  data.forEach((m, l) => {
    for (let r = 0; r < rows; r++) out.set(m.subarray(r * cols, (r + 1) * cols), (l * Rp + r) * Cp);
  });
  const buf = Tensor.fromArray(rt, out, [out.length]);
  return { tex: textureFrom(rt, buf.buffer, 0, Rp, Cp, data.length, 'test'), buf };
}

/**
 * Reads a texture written by the GEMM ('texture' output) back as its first `layers` layers of rows x cols floats
 * (the pool may hand out a texture larger than asked for in any dimension).
 */
async function readTexture(rt: Runtime, tex: GPUTexture, rows: number, cols: number, layers: number): Promise<Float32Array[]> {
  const bytesPerRow = Math.ceil((tex.width * 16) / 256) * 256;
  const size = bytesPerRow * tex.height * tex.depthOrArrayLayers;
  const staging = rt.device.createBuffer({ size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  await rt.sync();
  const enc = rt.device.createCommandEncoder();
  enc.copyTextureToBuffer({ texture: tex }, { buffer: staging, bytesPerRow, rowsPerImage: tex.height }, [tex.width, tex.height, tex.depthOrArrayLayers]);
  rt.device.queue.submit([enc.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const all = new Float32Array(staging.getMappedRange().slice(0));
  staging.destroy();
  return Array.from({ length: layers }, (_, l) => {
    const m = new Float32Array(rows * cols);
    for (let r = 0; r < rows; r++) m.set(all.subarray((l * tex.height + r) * (bytesPerRow / 4), (l * tex.height + r) * (bytesPerRow / 4) + cols), r * cols);
    return m;
  });
}

interface Case {
  name: string;
  M: number;
  N: number;
  K: number;
  /** Batch items, each summing kLayers products; B shared across the batch when sharedB. */
  batch: number;
  kLayers: number;
  sharedB?: boolean;
}

const cases: Case[] = [
  { name: 'one tile', M: 32, N: 64, K: 32, batch: 1, kLayers: 1 },
  { name: 'partial tiles and k padding (M 45, N 70, K 50)', M: 45, N: 70, K: 50, batch: 1, kLayers: 1 },
  { name: 'batch of 3 with a shared B', M: 33, N: 64, K: 96, batch: 3, kLayers: 1, sharedB: true },
  { name: 'reduction over 3 layers, batch of 2', M: 20, N: 36, K: 40, batch: 2, kLayers: 3 },
  { name: 'many tiles (M 200, N 192, K 128)', M: 200, N: 192, K: 128, batch: 2, kLayers: 1 },
];

/** C[b] = sum over l of A[b][l] @ B[b][l] in float64. */
function reference(c: Case, A: Float32Array[], B: Float32Array[]): Float64Array[] {
  return Array.from({ length: c.batch }, (_, b) => {
    const acc = new Float64Array(c.M * c.N);
    for (let l = 0; l < c.kLayers; l++) {
      const prod = matmulRef(Float64Array.from(A[b * c.kLayers + l]!), Float64Array.from(B[c.sharedB ? l : b * c.kLayers + l]!), c.M, c.N, c.K);
      for (let i = 0; i < acc.length; i++) acc[i]! += prod[i]!;
    }
    return acc;
  });
}

/** The runtime, known while tests are collected: on an adapter without the texture GEMM these are visible skips. */
const NO_TEXTURE = !textureGemmSupported(await testRuntime());

type OutputKind = 'texture' | 'strided' | 'strided-accumulate' | 'row-major';

/** C of case c computed by the texture GEMM with the given register group and output kind, per batch item. */
async function textureGemmOutputs(rt: Runtime, c: Case, ci: number, kind: OutputKind, group: TextureGemmRegisterGroup): Promise<{ got: Float32Array[]; ref: Float64Array[] }> {
  const { Mp, Np, Kp } = textureGemmPadding(rt, c.M, c.N, c.K);
  const A = Array.from({ length: c.batch * c.kLayers }, (_, i) => randn(c.M * c.K, 100 * ci + i));
  const B = Array.from({ length: (c.sharedB ? 1 : c.batch) * c.kLayers }, (_, i) => randn(c.K * c.N, 100 * ci + 50 + i));
  const a = padded(rt, A, c.M, c.K, Mp, Kp);
  const b = padded(rt, B, c.K, c.N, Kp, Np);
  const ref = reference(c, A, B);
  const common = { a: a.tex, b: b.tex, M: c.M, N: c.N, Kp, kLayers: c.kLayers, batch: c.batch, bLayers: c.sharedB ? 0 : c.kLayers, group };
  let got: Float32Array[];
  if (kind === 'texture') {
    const out = rt.textures.acquire({ width: Np / 4, height: Mp, layers: c.batch }, 'C');
    recordTextureGemm(rt, { ...common, out: { kind: 'texture', texture: out } });
    got = await readTexture(rt, out, c.M, c.N, c.batch);
    rt.textures.release(out);
  } else if (kind === 'strided' || kind === 'strided-accumulate') {
    // Stored transposed (column-major), with a gap between batch items: exercises every stride; the
    // accumulating variant adds to a C that holds 1.
    const accumulate = kind === 'strided-accumulate';
    const C = Tensor.full(rt, [c.batch * (c.M * c.N + 7)], accumulate ? 1 : NaN);
    recordTextureGemm(rt, { ...common, out: { kind: 'strided', c: C, batchStride: c.M * c.N + 7, rowStride: 1, colStride: c.M, accumulate } });
    const all = await C.read();
    got = Array.from({ length: c.batch }, (_, z) => {
      const m = new Float32Array(c.M * c.N);
      for (let i = 0; i < c.M; i++) for (let j = 0; j < c.N; j++) m[i * c.N + j] = all[z * (c.M * c.N + 7) + j * c.M + i]! - (accumulate ? 1 : 0);
      return m;
    });
    C.release();
  } else {
    // Row-major rows of Np floats, rows in groups of 5 with a gap after each group (rowsPerGroup).
    const groupStride = 5 * Np + 3;
    const per = Math.ceil(c.M / 5) * groupStride;
    const C = Tensor.full(rt, [c.batch * per], NaN);
    recordTextureGemm(rt, { ...common, out: { kind: 'strided', c: C, batchStride: per, rowsPerGroup: 5, groupStride, rowStride: Np, colStride: 1 } });
    const all = await C.read();
    got = Array.from({ length: c.batch }, (_, z) => {
      const m = new Float32Array(c.M * c.N);
      for (let i = 0; i < c.M; i++) for (let j = 0; j < c.N; j++) m[i * c.N + j] = all[z * per + Math.floor(i / 5) * groupStride + (i % 5) * Np + j]!;
      return m;
    });
    C.release();
  }
  rt.textures.release(a.tex);
  rt.textures.release(b.tex);
  a.buf.release();
  b.buf.release();
  return { got, ref };
}

describe('texture GEMM vs float64', () => {
  // Every register group the tuner may choose (TEXTURE_GEMM_REGISTER_GROUPS), each forced here; the ones after the
  // first must also match the first bit for bit (every group adds each output's products in the same order).
  for (const group of TEXTURE_GEMM_REGISTER_GROUPS) {
    for (const [ci, c] of cases.entries()) {
      for (const kind of ['texture', 'strided', 'strided-accumulate', 'row-major'] as const) {
        it.skipIf(NO_TEXTURE)(`${c.name}: ${kind} output, register group ${group}`, async () => {
          const rt = await testRuntime();
          const { got, ref } = await textureGemmOutputs(rt, c, ci, kind, group);
          const err = Math.max(...got.map((g, z) => maxRelError(g, ref[z]!)));
          console.log(`texture GEMM ${c.name}, ${kind}, ${group}: ${err.toExponential(2)} (tiles ${TEXTURE_GEMM_ROWS} x ${4 * rt.ctx.subgroupSize! * TEXTURE_GEMM_COLS})`);
          expect(err).toBeLessThan(BOUND);
          const first = TEXTURE_GEMM_REGISTER_GROUPS[0];
          if (group !== first) {
            const base = (await textureGemmOutputs(rt, c, ci, kind, first)).got;
            got.forEach((g, z) => expect(g, `batch item ${z}: ${group} vs ${first}`).toEqual(base[z]));
          }
        });
      }
    }
  }

  it.skipIf(NO_TEXTURE)('rejects a reduction length that is not whole k blocks and textures too small for the tiles', async () => {
    const rt = await testRuntime();
    // Made here, not taken from the pool, which may hand out a larger free texture.
    const texture = (width: number, height: number, label: string): GPUTexture =>
      rt.device.createTexture({ size: [width, height, 1], format: 'rgba32float', usage: GPUTextureUsage.TEXTURE_BINDING, label });
    const a = texture(16, 32, 'A');
    const b = texture(16, 64, 'B');
    const c = Tensor.empty(rt, [32 * 64]);
    const out = { kind: 'strided', c, rowStride: 64, colStride: 1 } as const;
    expect(() => recordTextureGemm(rt, { a, b, out, M: 32, N: 64, Kp: 40 })).toThrow(/Kp 40 is not a multiple/);
    expect(() => recordTextureGemm(rt, { a, b, out, M: 33, N: 64, Kp: 64 })).toThrow(/texture A is 16x32 texels, needs at least 16x64/);
    a.destroy();
    b.destroy();
    c.release();
  });
});

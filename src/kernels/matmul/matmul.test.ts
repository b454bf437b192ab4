import { describe, expect, it } from 'vitest';
import { batchChunks } from '../../runtime/chunks.js';
import { Tensor } from '../../runtime/tensor.js';
import { withBindingLimit } from '../../../test/helpers/binding-limit.js';
import { expectFixtureOutputs, loadOpFixture, toTensor, type FixtureTensor, type LayerFixture } from '../../../test/helpers/fixtures.js';
import { testRuntime } from '../../../test/helpers/gpu.js';
import { expectOpError } from '../../../test/helpers/op-errors.js';
import { dot, f64, maxRelError, numericGrad, randn } from '../../../test/helpers/gradcheck.js';
import {
  linearBackwardBias,
  linearBackwardInput,
  linearBackwardWeight,
  linearForward,
  matmul,
  recordGemm,
  type GemmKernel,
  type GemmTiling,
} from './matmul.js';
import { textureGemmSupported } from './texture-gemm.js';
import { TILED_GEMM_NAMES, TILED_GEMM_VARIANTS, tiledGemmApplies, type TiledGemmName } from './tiled-gemm.js';
import type { Runtime } from '../../runtime/runtime.js';
import { linearRef, matmulRef } from './matmul.reference.js';

// Error metric throughout: maxRelError = max |gpu - ref| / max |ref| (see test/helpers/gradcheck.ts).
// f32 sums of K products with inputs ~N(0,1) drift about sqrt(K) * 6e-8 relative; 1e-5 leaves a wide margin.
const FWD_TOL = 1e-5;

/**
 * Whether a tiled GEMM variant is tested on this adapter. Every one is, where the device's limits admit it, except
 * on SwiftShader (the browser project's adapter here, and npm run test:swiftshader), whose compiler takes minutes
 * over the larger tiled kernels: there only the smallest runs, and the others are reported as skipped. lavapipe
 * (the main suite, and HOTDOG_KERNELS=gpu in CI) runs them all.
 */
function tiledTestedHere(rt: Runtime, name: TiledGemmName, skip: () => void): boolean {
  if (!tiledGemmApplies(rt, name)) return false;
  const i = rt.deviceCtx.adapterInfo;
  if (name !== 'tiled32x32' && /swiftshader/i.test(`${i.vendor} ${i.architecture} ${i.device} ${i.description}`)) skip();
  return true;
}

async function readF64(t: Tensor): Promise<Float64Array> {
  return f64((await t.read()) as Float32Array);
}

/** The runtime, known while tests are collected: the texture GEMM's tests are visible skips where it cannot run. */
const NO_TEXTURE = !textureGemmSupported(await testRuntime());

describe('matmul', () => {
  const shapes: [number, number, number][] = [
    [1, 1, 1],
    [3, 5, 7],
    [17, 33, 9],
    [37, 130, 131],
    [64, 64, 64],
    [9, 12, 16],
  ];
  // Both variants: the storage-buffer GEMM, and operands in textures for the texture GEMM (where it runs).
  for (const variant of ['storage', 'texture'] as const) {
    for (const [M, N, K] of shapes) {
      for (const transA of [false, true]) {
        for (const transB of [false, true]) {
          it.skipIf(variant === 'texture' && NO_TEXTURE)(`${variant}: ${M}x${K} @ ${K}x${N}, transA=${transA} transB=${transB}`, async () => {
            const rt = await testRuntime();
            const a = randn(M * K, M * 1000 + K);
            const b = randn(K * N, N * 1000 + K + 7);
            const A = Tensor.fromArray(rt, a, transA ? [K, M] : [M, K]);
            const B = Tensor.fromArray(rt, b, transB ? [N, K] : [K, N]);
            const C = matmul(A, B, { transA, transB, variant });
            expect(C.shape).toEqual([M, N]);
            const err = maxRelError(await C.read(), matmulRef(f64(a), f64(b), M, N, K, transA, transB));
            expect(err).toBeLessThan(FWD_TOL);
            for (const t of [A, B, C]) t.release();
          });
        }
      }
    }
  }

  for (const variant of ['storage', 'texture'] as const) it.skipIf(variant === 'texture' && NO_TEXTURE)(`${variant}: batched, with a shared operand`, async () => {
    const rt = await testRuntime();
    const [batch, M, N, K] = [3, 13, 17, 19];
    const a = randn(batch * M * K, 1);
    const b = randn(K * N, 2);
    const A = Tensor.fromArray(rt, a, [batch, M, K]);
    const B = Tensor.fromArray(rt, b, [K, N]);
    const C = matmul(A, B, { variant });
    expect(C.shape).toEqual([batch, M, N]);
    const got = await C.read();
    for (let i = 0; i < batch; i++) {
      const ref = matmulRef(f64(a.subarray(i * M * K, (i + 1) * M * K)), f64(b), M, N, K);
      expect(maxRelError(got.subarray(i * M * N, (i + 1) * M * N), ref)).toBeLessThan(FWD_TOL);
    }
    // Both batched, transposed B.
    const b3 = randn(batch * N * K, 3);
    const B3 = Tensor.fromArray(rt, b3, [batch, N, K]);
    const C3 = matmul(A, B3, { transB: true, variant });
    const got3 = await C3.read();
    for (let i = 0; i < batch; i++) {
      const ref = matmulRef(f64(a.subarray(i * M * K, (i + 1) * M * K)), f64(b3.subarray(i * N * K, (i + 1) * N * K)), M, N, K, false, true);
      expect(maxRelError(got3.subarray(i * M * N, (i + 1) * M * N), ref)).toBeLessThan(FWD_TOL);
    }
    for (const t of [A, B, C, B3, C3]) t.release();
  });

  // The tile shapes picked for GPUs (wide workgroups, two column groups) run here too, so they are tested.
  const tilings: GemmTiling[] = [
    { tm: 8, tnv: 1, wg: 64 },
    { tm: 4, tnv: 2, wg: 32 },
    { tm: 6, tnv: 2, wg: 8 },
  ];
  for (const tiling of tilings) {
    it(`tiling tm=${tiling.tm} tnv=${tiling.tnv} wg=${tiling.wg}`, async () => {
      const rt = await testRuntime();
      for (const [M, N, K, transA, transB] of [
        [45, 300, 36, false, false],
        [45, 301, 37, true, true],
      ] as [number, number, number, boolean, boolean][]) {
        const a = randn(M * K, 5);
        const b = randn(K * N, 6);
        const A = Tensor.fromArray(rt, a);
        const B = Tensor.fromArray(rt, b);
        const C = Tensor.empty(rt, [M, N]);
        recordGemm(rt, { a: A, b: B, c: C, M, N, K, transA, transB, tiling });
        expect(maxRelError(await C.read(), matmulRef(f64(a), f64(b), M, N, K, transA, transB))).toBeLessThan(FWD_TOL);
        for (const t of [A, B, C]) t.release();
      }
    });
  }

  // The GPU GEMM's variants (tiled-gemm.ts), each forced on shapes of several tiles with partial edge tiles and a
  // K remainder (scalar loads), on whole tiles with every axis a multiple of 4 (vec4 loads), and on a tiny shape.
  for (const name of TILED_GEMM_NAMES) {
    const { bm, bn, bk } = TILED_GEMM_VARIANTS[name];
    const tiledShapes: [number, number, number][] = [
      [bm + 3, 2 * bn + 5, 3 * bk + 7],
      [2 * bm, bn, 4 * bk],
      [5, 7, 3],
    ];
    it(`${name}: forward vs float64 on every transposition`, async (ctx) => {
      const rt = await testRuntime();
      if (!tiledTestedHere(rt, name, () => ctx.skip())) return;
      for (const [M, N, K] of tiledShapes) {
        for (const transA of [false, true]) {
          for (const transB of [false, true]) {
            const a = randn(M * K, M * 1000 + K);
            const b = randn(K * N, N * 1000 + K + 7);
            const A = Tensor.fromArray(rt, a, transA ? [K, M] : [M, K]);
            const B = Tensor.fromArray(rt, b, transB ? [N, K] : [K, N]);
            const C = matmul(A, B, { transA, transB, variant: name });
            const err = maxRelError(await C.read(), matmulRef(f64(a), f64(b), M, N, K, transA, transB));
            expect(err, `${M}x${K} @ ${K}x${N} transA=${transA} transB=${transB}`).toBeLessThan(FWD_TOL);
            for (const t of [A, B, C]) t.release();
          }
        }
      }
    });
  }

  for (const name of TILED_GEMM_NAMES) it(`${name}: batched, with a shared operand`, async (ctx) => {
    const rt = await testRuntime();
    if (!tiledTestedHere(rt, name, () => ctx.skip())) return;
    const [batch, M, N, K] = [3, 36, 20, 24];
    const a = randn(batch * M * K, 1);
    const b = randn(K * N, 2);
    const A = Tensor.fromArray(rt, a, [batch, M, K]);
    const B = Tensor.fromArray(rt, b, [K, N]);
    const b3 = randn(batch * N * K, 3);
    const B3 = Tensor.fromArray(rt, b3, [batch, N, K]);
    const C = matmul(A, B, { variant: name });
    const C3 = matmul(A, B3, { transB: true, variant: name });
    const [got, got3] = [await C.read(), await C3.read()];
    for (let i = 0; i < batch; i++) {
      const ai = f64(a.subarray(i * M * K, (i + 1) * M * K));
      expect(maxRelError(got.subarray(i * M * N, (i + 1) * M * N), matmulRef(ai, f64(b), M, N, K))).toBeLessThan(FWD_TOL);
      const ref3 = matmulRef(ai, f64(b3.subarray(i * N * K, (i + 1) * N * K)), M, N, K, false, true);
      expect(maxRelError(got3.subarray(i * M * N, (i + 1) * M * N), ref3)).toBeLessThan(FWD_TOL);
    }
    for (const t of [A, B, C, B3, C3]) t.release();
  });

  it('rejects mismatched shapes with errors naming them, before any GPU work', async () => {
    const rt = await testRuntime();
    const z = (shape: number[]) => Tensor.zeros(rt, shape);
    const [A, B, v, A3, B3] = [z([3, 4]), z([5, 6]), z([3]), z([2, 3, 4]), z([3, 4, 5])];
    expectOpError(rt, () => matmul(A, B), /^matmul: inner dimensions differ \(op\(a\) is 3x4, op\(b\) is 5x6\)$/);
    expectOpError(rt, () => matmul(A, B, { transA: true, transB: true }), /^matmul: inner dimensions differ \(op\(a\) is 4x3, op\(b\) is 6x5\)$/);
    expectOpError(rt, () => matmul(v, A), /^matmul: operands must be 2-D or 3-D, got \[3\] and \[3, 4\]$/);
    expectOpError(rt, () => matmul(A3, B3), /^matmul: batch sizes 2 and 3 differ$/);
    for (const t of [A, B, v, A3, B3]) t.release();
  });
});

interface LinearCase {
  n: number;
  inF: number;
  outF: number;
  bias: boolean;
}

function linearLossGrads(x: Tensor<'f32'>, w: Tensor<'f32'>, gy: Tensor<'f32'>, bias: boolean, kernel: GemmKernel | 'auto' = 'auto'): Tensor<'f32'>[] {
  const out = [linearBackwardInput(gy, w, { kernel }), linearBackwardWeight(gy, x, { kernel })];
  if (bias) out.push(linearBackwardBias(gy));
  return out;
}

describe('linear', () => {
  const cases: LinearCase[] = [
    { n: 1, inF: 1, outF: 1, bias: true },
    { n: 5, inF: 7, outF: 3, bias: true },
    { n: 4, inF: 8, outF: 2, bias: false },
    { n: 33, inF: 20, outF: 9, bias: true },
  ];
  // The default kernel, then each tiled GEMM variant forced, on a shape with every axis a multiple of 4 (vec4 loads,
  // the forward's transposed B included) and one without.
  const runs: [GemmKernel | 'auto', LinearCase][] = [
    ...cases.map((c): [GemmKernel | 'auto', LinearCase] => ['auto', c]),
    ...TILED_GEMM_NAMES.flatMap((k): [GemmKernel, LinearCase][] => [
      [k, { n: 36, inF: 20, outF: 12, bias: true }],
      [k, { n: 37, inF: 23, outF: 9, bias: false }],
    ]),
  ];
  for (const [kernel, c] of runs) {
    it(`${kernel === 'auto' ? '' : `${kernel}: `}forward and gradient check, N=${c.n} in=${c.inF} out=${c.outF} bias=${c.bias}`, async (ctx) => {
      const rt = await testRuntime();
      if (kernel !== 'auto' && !tiledTestedHere(rt, kernel as TiledGemmName, () => ctx.skip())) return;
      const { n, inF, outF } = c;
      const x = randn(n * inF, 11);
      const w = randn(outF * inF, 12);
      const b = c.bias ? randn(outF, 13) : null;
      const r = randn(n * outF, 14);
      const X = Tensor.fromArray(rt, x, [n, inF]);
      const W = Tensor.fromArray(rt, w, [outF, inF]);
      const B = b ? Tensor.fromArray(rt, b, [outF]) : null;
      const R = Tensor.fromArray(rt, r, [n, outF]);
      const Y = linearForward(X, W, B, { kernel });
      expect(maxRelError(await Y.read(), linearRef(f64(x), f64(w), b && f64(b), n, inF, outF))).toBeLessThan(FWD_TOL);

      // loss = sum(y * R): its gradient w.r.t. y is R. Central differences of the float64 reference (exact up to
      // rounding for a linear function) vs the GPU backward; bound 1e-4 on maxRelError.
      const inputs = [f64(x), f64(w), ...(b ? [f64(b)] : [])];
      const loss = (v: Float64Array[]): number => dot(linearRef(v[0]!, v[1]!, v[2] ?? null, n, inF, outF), r);
      const grads = linearLossGrads(X, W, R, c.bias, kernel);
      for (let i = 0; i < grads.length; i++) {
        const err = maxRelError(await readF64(grads[i]!), numericGrad(loss, inputs, i));
        console.log(`linear gradcheck ${kernel} ${['x', 'w', 'b'][i]} [${n}, ${inF}] -> ${outF}: ${err.toExponential(2)}`);
        expect(err, `gradient ${['x', 'w', 'b'][i]}`).toBeLessThan(1e-4);
      }
      for (const t of [X, W, B, R, Y, ...grads]) t?.release();
    });
  }

  it('rejects mismatched shapes with errors naming them, before any GPU work', async () => {
    const rt = await testRuntime();
    const z = (shape: number[]) => Tensor.zeros(rt, shape);
    const [x, w, x3, x5, b5, gy, w45, w3d, gy4, x35, gy1] = [z([2, 3]), z([4, 3]), z([2, 3, 1]), z([2, 5]), z([5]), z([2, 4]), z([4, 5]), z([4, 5, 1]), z([3, 4]), z([3, 5]), z([4])];
    expectOpError(rt, () => linearForward(x3, w, null), /^linear: x must be \[N, in\] and w \[out, in\], got \[2, 3, 1\] and \[4, 3\]$/);
    expectOpError(rt, () => linearForward(x5, w, null), /^linear: x has 5 features but w expects 3$/);
    expectOpError(rt, () => linearForward(x, w, b5), /^linear: bias must be \[4\], got \[5\]$/);
    expectOpError(rt, () => linearBackwardInput(x, w45), /^linearBackwardInput: gy \[2, 3\] does not match w \[4, 5\]$/);
    expectOpError(rt, () => linearBackwardInput(gy, w3d), /^linearBackwardInput: gy \[2, 4\] does not match w \[4, 5, 1\]$/);
    expectOpError(rt, () => linearBackwardWeight(gy4, x), /^linearBackwardWeight: gy \[3, 4\] and x \[2, 3\] do not match$/);
    expectOpError(rt, () => linearBackwardWeight(gy, x35), /^linearBackwardWeight: gy \[2, 4\] and x \[3, 5\] do not match$/);
    expectOpError(rt, () => linearBackwardBias(gy1), /^linearBackwardBias: gy must be \[N, out\], got \[4\]$/);
    for (const t of [x, w, x3, x5, b5, gy, w45, w3d, gy4, x35, gy1]) t.release();
  });

  for (const kernel of ['auto', ...TILED_GEMM_NAMES] as const) it(`${kernel}: splits the batch over a tiny binding limit: forward and data gradient bitwise equal, weight and bias gradients within 1e-6`, async (ctx) => {
    const rt = await testRuntime();
    if (kernel !== 'auto' && !tiledTestedHere(rt, kernel, () => ctx.skip())) return;
    const [n, inF, outF] = [300, 24, 20];
    const X = Tensor.fromArray(rt, randn(n * inF, 21), [n, inF]);
    const W = Tensor.fromArray(rt, randn(outF * inF, 22), [outF, inF]);
    const B = Tensor.fromArray(rt, randn(outF, 23), [outF]);
    const G = Tensor.fromArray(rt, randn(n * outF, 24), [n, outF]);
    const run = async (): Promise<{ values: Float32Array[]; dispatches: number }> => {
      const d0 = rt.stats.dispatches;
      const outs = [linearForward(X, W, B, { kernel }), ...linearLossGrads(X, W, G, true, kernel)];
      const dispatches = rt.stats.dispatches - d0;
      const values = await Promise.all(outs.map((t) => t.read() as Promise<Float32Array>));
      for (const t of outs) t.release();
      return { values, dispatches };
    };
    const whole = await run();
    const split = await withBindingLimit(rt, 16 * 1024, run);
    // It really was sliced: 96 bytes per row of x, so at most 170 rows (160 for offset alignment) per binding, and
    // forward, data gradient and weight gradient each dispatch once per slice (the bias gradient too).
    const slices = await withBindingLimit(rt, 16 * 1024, async () => batchChunks(rt, n, [inF, outF]).length);
    expect(slices).toBe(2);
    expect(whole.dispatches).toBe(4);
    expect(split.dispatches).toBe(4 * slices);
    // Forward and data gradient: every row is computed alone, the same way in any slice, so bitwise equal.
    const bits = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));
    expect(bits(split.values[0]!), 'y').toEqual(bits(whole.values[0]!));
    expect(bits(split.values[1]!), 'gx').toEqual(bits(whole.values[1]!));
    // Weight and bias gradients sum over the batch: slices add in another order.
    expect(maxRelError(split.values[2]!, whole.values[2]!), 'gw').toBeLessThan(1e-6);
    expect(maxRelError(split.values[3]!, whole.values[3]!), 'gb').toBeLessThan(1e-6);
    for (const t of [X, W, B, G]) t.release();
  });
});

describe('linear vs PyTorch 1.13 (fixtures/ops/linear.json, scripts/fixtures/make_conv_linear_fixtures.py)', () => {
  const fixture = loadOpFixture<{ cases: LayerFixture[] }>('linear.json');
  // Metric: maxRelError (max |gpu - torch| / max |torch|) < 1e-4 for y and every gradient.
  for (const c of fixture.cases) {
    it(c.name, async () => {
      const rt = await testRuntime();
      const [x, w, gy] = [toTensor(rt, c.x), toTensor(rt, c.w), toTensor(rt, c.gy)];
      const b = c.b ? toTensor(rt, c.b) : null;
      const outs: [Tensor, FixtureTensor][] = [
        [linearForward(x, w, b), c.y],
        [linearBackwardInput(gy, w), c.gx],
        [linearBackwardWeight(gy, x), c.gw],
      ];
      if (c.gb) outs.push([linearBackwardBias(gy), c.gb]);
      console.log(`${c.name}: worst max rel error vs torch ${(await expectFixtureOutputs(outs, 1e-4)).toExponential(2)}`);
      for (const z of [x, w, gy, b]) z?.release();
    });
  }
});

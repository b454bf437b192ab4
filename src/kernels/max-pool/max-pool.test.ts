import { describe, expect, it, vi } from 'vitest';
import { withBindingLimit } from '../../../test/helpers/binding-limit.js';
import { loadOpFixture, toTensor, type FixtureTensor } from '../../../test/helpers/fixtures.js';
import { testRuntime } from '../../../test/helpers/gpu.js';
import { expectOpError } from '../../../test/helpers/op-errors.js';
import { dot, f64, maxRelError, numericGrad, randn, rng } from '../../../test/helpers/gradcheck.js';
import { Tensor } from '../../runtime/tensor.js';
import { maxPool2dBackward, maxPool2dForward, type MaxPool2dOptions } from './max-pool.js';
import { maxPoolBackwardRef, maxPoolRef, type PoolRefParams } from './max-pool.reference.js';

// Errors are maxRelError = max|gpu - ref| / max|ref|. The forward picks elements, so y and the indices must be
// exact; gradients are sums of a few f32 values.
const GRAD_BOUND = 1e-6;
const TORCH_BOUND = 1e-4;

type Shape4 = [number, number, number, number];
interface Config {
  shape: Shape4;
  opts: MaxPool2dOptions;
}

const resnet = { kernel: 3, stride: 2, padding: 1 } as const;
const configs: Config[] = [
  { shape: [2, 3, 9, 9], opts: resnet },
  { shape: [1, 1, 1, 1], opts: resnet },
  { shape: [3, 2, 8, 7], opts: resnet },
  { shape: [1, 1, 13, 5], opts: resnet },
  { shape: [2, 5, 112 / 8, 112 / 8], opts: resnet },
  { shape: [2, 3, 10, 11], opts: { kernel: 2 } },
  { shape: [1, 3, 7, 10], opts: { kernel: [2, 3], stride: [2, 1], padding: [1, 1], ceilMode: true } },
  { shape: [2, 2, 9, 8], opts: { kernel: [3, 2], stride: [1, 3], padding: [1, 0], dilation: [2, 1] } },
  { shape: [1, 2, 11, 11], opts: { kernel: 3, stride: 3, padding: 1, dilation: 2, ceilMode: true } },
  // Rows and output rows of whole vec4s: the tiled kernels' vec4 variants (the ones above take scalar loads).
  { shape: [2, 3, 16, 16], opts: resnet },
  { shape: [2, 3, 12, 16], opts: { kernel: 2 } },
  { shape: [1, 2, 6, 8], opts: { kernel: 3, stride: 1, padding: 1 } },
  { shape: [1, 3, 7, 8], opts: { kernel: [2, 3], stride: [2, 1], padding: [1, 1], ceilMode: true } },
  { shape: [1, 2, 9, 32], opts: { kernel: 5, stride: 4, padding: 2 } },
];

function refParams({ shape, opts }: Config): PoolRefParams {
  const pair = (v: number | readonly [number, number] | undefined, d: number): [number, number] =>
    v === undefined ? [d, d] : typeof v === 'number' ? [v, v] : [v[0], v[1]];
  const k = pair(opts.kernel, 1);
  return {
    N: shape[0], C: shape[1], H: shape[2], W: shape[3],
    k, s: opts.stride === undefined ? k : pair(opts.stride, 1), p: pair(opts.padding, 0), d: pair(opts.dilation, 1),
    ceilMode: opts.ceilMode ?? false,
  };
}

const size = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
const label = (c: Config) => `[${c.shape.join(',')}] ${JSON.stringify(c.opts)}`;

/** Integers in [-2, 2]: windows full of equal maxima. */
function tied(n: number, seed: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => Math.floor(r() * 5) - 2);
}

describe('max_pool2d', () => {
  for (const ties of [false, true]) {
    it.each(configs.map((c) => [label(c), c] as const))(`forward and backward match the reference${ties ? ' with ties' : ''}: %s`, async (_l, cfg) => {
      const rt = await testRuntime();
      const xs = ties ? tied(size(cfg.shape), 3) : randn(size(cfg.shape), 3);
      const q = refParams(cfg);
      const ref = maxPoolRef(f64(xs), q);
      const x = Tensor.fromArray(rt, xs, cfg.shape);
      const { y, indices } = maxPool2dForward(x, cfg.opts);
      expect(y.shape).toEqual([q.N, q.C, ref.OH, ref.OW]);
      expect(Array.from(await y.read())).toEqual(Array.from(ref.y));
      expect(Array.from(await indices.read())).toEqual(Array.from(ref.indices));
      const R = randn(y.size, 4);
      const gy = Tensor.fromArray(rt, R, y.shape);
      const gx = maxPool2dBackward(gy, indices, x.shape, cfg.opts);
      const e = maxRelError(await gx.read(), maxPoolBackwardRef(f64(R), ref.indices, q, ref.OH, ref.OW));
      expect(e).toBeLessThan(GRAD_BOUND);
      for (const t of [x, y, indices, gy, gx]) t.release();
    });
  }

  it.each(configs.map((c) => [label(c), c] as const))('backward matches central differences of the float64 reference: %s', async (_l, cfg) => {
    const rt = await testRuntime();
    const xs = randn(size(cfg.shape), 11);
    const q = refParams(cfg);
    const { OH, OW } = maxPoolRef(f64(xs), q);
    const R = randn(q.N * q.C * OH * OW, 12);
    const num = numericGrad(([x]) => dot(maxPoolRef(x!, q).y, R), [f64(xs)], 0);
    const x = Tensor.fromArray(rt, xs, cfg.shape);
    const { y, indices } = maxPool2dForward(x, cfg.opts);
    const gy = Tensor.fromArray(rt, R, y.shape);
    const gx = maxPool2dBackward(gy, indices, x.shape, cfg.opts);
    const e = maxRelError(await gx.read(), num);
    console.log(`maxpool gradcheck ${label(cfg)}: ${e.toExponential(2)}`);
    expect(e).toBeLessThan(GRAD_BOUND);
    for (const t of [x, y, indices, gy, gx]) t.release();
  });

  // Dilation 1 takes the tiled kernels (vec4 ones when rows and output rows are whole vec4s), dilation 2 the general.
  it.each([
    [[2, 3, 16, 16], resnet, 'maxPool2dForward_k3x3s2x2p1x1_r4_vec4', 'maxPool2dBackward_k3x3s2x2p1x1_r4_vec4'],
    [[2, 3, 9, 9], resnet, 'maxPool2dForward_k3x3s2x2p1x1_r4', 'maxPool2dBackward_k3x3s2x2p1x1_r4'],
    [[1, 2, 11, 11], { kernel: 3, stride: 3, padding: 1, dilation: 2, ceilMode: true }, 'maxPool2dForward', 'maxPool2dBackward'],
  ] as [Shape4, MaxPool2dOptions, string, string][])('%j %j runs %s and %s', async (shape, opts, fwd, bwd) => {
    const rt = await testRuntime();
    const x = Tensor.fromArray(rt, randn(size(shape), 5), shape);
    const spy = vi.spyOn(rt, 'dispatch');
    const { y, indices } = maxPool2dForward(x, opts);
    const gx = maxPool2dBackward(y, indices, shape, opts);
    expect(spy.mock.calls.map((c) => c[0].name)).toEqual([fwd, bwd]);
    spy.mockRestore();
    for (const t of [x, y, indices, gx]) t.release();
  });

  it('propagates NaN and handles windows of -inf like PyTorch', async () => {
    const rt = await testRuntime();
    const xs = Float32Array.from([1, NaN, 3, 2, -Infinity, -Infinity, -Infinity, -Infinity, 5]);
    const x = Tensor.fromArray(rt, xs, [1, 1, 3, 3]);
    const { y, indices } = maxPool2dForward(x, { kernel: 2, stride: 1 });
    // Windows: {1,NaN,2,-inf} -> NaN at 1; {NaN,3,-inf,-inf} -> NaN at 1; {2,-inf,-inf,-inf} -> 2 at 3; {-inf,-inf,-inf,5} -> 5 at 8.
    expect(Array.from(await y.read())).toEqual([NaN, NaN, 2, 5]);
    expect(Array.from(await indices.read())).toEqual([1, 1, 3, 8]);
    const allInf = Tensor.fromArray(rt, new Float32Array(4).fill(-Infinity), [1, 1, 2, 2]);
    const r = maxPool2dForward(allInf, { kernel: 2, stride: 1, padding: 1 });
    expect(Array.from(await r.y.read())).toEqual(new Array(9).fill(-Infinity));
    // All taps -inf: the first valid tap of the window is the index (ATen's initial maxindex).
    expect(Array.from(await r.indices.read())).toEqual([0, 0, 1, 0, 0, 1, 2, 2, 3]);
    for (const t of [x, y, indices, allInf, r.y, r.indices]) t.release();
  });

  it('rejects bad shapes and arguments with errors naming them, before any GPU work', async () => {
    const rt = await testRuntime();
    const x = Tensor.zeros(rt, [1, 2, 5, 5]);
    const x3 = Tensor.zeros(rt, [2, 5, 5]);
    const tiny = Tensor.zeros(rt, [1, 1, 1, 1]);
    expectOpError(rt, () => maxPool2dForward(x3, resnet), /^maxPool2dForward: expected an NCHW input, got \[2, 5, 5\]$/);
    expectOpError(rt, () => maxPool2dForward(x, { kernel: 0 }), /^maxPool2dForward: kernel must be integers >= 1, got 0x0$/);
    expectOpError(rt, () => maxPool2dForward(x, { kernel: 2.5 }), /^maxPool2dForward: kernel must be integers >= 1, got 2.5x2.5$/);
    expectOpError(rt, () => maxPool2dForward(x, { kernel: 3, stride: [2, 0] }), /^maxPool2dForward: stride must be integers >= 1, got 2x0$/);
    expectOpError(rt, () => maxPool2dForward(x, { kernel: 3, padding: -1 }), /^maxPool2dForward: padding must be integers >= 0, got -1x-1$/);
    expectOpError(rt, () => maxPool2dForward(x, { kernel: 3, dilation: [1, 0] }), /^maxPool2dForward: dilation must be integers >= 1, got 1x0$/);
    // PyTorch 1.13: "pad should be at most half of kernel size, but got pad=2 and kernel_size=3".
    expectOpError(rt, () => maxPool2dForward(x, { kernel: 3, padding: 2 }), /^maxPool2dForward: padding 2 should be at most half the kernel size 3$/);
    // PyTorch: "Given input size: (1x1x1). Calculated output size: (1x0x0). Output size is too small".
    expectOpError(rt, () => maxPool2dForward(tiny, { kernel: 3, stride: 2 }), /^maxPool2dForward: output size 0x0 is too small for input \[1, 1, 1, 1\]$/);
    const f = maxPool2dForward(x, { kernel: 2 }); // y, indices [1, 2, 2, 2]
    const wrong = Tensor.zeros(rt, [1, 2, 2, 3]);
    expectOpError(rt, () => maxPool2dBackward(wrong, f.indices, x.shape, { kernel: 2 }), /^maxPool2dBackward: expected \[1, 2, 2, 2\], got \[1, 2, 2, 3\]$/);
    expectOpError(rt, () => maxPool2dBackward(f.y, f.y as unknown as Tensor<'i32'>, x.shape, { kernel: 2 }), /^maxPool2dBackward: indices must be the forward's i32 indices, got f32$/);
    expectOpError(rt, () => maxPool2dBackward(f.y, f.indices, x.shape, { kernel: 2, stride: 0 }), /^maxPool2dBackward: stride must be integers >= 1, got 0x0$/);
    for (const t of [x, x3, tiny, f.y, f.indices, wrong]) t.release();
  });

  it('splits tensors over the binding limit by batch slices (bitwise equal to the unsplit run)', async () => {
    const rt = await testRuntime();
    // 4 KiB input and 1 KiB output per sample: a 16 KiB limit binds 4 samples at a time.
    const shape: Shape4 = [11, 4, 16, 16];
    const xs = tied(size(shape), 21);
    const R = randn(11 * 4 * 8 * 8, 22);
    const run = async () => {
      const x = Tensor.fromArray(rt, xs, shape);
      const { y, indices } = maxPool2dForward(x, resnet);
      const gy = Tensor.fromArray(rt, R, y.shape);
      const gx = maxPool2dBackward(gy, indices, shape, resnet);
      const out = { y: await y.read(), indices: await indices.read(), gx: await gx.read() };
      for (const t of [x, y, indices, gy, gx]) t.release();
      return out;
    };
    const whole = await run();
    const before = rt.stats.dispatches;
    const split = await withBindingLimit(rt, 16 * 1024, run);
    expect(rt.stats.dispatches - before).toBe(6);
    expect(split).toEqual(whole);
  });

  describe('PyTorch parity (fixtures/ops/max_pool2d.json)', () => {
    interface Case {
      params: { kernel: [number, number]; stride: [number, number]; padding: [number, number]; dilation: [number, number]; ceil_mode: boolean };
      ties: boolean;
      input: FixtureTensor;
      y: FixtureTensor;
      indices: FixtureTensor;
      gy: FixtureTensor;
      gx: FixtureTensor;
    }
    const fixture = loadOpFixture<{ cases: Case[] }>('max_pool2d.json');
    it.each(fixture.cases.map((c, i) => [i, c] as const))('case %i: y, indices exact; gx within 1e-4 (maxRelError)', async (_i, c) => {
      const rt = await testRuntime();
      const opts: MaxPool2dOptions = {
        kernel: c.params.kernel, stride: c.params.stride, padding: c.params.padding, dilation: c.params.dilation, ceilMode: c.params.ceil_mode,
      };
      const x = toTensor(rt, c.input);
      const { y, indices } = maxPool2dForward(x, opts);
      expect(y.shape).toEqual(c.y.shape);
      expect(Array.from(await y.read())).toEqual(c.y.data);
      expect(Array.from(await indices.read())).toEqual(c.indices.data);
      const gy = toTensor(rt, c.gy);
      const gx = maxPool2dBackward(gy, indices, x.shape, opts);
      const e = maxRelError(await gx.read(), c.gx.data);
      console.log(`maxpool torch case ${_i}${c.ties ? ' (ties)' : ''}: gx ${e.toExponential(2)}`);
      expect(e).toBeLessThan(TORCH_BOUND);
      for (const t of [x, y, indices, gy, gx]) t.release();
    });
  });
});

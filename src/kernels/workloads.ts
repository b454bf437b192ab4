// The operands and FLOP counts of the kernels' measurable cases: a GEMM of a given shape and a conv2d pass of a given
// geometry. The tuner (conv2d.ts, matmul.ts), `npm run bench` (bench/) and the profiler's op scopes (autograd) all
// take them from here, so a case measured in one place is the case measured in the others.
import type { Runtime } from '../runtime/runtime.js';
import { Tensor } from '../runtime/tensor.js';
import type { Conv2dGeometry } from './conv2d/geometry.js';

/** The GEMM shape a kernel choice depends on: op(A) is M x K, op(B) K x N, `batch` products. */
export interface GemmShape {
  M: number;
  N: number;
  K: number;
  transA: boolean;
  transB: boolean;
  batch: number;
}

/**
 * How operands are filled: 'constant' (0.5 and 0.01: cheap, enough for timing; the tuner) or 'random' (pseudoRandom:
 * results that a check can tell apart; benches).
 */
export type OperandFill = 'constant' | 'random';

/** Deterministic uniform values in [-0.5, 0.5) (a linear congruential generator: the same everywhere). */
export function pseudoRandom(n: number, seed = 12345): Float32Array {
  const data = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    data[i] = s / 2 ** 32 - 0.5;
  }
  return data;
}

function operand(rt: Runtime, shape: number[], fill: OperandFill, constant: number, seed: number, label: string): Tensor<'f32'> {
  if (fill === 'constant') return Tensor.full(rt, shape, constant, label);
  return Tensor.fromArray(rt, pseudoRandom(shape.reduce((a, b) => a * b, 1), seed), shape, label);
}

/** 2 FLOPs per multiply-add. */
export function gemmFlop(s: GemmShape): number {
  return 2 * s.batch * s.M * s.N * s.K;
}

export interface GemmCase {
  /** [batch, M*K] and [batch, K*N], each stored as op() says; c is [batch, M*N]. */
  a: Tensor<'f32'>;
  b: Tensor<'f32'>;
  c: Tensor<'f32'>;
  release(): void;
}

export function gemmCase(rt: Runtime, s: GemmShape, fill: OperandFill = 'constant'): GemmCase {
  const a = operand(rt, [s.batch, s.M * s.K], fill, 0.5, 1, 'case.a');
  const b = operand(rt, [s.batch, s.K * s.N], fill, 0.5, 2, 'case.b');
  const c = Tensor.empty(rt, [s.batch, s.M * s.N], 'f32', 'case.c');
  return { a, b, c, release: () => [a, b, c].forEach((t) => t.release()) };
}

/** Direct-convolution FLOPs of one pass (each of forward, data and weight gradient): 2 N Cout OH OW Cin KH KW. */
export function convFlop(g: Conv2dGeometry): number {
  return 2 * g.n * g.cout * g.oh * g.ow * g.cin * g.kh * g.kw;
}

export interface ConvCase {
  /** x [N, Cin, H, W], w [Cout, Cin, KH, KW], gy [N, Cout, OH, OW]. */
  x: Tensor<'f32'>;
  w: Tensor<'f32'>;
  gy: Tensor<'f32'>;
  release(): void;
}

export function convCase(rt: Runtime, g: Conv2dGeometry, fill: OperandFill = 'constant'): ConvCase {
  const x = operand(rt, [g.n, g.cin, g.h, g.w], fill, 0.5, 3, 'case.x');
  const w = operand(rt, [g.cout, g.cin, g.kh, g.kw], fill, 0.01, 4, 'case.w');
  const gy = operand(rt, [g.n, g.cout, g.oh, g.ow], fill, 0.5, 5, 'case.gy');
  return { x, w, gy, release: () => [x, w, gy].forEach((t) => t.release()) };
}

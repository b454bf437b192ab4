// The operands and FLOP counts of the kernels' measurable cases: a GEMM of a given shape and a conv2d pass of a given
// geometry. The tuner (conv2d.ts, matmul.ts), `npm run bench` (bench/) and the profiler's op scopes (autograd) all
// take them from here, so a case measured in one place is the case measured in the others.
import type { Runtime } from '../runtime/runtime.js';
import { Tensor } from '../runtime/tensor.js';
import { pseudoRandom } from '../util/pseudo-random.js';
import type { Conv2dGeometry } from './conv2d/geometry.js';

export { pseudoRandom } from '../util/pseudo-random.js';

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

/** One operand: the tensor, and with 'random' the host values it was made from (for a CPU check of the result). */
export interface CaseOperand {
  t: Tensor<'f32'>;
  host: Float32Array | null;
}

function operand(rt: Runtime, shape: number[], fill: OperandFill, constant: number, seed: number, label: string): CaseOperand {
  if (fill === 'constant') return { t: Tensor.full(rt, shape, constant, label), host: null };
  const host = pseudoRandom(shape.reduce((a, b) => a * b, 1), seed);
  return { t: Tensor.fromArray(rt, host, shape, label), host };
}

/** 2 FLOPs per multiply-add. */
export function gemmFlop(s: GemmShape): number {
  return 2 * s.batch * s.M * s.N * s.K;
}

/** A GEMM operand: 'a' is [batch, M*K], 'b' [batch, K*N], each stored as op() says. */
export function gemmOperand(rt: Runtime, s: GemmShape, which: 'a' | 'b', fill: OperandFill = 'constant'): CaseOperand {
  return which === 'a' ? operand(rt, [s.batch, s.M * s.K], fill, 0.5, 1, 'case.a') : operand(rt, [s.batch, s.K * s.N], fill, 0.5, 2, 'case.b');
}

export interface GemmCase {
  a: Tensor<'f32'>;
  b: Tensor<'f32'>;
  /** [batch, M*N] */
  c: Tensor<'f32'>;
  release(): void;
}

export function gemmCase(rt: Runtime, s: GemmShape, fill: OperandFill = 'constant'): GemmCase {
  const a = gemmOperand(rt, s, 'a', fill).t;
  const b = gemmOperand(rt, s, 'b', fill).t;
  const c = Tensor.empty(rt, [s.batch, s.M * s.N], 'f32', 'case.c');
  return { a, b, c, release: () => [a, b, c].forEach((t) => t.release()) };
}

/** Direct-convolution FLOPs of one pass (each of forward, data and weight gradient): 2 N Cout OH OW Cin KH KW. */
export function convFlop(g: Conv2dGeometry): number {
  return 2 * g.n * g.cout * g.oh * g.ow * g.cin * g.kh * g.kw;
}

/** A conv operand: x [N, Cin, H, W], w [Cout, Cin, KH, KW] or gy [N, Cout, OH, OW]. */
export function convOperand(rt: Runtime, g: Conv2dGeometry, which: 'x' | 'w' | 'gy', fill: OperandFill = 'constant'): CaseOperand {
  if (which === 'x') return operand(rt, [g.n, g.cin, g.h, g.w], fill, 0.5, 3, 'case.x');
  if (which === 'w') return operand(rt, [g.cout, g.cin, g.kh, g.kw], fill, 0.01, 4, 'case.w');
  return operand(rt, [g.n, g.cout, g.oh, g.ow], fill, 0.5, 5, 'case.gy');
}

export interface ConvCase {
  x: Tensor<'f32'>;
  w: Tensor<'f32'>;
  gy: Tensor<'f32'>;
  release(): void;
}

export function convCase(rt: Runtime, g: Conv2dGeometry, fill: OperandFill = 'constant'): ConvCase {
  const [x, w, gy] = (['x', 'w', 'gy'] as const).map((which) => convOperand(rt, g, which, fill).t) as [Tensor<'f32'>, Tensor<'f32'>, Tensor<'f32'>];
  return { x, w, gy, release: () => [x, w, gy].forEach((t) => t.release()) };
}

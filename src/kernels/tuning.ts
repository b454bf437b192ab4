// The one way an op asks the runtime's tuner (src/runtime/autotune.ts) to choose among its candidates for a case:
// conv2d's lowerings, matmul's GEMM kernels and the lowerings' own GEMM variants all go through chooseMeasured.
import type { Runtime } from '../runtime/runtime.js';

interface Releasable {
  release(): void;
}

export interface MeasuredChoice<V extends string, O extends Releasable> {
  /** Names the op, the pass and the shape (without what scales every candidate alike, such as the batch). */
  key: string;
  /** In order of preference before measuring. */
  candidates: readonly V[];
  /** Used until the case is measured (default: the first candidate). */
  fallback?: V;
  /**
   * Measured before the cases noted earlier: a choice that the other cases' kernels depend on (the texture GEMM's
   * register group), so that they are timed with it.
   */
  first?: boolean;
  /** Operands of the case's shape (workloads.ts), made only when the tuner measures it. */
  operands(): O;
  /** One run of a candidate on them; returns its output, which the tuner releases. */
  run(operands: O, candidate: V): Releasable;
}

/** The measured candidate for the case, or the fallback until it is measured (the tuner notes it for tunePending). */
export function chooseMeasured<V extends string, O extends Releasable>(rt: Runtime, c: MeasuredChoice<V, O>): V {
  if (!c.candidates.length) throw new Error(`${c.key}: no candidate applies`);
  const fallback = c.fallback ?? c.candidates[0]!;
  return rt.tuner.choose(c.key, c.candidates, fallback, () => {
    const operands = c.operands();
    return { run: (v: string) => c.run(operands, v as V), release: () => operands.release() };
  }, c.first) as V;
}

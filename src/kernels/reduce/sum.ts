import { flatChunks } from '../../runtime/chunks.js';
import { Tensor } from '../../runtime/tensor.js';
import { SUM_GROUPS, sumFinalKernel, sumPartialsKernel } from './sum.wgsl.js';

/** Sum of all elements times `factor` (1 for sum, 1/n for mean) as a one-element tensor. Deterministic. */
export function sumAll(x: Tensor, factor = 1): Tensor<'f32'> {
  const rt = x.rt;
  const chunks = flatChunks(rt, x.size);
  const partials = Tensor.empty(rt, [chunks.length * SUM_GROUPS], 'f32', 'sumPartials');
  chunks.forEach((c, k) => {
    rt.dispatch(
      sumPartialsKernel,
      SUM_GROUPS,
      { x: x.gpuBindingRange(c.start, c.count), partials: partials.gpuBindingRange(k * SUM_GROUPS, SUM_GROUPS) },
      { n: c.count, block: Math.ceil(c.count / SUM_GROUPS) },
    );
  });
  const out = Tensor.empty(rt, [], 'f32', 'sum');
  rt.dispatch(sumFinalKernel, 1, { partials, out }, { n: partials.size, factor });
  partials.release();
  return out;
}

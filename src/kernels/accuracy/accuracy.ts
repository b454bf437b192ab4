// Number of correct predictions in a batch, on the GPU: training reads back one u32 per batch at most.
import { batchChunks } from '../../runtime/chunks.js';
import { Tensor } from '../../runtime/tensor.js';
import { ACCURACY_WG, accuracyCountKernel } from './accuracy.wgsl.js';

/** u32 [1]: rows of logits [N, C] whose argmax (first maximum, as torch.argmax) equals the i32 label. */
export function accuracyCount(logits: Tensor<'f32'>, labels: Tensor<'i32'>): Tensor<'u32'> {
  const rt = logits.rt;
  if (logits.shape.length !== 2) throw new Error(`accuracyCount: logits must be [N, C], got [${logits.shape.join(', ')}]`);
  const [N, C] = logits.shape as [number, number];
  if (labels.size !== N || labels.dtype !== 'i32') throw new Error(`accuracyCount: labels must be i32 [${N}], got ${labels.dtype} [${labels.shape.join(', ')}]`);
  const count = Tensor.zeros(rt, [1], 'u32', 'accuracy.count');
  if (C === 0) return count;
  for (const ch of batchChunks(rt, N, [C, 1])) {
    rt.dispatch(
      accuracyCountKernel,
      rt.grid(Math.ceil(ch.count / ACCURACY_WG)),
      { logits: logits.gpuBindingRange(ch.start * C, ch.count * C), labels: labels.gpuBindingRange(ch.start, ch.count), count },
      { rows: ch.count, C },
    );
  }
  return count;
}

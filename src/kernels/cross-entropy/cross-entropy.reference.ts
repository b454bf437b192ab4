// Float64 CPU reference of softmax cross-entropy, for tests only.

/** Per-example losses (reduction 'none'): 0 for label -100 (PyTorch's default ignore_index), NaN for other bad labels. */
export function crossEntropyRef(logits: Float64Array, labels: Int32Array, N: number, C: number): Float64Array {
  const losses = new Float64Array(N);
  for (let n = 0; n < N; n++) {
    const label = labels[n]!;
    if (label === -100) continue;
    if (label < 0 || label >= C) {
      losses[n] = NaN;
      continue;
    }
    let m = -Infinity;
    for (let j = 0; j < C; j++) m = Math.max(m, logits[n * C + j]!);
    let s = 0;
    for (let j = 0; j < C; j++) s += Math.exp(logits[n * C + j]! - m);
    losses[n] = m + Math.log(s) - logits[n * C + label]!;
  }
  return losses;
}

/** Reduction 'mean' as PyTorch: the sum over the rows not ignored divided by their number (NaN if none). */
export function crossEntropyMeanRef(logits: Float64Array, labels: Int32Array, N: number, C: number): number {
  const losses = crossEntropyRef(logits, labels, N, C);
  const kept = labels.filter((l) => l !== -100).length;
  return losses.reduce((s, v) => s + v, 0) / kept;
}

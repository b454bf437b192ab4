// CPU reference of the accuracy count (torch.argmax semantics: first maximum, first NaN), for tests only.

export function argmaxRef(logits: ArrayLike<number>, N: number, C: number): Int32Array {
  const out = new Int32Array(N);
  for (let n = 0; n < N; n++) {
    let best = logits[n * C]!;
    let arg = 0;
    for (let j = 1; j < C && !Number.isNaN(best); j++) {
      const v = logits[n * C + j]!;
      if (v > best || Number.isNaN(v)) {
        best = v;
        arg = j;
      }
    }
    out[n] = arg;
  }
  return out;
}

export function accuracyCountRef(logits: ArrayLike<number>, labels: ArrayLike<number>, N: number, C: number): number {
  const arg = argmaxRef(logits, N, C);
  let count = 0;
  for (let n = 0; n < N; n++) if (arg[n] === labels[n]) count++;
  return count;
}

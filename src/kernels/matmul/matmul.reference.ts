// Float64 CPU references for the GEMM family and the linear layer (tests only).

/** C[M, N] = op(A) @ op(B); A is [M, K] (or [K, M] when transA), B is [K, N] (or [N, K] when transB). */
export function matmulRef(
  a: Float64Array,
  b: Float64Array,
  M: number,
  N: number,
  K: number,
  transA = false,
  transB = false,
): Float64Array {
  const c = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += (transA ? a[k * M + m]! : a[m * K + k]!) * (transB ? b[n * K + k]! : b[k * N + n]!);
      c[m * N + n] = s;
    }
  }
  return c;
}

/** y[N, out] = x[N, in] @ w[out, in]^T + b. */
export function linearRef(x: Float64Array, w: Float64Array, b: Float64Array | null, n: number, inF: number, outF: number): Float64Array {
  const y = matmulRef(x, w, n, outF, inF, false, true);
  if (b) for (let i = 0; i < n; i++) for (let o = 0; o < outF; o++) y[i * outF + o] = y[i * outF + o]! + b[o]!;
  return y;
}

// Float64 CPU reference of adaptive_avg_pool2d (NCHW), for tests only.

export function adaptiveAvgPoolRef(x: Float64Array, N: number, C: number, H: number, W: number, OH: number, OW: number): Float64Array {
  const y = new Float64Array(N * C * OH * OW);
  for (let plane = 0; plane < N * C; plane++)
    for (let oh = 0; oh < OH; oh++)
      for (let ow = 0; ow < OW; ow++) {
        const h0 = Math.floor((oh * H) / OH);
        const h1 = Math.ceil(((oh + 1) * H) / OH);
        const w0 = Math.floor((ow * W) / OW);
        const w1 = Math.ceil(((ow + 1) * W) / OW);
        let s = 0;
        for (let ih = h0; ih < h1; ih++) for (let iw = w0; iw < w1; iw++) s += x[plane * H * W + ih * W + iw]!;
        y[(plane * OH + oh) * OW + ow] = s / ((h1 - h0) * (w1 - w0));
      }
  return y;
}

import type { TiledGemmGather } from '../matmul/tiled-gemm.wgsl.js';

// The gathered operands of the implicit convolution on the tiled GPU GEMM (implicit-tiled.ts), one per pass. Each
// reads the activations in place (NCHW, batch item z of the bound slice) and returns 0 for taps in the padding, so
// there is no padded copy; the geometry comes in Params, so one pipeline per tile variant serves every shape.
// Rows or columns above or left of the image are computed in u32 and wrap around to huge values, which fail the
// `< H` / `< W` (or `< OH` / `< OW`) tests.

/**
 * Forward, per batch item: op(B) (K x N) with k = (ci, kh, kw) and n = (oh, ow): the input pixel under tap (kh, kw)
 * of output (oh, ow). Quads run along n. B is x's slice; bBatch is one sample's size.
 */
export const convForwardGather: TiledGemmGather = {
  name: 'convForward',
  a: false,
  b: true,
  params: ['H', 'W', 'KW', 'KHW', 'SH', 'SW', 'PH', 'PW', 'OW'],
  wgsl: /* wgsl */ `
fn gatherB(k: u32, n: u32, z: u32) -> vec4f {
  var v = vec4f(0.0);
  if (k >= params.K) { return v; }
  let ci = k / params.KHW;
  let tap = k - ci * params.KHW;
  let kh = tap / params.KW;
  let kw = tap - kh * params.KW;
  let base = z * params.bBatch + ci * params.H * params.W;
  var oh = n / params.OW;
  var ow = n - oh * params.OW;
  for (var c = 0u; c < 4u; c++) {
    let ih = oh * params.SH + kh - params.PH;
    let iw = ow * params.SW + kw - params.PW;
    if (n + c < params.N && ih < params.H && iw < params.W) { v[c] = B[base + ih * params.W + iw]; }
    ow += 1u;
    if (ow == params.OW) { ow = 0u; oh += 1u; }
  }
  return v;
}
`,
};

/**
 * Data gradient, per batch item: op(B) (K x N) with k = (co, kh, kw) and n = (ih, iw): gy[co, oh, ow] for the
 * output that tap (kh, kw) reaches from input (ih, iw), i.e. ih + ph - kh = oh * sh (same for columns), 0 where that
 * is not a whole output inside gy. Quads run along n. B is gy's slice.
 */
export const convDataGather: TiledGemmGather = {
  name: 'convData',
  a: false,
  b: true,
  params: ['W', 'KW', 'KHW', 'SH', 'SW', 'PH', 'PW', 'OH', 'OW'],
  wgsl: /* wgsl */ `
fn gatherB(k: u32, n: u32, z: u32) -> vec4f {
  var v = vec4f(0.0);
  if (k >= params.K) { return v; }
  let co = k / params.KHW;
  let tap = k - co * params.KHW;
  let kh = tap / params.KW;
  let kw = tap - kh * params.KW;
  let base = z * params.bBatch + co * params.OH * params.OW;
  var ih = n / params.W;
  var iw = n - ih * params.W;
  for (var c = 0u; c < 4u; c++) {
    // Negative offsets wrap, and their quotients land far past OH / OW.
    let th = ih + params.PH - kh;
    let tw = iw + params.PW - kw;
    let oh = th / params.SH;
    let ow = tw / params.SW;
    if (n + c < params.N && oh < params.OH && ow < params.OW && oh * params.SH == th && ow * params.SW == tw) {
      v[c] = B[base + oh * params.OW + ow];
    }
    iw += 1u;
    if (iw == params.W) { iw = 0u; ih += 1u; }
  }
  return v;
}
`,
};

/**
 * Weight gradient: gw (Cout x R, R = Cin*KH*KW) = sum over kk = (s, p) (sample, output position) of gy[s, co, p]
 * times x's window element, the reduction (kTotal = samples * P) cut into ranges of kSplit, range z computed by
 * batch item z of the GEMM (split-K) into its own partial. op(A)[kk, co] = gy[s, co, p];
 * op(B)[kk, (ci, kh, kw)] = x[s, ci, oh*sh - ph + kh, ow*sw - pw + kw]. Quads run along k in both. A is gy's
 * slice, B x's; M is Cout.
 */
export const convWeightGather: TiledGemmGather = {
  name: 'convWeight',
  a: true,
  b: true,
  params: ['kSplit', 'kTotal', 'P', 'Cin', 'H', 'W', 'KW', 'KHW', 'SH', 'SW', 'PH', 'PW', 'OH', 'OW'],
  wgsl: /* wgsl */ `
fn gatherA(k: u32, m: u32, z: u32) -> vec4f {
  var v = vec4f(0.0);
  if (m >= params.M) { return v; }
  let k0 = z * params.kSplit + k;
  var s = k0 / params.P;
  var p = k0 - s * params.P;
  for (var c = 0u; c < 4u; c++) {
    if (k + c < params.K && k0 + c < params.kTotal) { v[c] = A[(s * params.M + m) * params.P + p]; }
    p += 1u;
    if (p == params.P) { p = 0u; s += 1u; }
  }
  return v;
}

fn gatherB(k: u32, n: u32, z: u32) -> vec4f {
  var v = vec4f(0.0);
  if (n >= params.N) { return v; }
  let ci = n / params.KHW;
  let tap = n - ci * params.KHW;
  let kh = tap / params.KW;
  let kw = tap - kh * params.KW;
  let k0 = z * params.kSplit + k;
  var s = k0 / params.P;
  let p = k0 - s * params.P;
  var oh = p / params.OW;
  var ow = p - oh * params.OW;
  for (var c = 0u; c < 4u; c++) {
    let ih = oh * params.SH + kh - params.PH;
    let iw = ow * params.SW + kw - params.PW;
    if (k + c < params.K && k0 + c < params.kTotal && ih < params.H && iw < params.W) {
      v[c] = B[((s * params.Cin + ci) * params.H + ih) * params.W + iw];
    }
    ow += 1u;
    if (ow == params.OW) {
      ow = 0u;
      oh += 1u;
      if (oh == params.OH) { oh = 0u; s += 1u; }
    }
  }
  return v;
}
`,
};

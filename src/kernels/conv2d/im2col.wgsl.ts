import type { KernelDef } from '../../runtime/kernel.js';

// Operand textures for convolutions computed by the texture GEMM (src/kernels/matmul/texture-gemm.wgsl.ts) on
// im2col matrices: the lowering of every convolution Winograd does not take (7x7 stride 2, 3x3 stride 2, 1x1
// stride 2) where the texture GEMM runs. A texel holds 4 consecutive values along a row; layer n is sample n.

/**
 * The im2col matrices of S samples per layer, stacked along the rows: texel (kq, r) of layer l holds
 * x[n][ci][iy][ix] for the 4 reduction indices k = 4kq .. 4kq+3, k = (ci * KH + kh) * KW + kw, at row r = s * P + p
 * of sample n = l * S + s, output position p = oy * OW + ox (iy = oy * SH - PH + kh, ix = ox * SW - PW + kw). Zero
 * for taps outside the input, k >= K and r >= S * P (the rows up to Pp pad the GEMM's rows, or its reduction when
 * the matrix is the weight gradient's operand). Stacking samples keeps small feature maps (P = 4 or 16 positions)
 * from being padded to a whole GEMM tile each.
 */
export const im2colTextureWgsl: KernelDef = {
  name: 'conv2dIm2colTexture',
  // The geometry is in override constants (set per convolution shape), so the index divisions below are by
  // compile-time constants: a multiply and a shift instead of a per-lane integer division.
  wgsl: /* wgsl */ `
override C: u32;
override H: u32;
override W: u32;
override KH: u32;
override KW: u32;
override SH: u32;
override SW: u32;
override PH: u32;
override PW: u32;
override OW: u32;
override P: u32;
override S: u32;
override Pp: u32;
override K: u32;
override Kq: u32;
struct Params { layers: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var T: texture_storage_2d_array<rgba32float, write>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * 64u;
  if (i >= params.layers * Pp * Kq) { return; }
  let kq = i % Kq;
  let r = (i / Kq) % Pp;
  let l = i / (Kq * Pp);
  let s = r / P;
  let p = r - s * P;
  let n = l * S + min(s, S - 1u);
  let oy = p / OW;
  let ox = p - oy * OW;
  var v = vec4f(0.0);
  for (var j = 0u; j < 4u; j++) {
    let k = kq * 4u + j;
    let ci = k / (KH * KW);
    let kh = (k - ci * KH * KW) / KW;
    let kw = k - ci * KH * KW - kh * KW;
    // iy, ix as unsigned with the padding added: below zero wraps past H / W.
    let iy = oy * SH + kh - PH;
    let ix = ox * SW + kw - PW;
    let inside = k < K && s < S && oy * SH + kh >= PH && ox * SW + kw >= PW && iy < H && ix < W;
    let at = ((n * C + min(ci, C - 1u)) * H + min(iy, H - 1u)) * W + min(ix, W - 1u);
    v[j] = select(0.0, X[at], inside);
  }
  textureStore(T, vec2u(kq, r), l, v);
}
`,
};

// ---- im2col into a storage buffer (im2col-tiled.ts: operands of the tiled GPU GEMM) ---------------------------

/**
 * The im2col matrix of each sample as a row-major [K][P] block of a storage buffer, samples back to back:
 * cols[n][k][p] = x[n][ci][iy][ix] with k = (ci * KH + kh) * KW + kw, p = oy * OW + ox, iy = oy * SH - PH + kh,
 * ix = ox * SW - PW + kw; zero for taps outside the input. One invocation per element, p fastest (consecutive
 * invocations write consecutive positions). The layout col2im reads (conv2d.wgsl.ts).
 */
export const im2colBufferWgsl: KernelDef = {
  name: 'conv2dIm2colBuffer',
  // Geometry in override constants, as im2colTextureWgsl: divisions by compile-time constants.
  wgsl: /* wgsl */ `
override C: u32;
override H: u32;
override W: u32;
override KH: u32;
override KW: u32;
override SH: u32;
override SW: u32;
override PH: u32;
override PW: u32;
override OW: u32;
override P: u32;
override K: u32;
struct Params { samples: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> cols: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * 64u;
  if (i >= params.samples * K * P) { return; }
  let p = i % P;
  let k = (i / P) % K;
  let n = i / (P * K);
  let oy = p / OW;
  let ox = p - oy * OW;
  let ci = k / (KH * KW);
  let kh = (k - ci * KH * KW) / KW;
  let kw = k - ci * KH * KW - kh * KW;
  // iy, ix as unsigned with the padding added: below zero wraps past H / W.
  let iy = oy * SH + kh - PH;
  let ix = ox * SW + kw - PW;
  let inside = oy * SH + kh >= PH && ox * SW + kw >= PW && iy < H && ix < W;
  let at = ((n * C + ci) * H + min(iy, H - 1u)) * W + min(ix, W - 1u);
  cols[i] = select(0.0, X[at], inside);
}
`,
};

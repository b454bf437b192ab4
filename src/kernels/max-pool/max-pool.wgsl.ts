import type { KernelDef } from '../kernel.js';

// max_pool2d over NCHW as PyTorch: padding counts as -inf, the window is scanned row by row and the first maximum
// wins (a NaN always wins, so NaN propagates), and `indices` holds the winner's position within its input plane
// (ih * W + iw). Kernels see one batch slice at a time; `plane` = n * C + c within the slice.

export const POOL_WG = 256;

const params = /* wgsl */ `
struct Params {
  n: u32,        // threads to run (output elements forward, input elements backward)
  H: i32, W: i32, OH: i32, OW: i32,
  kH: i32, kW: i32, sH: i32, sW: i32, pH: i32, pW: i32, dH: i32, dW: i32,
  negInf: f32,   // -inf from the host: WGSL constant expressions may not produce infinities
}
@group(0) @binding(0) var<uniform> params: Params;
`;

export const maxPoolForward: KernelDef = {
  name: 'maxPool2dForward',
  wgsl: /* wgsl */ `
${params}
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> indices: array<i32>;

// On the bits: compilers may assume NaN-free floats and fold v != v to false (lavapipe does).
fn isNan(v: f32) -> bool {
  return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

@compute @workgroup_size(${POOL_WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * ${POOL_WG}u;
  if (i >= params.n) { return; }
  let p = params;
  let planeOut = u32(p.OH * p.OW);
  let plane = i / planeOut;
  let o = i32(i - plane * planeOut);
  let oh = o / p.OW;
  let ow = o - oh * p.OW;
  // The window's valid rows/columns: start at the first non-negative tap, end before H/W (as ATen's CPU kernel).
  var h0 = oh * p.sH - p.pH;
  let h1 = min(h0 + (p.kH - 1) * p.dH + 1, p.H);
  while (h0 < 0) { h0 += p.dH; }
  var w0 = ow * p.sW - p.pW;
  let w1 = min(w0 + (p.kW - 1) * p.dW + 1, p.W);
  while (w0 < 0) { w0 += p.dW; }
  let base = plane * u32(p.H * p.W);
  var best = p.negInf;
  var bestIndex = h0 * p.W + w0;
  for (var ih = h0; ih < h1; ih += p.dH) {
    for (var iw = w0; iw < w1; iw += p.dW) {
      let k = ih * p.W + iw;
      let v = x[base + u32(k)];
      if (v > best || isNan(v)) {
        best = v;
        bestIndex = k;
      }
    }
  }
  y[i] = best;
  indices[i] = bestIndex;
}
`,
};

// Each input element gathers the gradient of every output window that chose it (no scatter, no atomics). Windows
// are visited in ascending (oh, ow), the order in which PyTorch's CPU kernel accumulates.
export const maxPoolBackward: KernelDef = {
  name: 'maxPool2dBackward',
  wgsl: /* wgsl */ `
${params}
@group(0) @binding(1) var<storage, read> gy: array<f32>;
@group(0) @binding(2) var<storage, read> indices: array<i32>;
@group(0) @binding(3) var<storage, read_write> gx: array<f32>;

// Outputs o along one axis whose window has a tap at input position q: o * s - pad + t * d = q, 0 <= t < k.
fn firstOut(q: i32, s: i32, pad: i32, k: i32, d: i32) -> i32 {
  let a = q + pad - (k - 1) * d;
  if (a <= 0) { return 0; }
  return (a + s - 1) / s;
}

@compute @workgroup_size(${POOL_WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * ${POOL_WG}u;
  if (i >= params.n) { return; }
  let p = params;
  let planeIn = u32(p.H * p.W);
  let plane = i / planeIn;
  let k = i32(i - plane * planeIn);
  let ih = k / p.W;
  let iw = k - ih * p.W;
  let ohLast = min(p.OH - 1, (ih + p.pH) / p.sH);
  let owLast = min(p.OW - 1, (iw + p.pW) / p.sW);
  let owFirst = firstOut(iw, p.sW, p.pW, p.kW, p.dW);
  let base = plane * u32(p.OH * p.OW);
  var sum = 0.0;
  for (var oh = firstOut(ih, p.sH, p.pH, p.kH, p.dH); oh <= ohLast; oh++) {
    if ((ih + p.pH - oh * p.sH) % p.dH != 0) { continue; }
    for (var ow = owFirst; ow <= owLast; ow++) {
      if ((iw + p.pW - ow * p.sW) % p.dW != 0) { continue; }
      let o = base + u32(oh * p.OW + ow);
      if (indices[o] == k) { sum += gy[o]; }
    }
  }
  gx[i] = sum;
}
`,
};

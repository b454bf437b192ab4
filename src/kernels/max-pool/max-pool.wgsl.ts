import type { KernelDef } from '../kernel.js';
import { FLAT_WG } from '../workgroup.js';

// max_pool2d over NCHW as PyTorch: padding counts as -inf, the window is scanned row by row and the first maximum
// wins (a NaN always wins, so NaN propagates), and `indices` holds the winner's position within its input plane
// (ih * W + iw). Kernels see one batch slice at a time; `plane` = n * C + c within the slice.

export const POOL_WG = FLAT_WG;
export const POOL_WG_ROWS = 64;

const params = /* wgsl */ `
struct Params {
  n: u32,        // invocations to run (output elements forward, input rows backward)
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
// are visited in ascending (oh, ow), the order in which PyTorch's CPU kernel accumulates. One invocation per input
// row (plane, ih): the candidate output rows are found once, and the candidate output columns of each iw,
//   ow in [max(0, ceil((iw + pW - (kW - 1) dW) / sW)), min(OW - 1, floor((iw + pW) / sW))],
// are advanced with counters along the row instead of dividing per element (integer division is slow on lavapipe).
export const maxPoolBackward: KernelDef = {
  name: 'maxPool2dBackward',
  wgsl: /* wgsl */ `
${params}
@group(0) @binding(1) var<storage, read> gy: array<f32>;
@group(0) @binding(2) var<storage, read> indices: array<i32>;
@group(0) @binding(3) var<storage, read_write> gx: array<f32>;

// floor(a / s) for s > 0 (WGSL's i32 division truncates toward zero).
fn floorDiv(a: i32, s: i32) -> i32 {
  return select(a / s, (a - s + 1) / s, a < 0);
}

@compute @workgroup_size(${POOL_WG_ROWS})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let r = gid.x + gid.y * nwg.x * ${POOL_WG_ROWS}u;
  if (r >= params.n) { return; }
  let p = params;
  let plane = r / u32(p.H);
  let ih = i32(r - plane * u32(p.H));
  let ohFirst = max(0, floorDiv(ih + p.pH - (p.kH - 1) * p.dH + p.sH - 1, p.sH));
  let ohLast = min(p.OH - 1, (ih + p.pH) / p.sH);
  // (q, r) pairs of the two column bounds for iw = 0; both numerators grow by one per column.
  var hiQ = p.pW / p.sW;
  var hiR = p.pW - hiQ * p.sW;
  let lo0 = p.pW - (p.kW - 1) * p.dW + p.sW - 1;
  var loQ = floorDiv(lo0, p.sW);
  var loR = lo0 - loQ * p.sW;
  let inBase = plane * u32(p.H * p.W) + u32(ih * p.W);
  let outBase = plane * u32(p.OH * p.OW);
  for (var iw = 0; iw < p.W; iw++) {
    let k = ih * p.W + iw;
    let owFirst = max(loQ, 0);
    let owLast = min(hiQ, p.OW - 1);
    var sum = 0.0;
    for (var oh = ohFirst; oh <= ohLast; oh++) {
      if (p.dH != 1 && (ih + p.pH - oh * p.sH) % p.dH != 0) { continue; }
      for (var ow = owFirst; ow <= owLast; ow++) {
        if (p.dW != 1 && (iw + p.pW - ow * p.sW) % p.dW != 0) { continue; }
        let o = outBase + u32(oh * p.OW + ow);
        if (indices[o] == k) { sum += gy[o]; }
      }
    }
    gx[inBase + u32(iw)] = sum;
    hiR += 1;
    if (hiR == p.sW) { hiR = 0; hiQ += 1; }
    loR += 1;
    if (loR == p.sW) { loR = 0; loQ += 1; }
  }
}
`,
};

import type { KernelDef } from '../kernel.js';

// BatchNorm2d over NCHW tensors. Kernels see one batch slice at a time (the host binds sub-ranges of tensors that
// exceed the binding limit), so every index below is relative to the bound slice: element (n, c, s) of the slice
// is at (n * C + c) * HW + s.
//
// Statistics are reduced in two fixed-order stages, no atomics:
//   stage 1, per slice: workgroup (g, c) reduces a contiguous range of channel c's elements (taken in
//     (n, s) order) into one partial; partial p of channel c is stored at parts[p * C + c].
//   stage 2: workgroup c merges its P partials in index order.
// The forward statistics use Welford per invocation and Chan's merge of (count, mean, M2) afterwards, so the
// variance does not cancel catastrophically when activations have a large mean.

export const REDUCE_WG = 64;
export const ELEMENTWISE_WG = 64;
export const ELEMENTWISE_SPAN = ELEMENTWISE_WG * 4;

// Walks channel c's elements j in [start, end) of the bound slice with stride REDUCE_WG without dividing per
// element: j = img * HW + s, and a stride of REDUCE_WG advances (img, s) by (stepQ, stepR) = divmod(REDUCE_WG, HW).
const channelWalk = /* wgsl */ `
struct Walk { addr: u32, img: u32, s: u32 }
fn walkStart(j: u32) -> Walk {
  let img = j / params.HW;
  let s = j - img * params.HW;
  return Walk((img * params.C + wid_c) * params.HW + s, img, s);
}
fn walkNext(w: Walk) -> Walk {
  var img = w.img + params.stepQ;
  var s = w.s + params.stepR;
  if (s >= params.HW) { s -= params.HW; img += 1u; }
  return Walk((img * params.C + wid_c) * params.HW + s, img, s);
}
`;

const merge = /* wgsl */ `
// Chan et al.: merges (count, mean, M2) of two disjoint sets.
fn merge(a: vec3f, b: vec3f) -> vec3f {
  if (b.x == 0.0) { return a; }
  if (a.x == 0.0) { return b; }
  let n = a.x + b.x;
  let d = b.y - a.y;
  let f = b.x / n;
  return vec3f(n, a.y + d * f, a.z + b.z + d * d * a.x * f);
}
`;

/** Stage 1 of the forward statistics: one (count, mean, M2) partial per workgroup. */
export const bnStatsPartial: KernelDef = {
  name: 'batchNormStatsPartial',
  wgsl: /* wgsl */ `
struct Params { C: u32, HW: u32, M: u32, per: u32, partBase: u32, stepQ: u32, stepR: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
// (count, mean, M2) triples; count is a float (exact up to 2^24 elements per partial).
@group(0) @binding(2) var<storage, read_write> parts: array<f32>;

var<private> wid_c: u32;
var<workgroup> red: array<vec3f, ${REDUCE_WG}>;
${channelWalk}
${merge}
@compute @workgroup_size(${REDUCE_WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  wid_c = wid.y;
  let start = wid.x * params.per;
  let end = min(start + params.per, params.M);
  var acc = vec3f(0.0);
  var j = start + lid.x;
  if (j < end) {
    var w = walkStart(j);
    var n = 0.0;
    var mean = 0.0;
    var m2 = 0.0;
    loop {
      let v = x[w.addr];
      n += 1.0;
      let d = v - mean;
      mean += d / n;
      m2 += d * (v - mean);
      j += ${REDUCE_WG}u;
      if (j >= end) { break; }
      w = walkNext(w);
    }
    acc = vec3f(n, mean, m2);
  }
  red[lid.x] = acc;
  workgroupBarrier();
  for (var stride = ${REDUCE_WG / 2}u; stride > 0u; stride >>= 1u) {
    if (lid.x < stride) { red[lid.x] = merge(red[lid.x], red[lid.x + stride]); }
    workgroupBarrier();
  }
  if (lid.x == 0u) {
    let p = ((params.partBase + wid.x) * params.C + wid_c) * 3u;
    let r = red[0];
    parts[p] = r.x;
    parts[p + 1u] = r.y;
    parts[p + 2u] = r.z;
  }
}
`,
};

/**
 * Stage 2 of the forward statistics: batch mean and 1/sqrt(biased var + eps) per channel, and the in-place
 * running-stat update with the unbiased variance (as torch.nn.BatchNorm2d).
 */
export const bnStatsFinal: KernelDef = {
  name: 'batchNormStatsFinal',
  wgsl: /* wgsl */ `
struct Params { C: u32, P: u32, eps: f32, momentum: f32, unbias: f32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> parts: array<f32>;
@group(0) @binding(2) var<storage, read_write> saveMean: array<f32>;
@group(0) @binding(3) var<storage, read_write> saveInvStd: array<f32>;
@group(0) @binding(4) var<storage, read_write> runningMean: array<f32>;
@group(0) @binding(5) var<storage, read_write> runningVar: array<f32>;

var<workgroup> red: array<vec3f, ${REDUCE_WG}>;
${merge}
@compute @workgroup_size(${REDUCE_WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let c = wid.x;
  var acc = vec3f(0.0);
  for (var p = lid.x; p < params.P; p += ${REDUCE_WG}u) {
    let i = (p * params.C + c) * 3u;
    acc = merge(acc, vec3f(parts[i], parts[i + 1u], parts[i + 2u]));
  }
  red[lid.x] = acc;
  workgroupBarrier();
  for (var stride = ${REDUCE_WG / 2}u; stride > 0u; stride >>= 1u) {
    if (lid.x < stride) { red[lid.x] = merge(red[lid.x], red[lid.x + stride]); }
    workgroupBarrier();
  }
  if (lid.x == 0u) {
    let r = red[0];
    let mean = r.y;
    let variance = r.z / r.x;
    saveMean[c] = mean;
    saveInvStd[c] = 1.0 / sqrt(variance + params.eps);
    let m = params.momentum;
    runningMean[c] = m * mean + (1.0 - m) * runningMean[c];
    runningVar[c] = m * (variance * params.unbias) + (1.0 - m) * runningVar[c];
  }
}
`,
};

/** invStd = 1/sqrt(runningVar + eps): the eval-mode statistics, so eval reuses the train kernels. */
export const bnEvalInvStd: KernelDef = {
  name: 'batchNormEvalInvStd',
  wgsl: /* wgsl */ `
struct Params { C: u32, eps: f32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> runningVar: array<f32>;
@group(0) @binding(2) var<storage, read_write> invStd: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  if (gid.x < params.C) { invStd[gid.x] = 1.0 / sqrt(runningVar[gid.x] + params.eps); }
}
`,
};

// Elementwise kernels: a workgroup covers ELEMENTWISE_SPAN consecutive elements of one (n, c) plane, so the
// channel comes from the workgroup index (divisions per workgroup, not per element: they are slow on lavapipe) and
// consecutive invocations touch consecutive elements. Workgroups are numbered over the 2-D grid (planes x pieces
// can exceed 65535).
const elementwiseHead = /* wgsl */ `
struct Params { C: u32, HW: u32, planes: u32, pieces: u32 }
@group(0) @binding(0) var<uniform> params: Params;
`;
const elementwisePlane = /* wgsl */ `
  let L = wid.x + wid.y * nwg.x;
  let plane = L / params.pieces;
  if (plane >= params.planes) { return; }
  let c = plane % params.C;
  let first = plane * params.HW;
  let start = (L - plane * params.pieces) * ${ELEMENTWISE_SPAN}u + lid.x;
  let end = min(start + ${ELEMENTWISE_SPAN}u - lid.x, params.HW);
`;
const elementwiseEntry = /* wgsl */ `@compute @workgroup_size(${ELEMENTWISE_WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u)`;

/** y = (x - mean) * invStd * weight + bias, with (mean, invStd) the batch stats in training, the running ones in eval. */
export const bnNormalize: KernelDef = {
  name: 'batchNormNormalize',
  wgsl: /* wgsl */ `
${elementwiseHead}
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> mean: array<f32>;
@group(0) @binding(3) var<storage, read> invStd: array<f32>;
@group(0) @binding(4) var<storage, read> weight: array<f32>;
@group(0) @binding(5) var<storage, read> bias: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;
${elementwiseEntry} {
${elementwisePlane}
  let mu = mean[c];
  let k = invStd[c] * weight[c];
  let b = bias[c];
  // (x - mean) first: folding mean into a per-channel shift would cancel badly when |mean| >> std.
  for (var s = start; s < end; s += ${ELEMENTWISE_WG}u) { y[first + s] = (x[first + s] - mu) * k + b; }
}
`,
};

/** Stage 1 of the backward sums: per workgroup (sum gy, sum gy * (x - mean)) over a range of channel c. */
export const bnGradPartial: KernelDef = {
  name: 'batchNormGradPartial',
  wgsl: /* wgsl */ `
struct Params { C: u32, HW: u32, M: u32, per: u32, partBase: u32, stepQ: u32, stepR: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> gy: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> mean: array<f32>;
@group(0) @binding(4) var<storage, read_write> parts: array<vec2f>;

var<private> wid_c: u32;
var<workgroup> red: array<vec2f, ${REDUCE_WG}>;
${channelWalk}
@compute @workgroup_size(${REDUCE_WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  wid_c = wid.y;
  let start = wid.x * params.per;
  let end = min(start + params.per, params.M);
  let mu = mean[wid_c];
  var acc = vec2f(0.0);
  var j = start + lid.x;
  if (j < end) {
    var w = walkStart(j);
    loop {
      let g = gy[w.addr];
      acc += vec2f(g, g * (x[w.addr] - mu));
      j += ${REDUCE_WG}u;
      if (j >= end) { break; }
      w = walkNext(w);
    }
  }
  red[lid.x] = acc;
  workgroupBarrier();
  for (var stride = ${REDUCE_WG / 2}u; stride > 0u; stride >>= 1u) {
    if (lid.x < stride) { red[lid.x] += red[lid.x + stride]; }
    workgroupBarrier();
  }
  if (lid.x == 0u) { parts[(params.partBase + wid.x) * params.C + wid_c] = red[0]; }
}
`,
};

/**
 * Stage 2 of the backward sums: gbias = sum gy, gweight = invStd * sum gy (x - mean), and the per-channel
 * coefficients of the training-mode input gradient
 *   gx = weight * invStd * (gy - gbias / M - (x - mean) * invStd * gweight / M)
 * stored as coef[c] = (weight * invStd, gbias / M, invStd * gweight / M).
 */
export const bnGradFinal: KernelDef = {
  name: 'batchNormGradFinal',
  wgsl: /* wgsl */ `
struct Params { C: u32, P: u32, invM: f32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> parts: array<vec2f>;
@group(0) @binding(2) var<storage, read> invStd: array<f32>;
@group(0) @binding(3) var<storage, read> weight: array<f32>;
@group(0) @binding(4) var<storage, read_write> gweight: array<f32>;
@group(0) @binding(5) var<storage, read_write> gbias: array<f32>;
@group(0) @binding(6) var<storage, read_write> coef: array<f32>;

var<workgroup> red: array<vec2f, ${REDUCE_WG}>;
@compute @workgroup_size(${REDUCE_WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let c = wid.x;
  var acc = vec2f(0.0);
  for (var p = lid.x; p < params.P; p += ${REDUCE_WG}u) { acc += parts[p * params.C + c]; }
  red[lid.x] = acc;
  workgroupBarrier();
  for (var stride = ${REDUCE_WG / 2}u; stride > 0u; stride >>= 1u) {
    if (lid.x < stride) { red[lid.x] += red[lid.x + stride]; }
    workgroupBarrier();
  }
  if (lid.x == 0u) {
    let r = red[0];
    let is = invStd[c];
    let gw = r.y * is;
    gbias[c] = r.x;
    gweight[c] = gw;
    coef[3u * c] = weight[c] * is;
    coef[3u * c + 1u] = r.x * params.invM;
    coef[3u * c + 2u] = is * gw * params.invM;
  }
}
`,
};

/** Training-mode input gradient from the coefficients of batchNormGradFinal. */
export const bnGradInputTrain: KernelDef = {
  name: 'batchNormGradInputTrain',
  wgsl: /* wgsl */ `
${elementwiseHead}
@group(0) @binding(1) var<storage, read> gy: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> mean: array<f32>;
@group(0) @binding(4) var<storage, read> coef: array<f32>;
@group(0) @binding(5) var<storage, read_write> gx: array<f32>;
${elementwiseEntry} {
${elementwisePlane}
  let mu = mean[c];
  let k0 = coef[3u * c];
  let k1 = coef[3u * c + 1u];
  let k2 = coef[3u * c + 2u];
  for (var s = start; s < end; s += ${ELEMENTWISE_WG}u) {
    let i = first + s;
    gx[i] = k0 * (gy[i] - k1 - (x[i] - mu) * k2);
  }
}
`,
};

/** Eval-mode input gradient: the op is affine per channel, gx = gy * weight * invStd. */
export const bnGradInputEval: KernelDef = {
  name: 'batchNormGradInputEval',
  wgsl: /* wgsl */ `
${elementwiseHead}
@group(0) @binding(1) var<storage, read> gy: array<f32>;
@group(0) @binding(2) var<storage, read> invStd: array<f32>;
@group(0) @binding(3) var<storage, read> weight: array<f32>;
@group(0) @binding(4) var<storage, read_write> gx: array<f32>;
${elementwiseEntry} {
${elementwisePlane}
  let k = weight[c] * invStd[c];
  for (var s = start; s < end; s += ${ELEMENTWISE_WG}u) { gx[first + s] = gy[first + s] * k; }
}
`,
};

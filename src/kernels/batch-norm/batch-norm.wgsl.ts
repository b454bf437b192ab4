import type { KernelDef } from '../../runtime/kernel.js';

// BatchNorm2d over NCHW tensors, with an optional epilogue fused in: z = relu(bn(x) [+ residual]) (the end of a
// ResNet BasicBlock) and its backward, where dZ = gz * [z > 0] is folded into BatchNorm's own backward passes.
//
// Kernels see one batch slice at a time (the host binds sub-ranges of tensors that exceed the binding limit), so
// every index below is relative to the bound slice: element (n, c, s) of the slice is at (n * C + c) * HW + s.
//
// Loads are what cost on lavapipe (every storage access at a computed address is a per-lane, bounds-checked
// branch), so when a plane's size is a multiple of 4 the kernels move vec4s (`L = 4` lanes per load, all in one
// plane, hence one channel); otherwise scalars (`L = 1`). Sizes in the params (HW, M, per, ...) count loads.
//
// Statistics are reduced in two fixed-order stages, no atomics:
//   stage 1, per slice: workgroup (g, c) reduces a contiguous range of channel c's elements (taken in
//     (n, s) order) into one partial; each invocation walks its own contiguous run of that range, and the runs are
//     merged by a fixed tree; partial p of channel c is stored at parts[p * C + c].
//   stage 2: workgroup c merges its P partials in index order.
// Long contiguous runs per invocation measured fastest here: per-workgroup and per-invocation overheads dominate
// short loops on lavapipe (16 invocations x 64 loads beat 64 x 16 by about 2x).
// The forward statistics are (count, mean, M2) triples: each load's L values give an exact block mean and M2,
// merged into the invocation's running triple with Chan et al.'s formula (Welford's update when L = 1), and the
// triples are merged the same way afterwards, so the variance does not cancel when activations have a large mean.
//
// Per-channel constants travel as one vec4 per channel (one load instead of four):
//   aff[c]  = (mean, invStd * weight, bias, invStd)   y = (x - mean) * aff.y + bias, before the epilogue
//   coef[c] = (gbias / M, invStd * gweight / M, 0, 0)  training-mode input gradient, see bnGradFinal
// The backward recomputes the pre-activation with the same f32 operations as the forward, so a relu mask rebuilt
// from x is bitwise the forward's.

export type Lanes = 1 | 4;

/** Invocations of a stage-1 reduction workgroup. */
export const REDUCE_WG = 16;
/** Invocations of a stage-2 (per-channel merge) workgroup. */
export const FINAL_WG = 64;
export const ELEMENTWISE_WG = 64;
/** Most loads one invocation of an elementwise kernel makes (a run within one plane). */
export const ELEMENTWISE_MAX_LOADS = 32;

/** How the backward gets the relu mask (or none without relu). */
export type ReluMask = 'none' | 'recompute' | 'output';

function lanes(L: Lanes): string {
  return L === 4
    ? /* wgsl */ `
alias T = vec4f;
fn hsum(v: T) -> f32 { return v.x + v.y + v.z + v.w; }
fn sq(v: T) -> f32 { return dot(v, v); }
fn positive(v: T) -> vec4<bool> { return v > T(0.0); }`
    : /* wgsl */ `
alias T = f32;
fn hsum(v: T) -> f32 { return v; }
fn sq(v: T) -> f32 { return v * v; }
fn positive(v: T) -> bool { return v > 0.0; }`;
}

function memo<K extends string, V>(make: (key: K) => V): (key: K) => V {
  const cache = new Map<K, V>();
  return (key) => {
    let v = cache.get(key);
    if (!v) cache.set(key, (v = make(key)));
    return v;
  };
}

// Invocation lid of stage-1 workgroup (g, c) reduces loads [start, end) of channel c's loads in (n, s) order,
// j = img * HW + s: a run of params.run loads within the workgroup's range. The walk steps along a plane and jumps
// to the next image's plane of the same channel, with no division per load.
const channelRun = /* wgsl */ `
struct Run { addr: u32, s: u32, start: u32, end: u32 }
fn channelRun(wid: vec3u, lid: u32) -> Run {
  let wgStart = wid.x * params.per;
  let start = wgStart + lid * params.run;
  let end = min(min(start + params.run, wgStart + params.per), params.M);
  let img = start / params.HW;
  let s = start - img * params.HW;
  return Run((img * params.C + wid.y) * params.HW + s, s, start, end);
}
fn runNext(r: Run) -> Run {
  var q = r;
  q.addr += 1u;
  q.s += 1u;
  if (q.s == params.HW) {
    q.s = 0u;
    q.addr += (params.C - 1u) * params.HW;
  }
  return q;
}
`;

const reduceHead = /* wgsl */ `
struct Params { C: u32, HW: u32, M: u32, per: u32, run: u32, partBase: u32 }
@group(0) @binding(0) var<uniform> params: Params;
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
export const bnStatsPartial = memo(
  (key: `${Lanes}`): KernelDef => ({
    name: key === '4' ? 'batchNormStatsPartialVec4' : 'batchNormStatsPartial',
    wgsl: /* wgsl */ `
${reduceHead}
@group(0) @binding(1) var<storage, read> x: array<T>;
// (count, mean, M2) triples; count is a float (exact up to 2^24 elements per partial).
@group(0) @binding(2) var<storage, read_write> parts: array<f32>;
${lanes(Number(key) as Lanes)}
const L = ${key}.0;
var<workgroup> red: array<vec3f, ${REDUCE_WG}>;
${channelRun}
${merge}
@compute @workgroup_size(${REDUCE_WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  var r = channelRun(wid, lid.x);
  var n = 0.0;
  var mean = 0.0;
  var m2 = 0.0;
  for (var j = r.start; j < r.end; j++) {
    let v = x[r.addr];
    // The load's L values: exact block mean and M2, merged into (n, mean, m2).
    let blockMean = hsum(v) * (1.0 / L);
    let n1 = n + L;
    let d = blockMean - mean;
    let f = L / n1;
    mean += d * f;
    m2 += sq(v - T(blockMean)) + d * d * n * f;
    n = n1;
    r = runNext(r);
  }
  let acc = vec3f(n, mean, m2);
  red[lid.x] = acc;
  workgroupBarrier();
  for (var stride = ${REDUCE_WG / 2}u; stride > 0u; stride >>= 1u) {
    if (lid.x < stride) { red[lid.x] = merge(red[lid.x], red[lid.x + stride]); }
    workgroupBarrier();
  }
  if (lid.x == 0u) {
    let p = ((params.partBase + wid.x) * params.C + wid.y) * 3u;
    let r = red[0];
    parts[p] = r.x;
    parts[p + 1u] = r.y;
    parts[p + 2u] = r.z;
  }
}
`,
  }),
);

/**
 * Stage 2 of the forward statistics: batch mean and 1/sqrt(biased var + eps) per channel, the in-place
 * running-stat update with the unbiased variance (as torch.nn.BatchNorm2d), and aff for the apply pass.
 */
export const bnStatsFinal: KernelDef = {
  name: 'batchNormStatsFinal',
  wgsl: /* wgsl */ `
struct Params { C: u32, P: u32, eps: f32, momentum: f32, unbias: f32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> parts: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> saveMean: array<f32>;
@group(0) @binding(5) var<storage, read_write> saveInvStd: array<f32>;
@group(0) @binding(6) var<storage, read_write> runningMean: array<f32>;
@group(0) @binding(7) var<storage, read_write> runningVar: array<f32>;
@group(0) @binding(8) var<storage, read_write> aff: array<vec4f>;

var<workgroup> red: array<vec3f, ${FINAL_WG}>;
${merge}
@compute @workgroup_size(${FINAL_WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let c = wid.x;
  var acc = vec3f(0.0);
  for (var p = lid.x; p < params.P; p += ${FINAL_WG}u) {
    let i = (p * params.C + c) * 3u;
    acc = merge(acc, vec3f(parts[i], parts[i + 1u], parts[i + 2u]));
  }
  red[lid.x] = acc;
  workgroupBarrier();
  for (var stride = ${FINAL_WG / 2}u; stride > 0u; stride >>= 1u) {
    if (lid.x < stride) { red[lid.x] = merge(red[lid.x], red[lid.x + stride]); }
    workgroupBarrier();
  }
  if (lid.x == 0u) {
    let r = red[0];
    let mean = r.y;
    let variance = r.z / r.x;
    let invStd = 1.0 / sqrt(variance + params.eps);
    saveMean[c] = mean;
    saveInvStd[c] = invStd;
    aff[c] = vec4f(mean, invStd * weight[c], bias[c], invStd);
    let m = params.momentum;
    runningMean[c] = m * mean + (1.0 - m) * runningMean[c];
    runningVar[c] = m * (variance * params.unbias) + (1.0 - m) * runningVar[c];
  }
}
`,
};

/**
 * aff from given statistics: the running ones in eval mode (invStd = 1/sqrt(var + eps)), or the forward's saved
 * batch ones for the backward. Without a bias binding aff.z is 0 (the backward needs it only to rebuild a relu mask).
 */
export const bnAffine = memo(
  (key: `${'variance' | 'invStd'}${'' | '+bias'}`): KernelDef => {
    const source = key.startsWith('variance') ? 'variance' : 'invStd';
    const bias = key.endsWith('+bias');
    return {
      name: `${source === 'variance' ? 'batchNormEvalAffine' : 'batchNormSavedAffine'}${bias ? '' : 'NoBias'}`,
      wgsl: /* wgsl */ `
struct Params { C: u32, eps: f32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> mean: array<f32>;
@group(0) @binding(2) var<storage, read> ${source}: array<f32>;
@group(0) @binding(3) var<storage, read> weight: array<f32>;
${bias ? '@group(0) @binding(4) var<storage, read> bias: array<f32>;' : ''}
@group(0) @binding(5) var<storage, read_write> aff: array<vec4f>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let c = gid.x;
  if (c >= params.C) { return; }
  let is = ${source === 'variance' ? '1.0 / sqrt(variance[c] + params.eps)' : 'invStd[c]'};
  aff[c] = vec4f(mean[c], is * weight[c], ${bias ? 'bias[c]' : '0.0'}, is);
}
`,
    };
  },
);

// Elementwise kernels: invocation i makes up to params.run consecutive loads of one (n, c) plane (plane
// i / params.runs, run i % params.runs), so the channel and its constants are found once per invocation, not per
// element (integer division is slow on lavapipe). Invocations are numbered over a 2-D grid (rt.grid).
const elementwiseHead = /* wgsl */ `
struct Params { C: u32, HW: u32, invocations: u32, runs: u32, run: u32 }
@group(0) @binding(0) var<uniform> params: Params;
`;
const elementwisePlane = /* wgsl */ `
  let inv = gid.x + gid.y * nwg.x * ${ELEMENTWISE_WG}u;
  if (inv >= params.invocations) { return; }
  let plane = inv / params.runs;
  let c = plane % params.C;
  let s0 = (inv - plane * params.runs) * params.run;
  let start = plane * params.HW + s0;
  let end = start + min(params.run, params.HW - s0);
`;
const elementwiseEntry = /* wgsl */ `@compute @workgroup_size(${ELEMENTWISE_WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u)`;

export interface ApplyVariant {
  L: Lanes;
  relu: boolean;
  residual: boolean;
}

/** y = relu((x - mean) * invStd * weight + bias [+ residual]), relu and residual optional. */
export const bnApply = memo(
  (key: `${Lanes}${'r' | '-'}${'a' | '-'}`): KernelDef => {
    const [L, relu, residual] = [Number(key[0]) as Lanes, key[1] === 'r', key[2] === 'a'];
    return {
      name: `batchNormApply${relu ? 'Relu' : ''}${residual ? 'Add' : ''}${L === 4 ? 'Vec4' : ''}`,
      wgsl: /* wgsl */ `
${elementwiseHead}
${lanes(L)}
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read> aff: array<vec4f>;
${residual ? '@group(0) @binding(3) var<storage, read> residual: array<T>;' : ''}
@group(0) @binding(4) var<storage, read_write> y: array<T>;
${elementwiseEntry} {
${elementwisePlane}
  let a = aff[c];
  for (var i = start; i < end; i++) {
    // (x - mean) first: folding mean into a per-channel shift would cancel badly when |mean| >> std.
    var v = (x[i] - T(a.x)) * a.y + a.z;
    ${residual ? 'v += residual[i];' : ''}
    ${relu ? 'v = max(v, T(0.0));' : ''}
    y[i] = v;
  }
}
`,
    };
  },
);

export function applyKey(v: ApplyVariant): `${Lanes}${'r' | '-'}${'a' | '-'}` {
  return `${v.L}${v.relu ? 'r' : '-'}${v.residual ? 'a' : '-'}`;
}

// The backward's dZ (the gradient reaching the BatchNorm output): gy where no relu was applied, else gy where the
// forward's output was positive, that output either recomputed from x and aff (bitwise the forward's value) or
// read back (when a residual entered it).
// `xc` is x - mean at the same index.
function maskedGrad(mask: ReluMask, i: string): string {
  if (mask === 'none') return `gy[${i}]`;
  const positive = mask === 'output' ? `positive(y[${i}])` : `positive(xc * a.y + a.z)`;
  return `select(T(0.0), gy[${i}], ${positive})`;
}

export interface GradPartialVariant {
  L: Lanes;
  mask: ReluMask;
  /** Also store dZ (the residual's gradient). */
  writeDz: boolean;
}

/** Stage 1 of the backward sums: per workgroup (sum dZ, sum dZ * (x - mean)) over a range of channel c. */
export const bnGradPartial = memo((key: string): KernelDef => {
  const v = JSON.parse(key) as GradPartialVariant;
  const L = v.L;
  return {
    name: `batchNormGradPartial${v.mask === 'recompute' ? 'Relu' : v.mask === 'output' ? 'ReluOut' : ''}${v.writeDz ? 'Dz' : ''}${L === 4 ? 'Vec4' : ''}`,
    wgsl: /* wgsl */ `
${reduceHead}
${lanes(L)}
@group(0) @binding(1) var<storage, read> gy: array<T>;
@group(0) @binding(2) var<storage, read> x: array<T>;
@group(0) @binding(3) var<storage, read> aff: array<vec4f>;
${v.mask === 'output' ? '@group(0) @binding(4) var<storage, read> y: array<T>;' : ''}
${v.writeDz ? '@group(0) @binding(5) var<storage, read_write> dz: array<T>;' : ''}
@group(0) @binding(6) var<storage, read_write> parts: array<vec2f>;

var<workgroup> red: array<vec2f, ${REDUCE_WG}>;
${channelRun}
@compute @workgroup_size(${REDUCE_WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let a = aff[wid.y];
  var r = channelRun(wid, lid.x);
  var acc = vec2f(0.0);
  for (var j = r.start; j < r.end; j++) {
    let xc = x[r.addr] - T(a.x);
    let g = ${maskedGrad(v.mask, 'r.addr')};
    ${v.writeDz ? 'dz[r.addr] = g;' : ''}
    acc += vec2f(hsum(g), hsum(g * xc));
    r = runNext(r);
  }
  red[lid.x] = acc;
  workgroupBarrier();
  for (var stride = ${REDUCE_WG / 2}u; stride > 0u; stride >>= 1u) {
    if (lid.x < stride) { red[lid.x] += red[lid.x + stride]; }
    workgroupBarrier();
  }
  if (lid.x == 0u) { parts[(params.partBase + wid.x) * params.C + wid.y] = red[0]; }
}
`,
  };
});

/**
 * Stage 2 of the backward sums: gbias = sum dZ, gweight = invStd * sum dZ (x - mean), and the per-channel
 * coefficients of the training-mode input gradient
 *   gx = weight * invStd * (dZ - gbias / M - (x - mean) * invStd * gweight / M)
 * stored as coef[c] = (gbias / M, invStd * gweight / M); weight * invStd is aff.y.
 */
export const bnGradFinal: KernelDef = {
  name: 'batchNormGradFinal',
  wgsl: /* wgsl */ `
struct Params { C: u32, P: u32, invM: f32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> parts: array<vec2f>;
@group(0) @binding(2) var<storage, read> aff: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> gweight: array<f32>;
@group(0) @binding(4) var<storage, read_write> gbias: array<f32>;
@group(0) @binding(5) var<storage, read_write> coef: array<vec4f>;

var<workgroup> red: array<vec2f, ${FINAL_WG}>;
@compute @workgroup_size(${FINAL_WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let c = wid.x;
  var acc = vec2f(0.0);
  for (var p = lid.x; p < params.P; p += ${FINAL_WG}u) { acc += parts[p * params.C + c]; }
  red[lid.x] = acc;
  workgroupBarrier();
  for (var stride = ${FINAL_WG / 2}u; stride > 0u; stride >>= 1u) {
    if (lid.x < stride) { red[lid.x] += red[lid.x + stride]; }
    workgroupBarrier();
  }
  if (lid.x == 0u) {
    let r = red[0];
    let is = aff[c].w;
    let gw = r.y * is;
    gbias[c] = r.x;
    gweight[c] = gw;
    coef[c] = vec4f(r.x * params.invM, is * gw * params.invM, 0.0, 0.0);
  }
}
`,
};

export interface GradInputVariant {
  L: Lanes;
  /** train: batch statistics (x enters them); eval: running statistics (the op is affine per channel). */
  mode: 'train' | 'eval';
  /** Where dZ comes from: a stored dz tensor, or gy with the relu mask applied here. */
  source: 'dz' | ReluMask;
}

/** The input gradient from dZ: train k * (dZ - coef.x - (x - mean) * coef.y), eval k * dZ, with k = aff.y. */
export const bnGradInput = memo((key: string): KernelDef => {
  const v = JSON.parse(key) as GradInputVariant;
  const L = v.L;
  const needsX = v.mode === 'train' || v.source === 'recompute';
  const dz = v.source === 'dz' ? 'dz[i]' : maskedGrad(v.source, 'i');
  const sourceName = v.source === 'dz' ? 'Dz' : v.source === 'recompute' ? 'Relu' : v.source === 'output' ? 'ReluOut' : '';
  return {
    name: `batchNormGradInput${v.mode === 'train' ? 'Train' : 'Eval'}${sourceName}${L === 4 ? 'Vec4' : ''}`,
    wgsl: /* wgsl */ `
${elementwiseHead}
${lanes(L)}
${v.source === 'dz' ? '@group(0) @binding(1) var<storage, read> dz: array<T>;' : '@group(0) @binding(1) var<storage, read> gy: array<T>;'}
${needsX ? '@group(0) @binding(2) var<storage, read> x: array<T>;' : ''}
${v.source === 'output' ? '@group(0) @binding(3) var<storage, read> y: array<T>;' : ''}
@group(0) @binding(4) var<storage, read> aff: array<vec4f>;
${v.mode === 'train' ? '@group(0) @binding(5) var<storage, read> coef: array<vec4f>;' : ''}
@group(0) @binding(6) var<storage, read_write> gx: array<T>;
${elementwiseEntry} {
${elementwisePlane}
  let a = aff[c];
  ${v.mode === 'train' ? 'let k = coef[c];' : ''}
  for (var i = start; i < end; i++) {
    ${needsX ? 'let xc = x[i] - T(a.x);' : ''}
    gx[i] = ${v.mode === 'train' ? `a.y * (${dz} - k.x - xc * k.y)` : `${dz} * a.y`};
  }
}
`,
  };
});

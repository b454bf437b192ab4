import type { KernelDef } from '../../runtime/kernel.js';
import { FLAT_WG } from '../../runtime/workgroup.js';

// Softmax cross-entropy over logits [N, C] (row-major) with i32 labels [N], one workgroup per row (rows folded
// over x and y of the grid). Kernels see one batch slice at a time. As PyTorch's default ignore_index, label -100
// gives a loss of 0 and a zero gradient row, and leaves the row out of the mean's count; any other label outside
// [0, C) gives a NaN loss and a NaN gradient row (params.nan carries the value: WGSL constant expressions cannot
// make a NaN).

export const CE_WG = 64;
export const CE_SUM_WG = FLAT_WG;
/** torch.nn.functional.cross_entropy's default ignore_index. */
export const IGNORE_INDEX = -100;

// Number of labels that are not IGNORE_INDEX among labels[0 .. params.n), as f32 (exact up to 2^24 rows), reduced
// over a CE_SUM_WG workgroup in a fixed tree order; every invocation gets the total.
const countKept = /* wgsl */ `
var<workgroup> kept: array<u32, ${CE_SUM_WG}>;
fn countKept(lid: u32) -> f32 {
  var k = 0u;
  for (var i = lid; i < params.n; i += ${CE_SUM_WG}u) { k += select(1u, 0u, labels[i] == ${IGNORE_INDEX}); }
  kept[lid] = k;
  workgroupBarrier();
  for (var s = ${CE_SUM_WG / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { kept[lid] += kept[lid + s]; }
    workgroupBarrier();
  }
  return f32(kept[0]);
}
`;

// Row max and sum of exp(x - max), reduced over the workgroup in a fixed tree order.
const rowStats = /* wgsl */ `
var<workgroup> red: array<f32, ${CE_WG}>;

struct RowStats { max: f32, sumExp: f32 }
fn rowStats(base: u32, lid: u32) -> RowStats {
  var m = params.negInf;
  for (var j = lid; j < params.C; j += ${CE_WG}u) { m = max(m, logits[base + j]); }
  red[lid] = m;
  workgroupBarrier();
  for (var s = ${CE_WG / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] = max(red[lid], red[lid + s]); }
    workgroupBarrier();
  }
  m = red[0];
  workgroupBarrier();
  var e = 0.0;
  for (var j = lid; j < params.C; j += ${CE_WG}u) { e += exp(logits[base + j] - m); }
  red[lid] = e;
  workgroupBarrier();
  for (var s = ${CE_WG / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  let total = red[0];
  workgroupBarrier();
  return RowStats(m, total);
}
`;

/**
 * losses[n] = logsumexp(logits[n]) - logits[n, label[n]], computed as (max - x_label) + log(sum exp(x - max));
 * 0 for an ignored row.
 */
export const crossEntropyForward: KernelDef = {
  name: 'crossEntropyForward',
  wgsl: /* wgsl */ `
struct Params { rows: u32, C: u32, negInf: f32, nan: f32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<i32>;
@group(0) @binding(3) var<storage, read_write> losses: array<f32>;
${rowStats}
@compute @workgroup_size(${CE_WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= params.rows) { return; } // uniform per workgroup, so the barriers below stay in uniform control flow
  let base = row * params.C;
  let st = rowStats(base, lid.x);
  if (lid.x == 0u) {
    let label = labels[row];
    if (label == ${IGNORE_INDEX}) {
      losses[row] = 0.0;
    } else if (label < 0 || u32(label) >= params.C) {
      losses[row] = params.nan;
    } else {
      losses[row] = (st.max - logits[base + u32(label)]) + log(st.sumExp);
    }
  }
}
`,
};

/**
 * sum and mean of the per-example losses in one workgroup: each invocation sums a strided subset in order with
 * Kahan compensation, then a fixed tree. The result is deterministic and within a few ulps of the exact sum.
 * The mean divides by the rows not ignored (ignored rows add 0 to the sum); with none left it is NaN, as PyTorch's.
 */
export const crossEntropySum: KernelDef = {
  name: 'crossEntropySum',
  wgsl: /* wgsl */ `
struct Params { n: u32, nan: f32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> losses: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<i32>;
@group(0) @binding(3) var<storage, read_write> sum: array<f32>;
@group(0) @binding(4) var<storage, read_write> mean: array<f32>;

var<workgroup> red: array<f32, ${CE_SUM_WG}>;
${countKept}
@compute @workgroup_size(${CE_SUM_WG})
fn main(@builtin(local_invocation_id) lid: vec3u) {
  let count = countKept(lid.x);
  var s = 0.0;
  var comp = 0.0;
  for (var i = lid.x; i < params.n; i += ${CE_SUM_WG}u) {
    let yv = losses[i] - comp;
    let t = s + yv;
    comp = (t - s) - yv;
    s = t;
  }
  red[lid.x] = s;
  workgroupBarrier();
  for (var k = ${CE_SUM_WG / 2}u; k > 0u; k >>= 1u) {
    if (lid.x < k) { red[lid.x] += red[lid.x + k]; }
    workgroupBarrier();
  }
  if (lid.x == 0u) {
    sum[0] = red[0];
    mean[0] = select(params.nan, red[0] / count, count > 0.0);
  }
}
`,
};

/**
 * dlogits[n, j] = (softmax(logits[n])_j - [j == label[n]]) * g[n * gStride] * scale: gStride 1 reads per-example
 * gradients (reduction 'none'), gStride 0 one upstream scalar (reduction 'sum' with scale 1; 'mean' reads the
 * scalar that crossEntropyMeanScale made). Ignored rows get 0.
 */
export const crossEntropyBackward: KernelDef = {
  name: 'crossEntropyBackward',
  wgsl: /* wgsl */ `
struct Params { rows: u32, C: u32, gStride: u32, scale: f32, negInf: f32, nan: f32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<i32>;
@group(0) @binding(3) var<storage, read> g: array<f32>;
@group(0) @binding(4) var<storage, read_write> dlogits: array<f32>;
${rowStats}
@compute @workgroup_size(${CE_WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= params.rows) { return; }
  let base = row * params.C;
  let st = rowStats(base, lid.x);
  let label = labels[row];
  let valid = label >= 0 && u32(label) < params.C;
  let gv = g[row * params.gStride] * params.scale;
  let inv = 1.0 / st.sumExp;
  for (var j = lid.x; j < params.C; j += ${CE_WG}u) {
    var p = exp(logits[base + j] - st.max) * inv;
    if (i32(j) == label) { p -= 1.0; }
    dlogits[base + j] = select(select(params.nan, p * gv, valid), 0.0, label == ${IGNORE_INDEX});
  }
}
`,
};

/**
 * The upstream gradient of reduction 'mean' divided by the number of rows not ignored: out[0] = g[0] / count
 * (0 when every row is ignored: then every gradient row is 0 anyway).
 */
export const crossEntropyMeanScale: KernelDef = {
  name: 'crossEntropyMeanScale',
  wgsl: /* wgsl */ `
struct Params { n: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> labels: array<i32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
${countKept}
@compute @workgroup_size(${CE_SUM_WG})
fn main(@builtin(local_invocation_id) lid: vec3u) {
  let count = countKept(lid.x);
  if (lid.x == 0u) { out[0] = select(0.0, g[0] / count, count > 0.0); }
}
`,
};

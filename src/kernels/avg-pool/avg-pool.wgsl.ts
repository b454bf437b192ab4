import type { KernelDef } from '../../runtime/kernel.js';
import { FLAT_WG } from '../../runtime/workgroup.js';

// adaptive_avg_pool2d over NCHW as PyTorch: output (oh, ow) averages input rows [floor(oh*H/OH), ceil((oh+1)*H/OH))
// and the matching columns. Windows can overlap when H is not a multiple of OH. One invocation per output element
// (forward) or input element (backward): with ResNet's 7x7 -> 1x1 a sequential sum per plane beats a workgroup
// reduction. Kernels see one batch slice at a time; `plane` = n * C + c within the slice.

export const AVG_POOL_WG = FLAT_WG;

const params = /* wgsl */ `
struct Params { n: u32, H: u32, W: u32, OH: u32, OW: u32 }
@group(0) @binding(0) var<uniform> params: Params;

fn windowStart(o: u32, size: u32, outSize: u32) -> u32 { return (o * size) / outSize; }
fn windowEnd(o: u32, size: u32, outSize: u32) -> u32 { return ((o + 1u) * size + outSize - 1u) / outSize; }
`;

export const adaptiveAvgPoolForward: KernelDef = {
  name: 'adaptiveAvgPool2dForward',
  wgsl: /* wgsl */ `
${params}
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(${AVG_POOL_WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * ${AVG_POOL_WG}u;
  if (i >= params.n) { return; }
  let p = params;
  let plane = i / (p.OH * p.OW);
  let o = i - plane * (p.OH * p.OW);
  let oh = o / p.OW;
  let ow = o - oh * p.OW;
  let h0 = windowStart(oh, p.H, p.OH);
  let h1 = windowEnd(oh, p.H, p.OH);
  let w0 = windowStart(ow, p.W, p.OW);
  let w1 = windowEnd(ow, p.W, p.OW);
  let base = plane * p.H * p.W;
  var sum = 0.0;
  for (var ih = h0; ih < h1; ih++) {
    for (var iw = w0; iw < w1; iw++) { sum += x[base + ih * p.W + iw]; }
  }
  y[i] = sum / f32((h1 - h0) * (w1 - w0));
}
`,
};

// Each input element gathers gy / windowSize from the outputs whose window covers it: rows
// oh in [floor(ih*OH/H), ceil((ih+1)*OH/H)), likewise columns.
export const adaptiveAvgPoolBackward: KernelDef = {
  name: 'adaptiveAvgPool2dBackward',
  wgsl: /* wgsl */ `
${params}
@group(0) @binding(1) var<storage, read> gy: array<f32>;
@group(0) @binding(2) var<storage, read_write> gx: array<f32>;

@compute @workgroup_size(${AVG_POOL_WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * ${AVG_POOL_WG}u;
  if (i >= params.n) { return; }
  let p = params;
  let plane = i / (p.H * p.W);
  let k = i - plane * (p.H * p.W);
  let ih = k / p.W;
  let iw = k - ih * p.W;
  let oh0 = (ih * p.OH) / p.H;
  let oh1 = ((ih + 1u) * p.OH + p.H - 1u) / p.H;
  let ow0 = (iw * p.OW) / p.W;
  let ow1 = ((iw + 1u) * p.OW + p.W - 1u) / p.W;
  let base = plane * p.OH * p.OW;
  var sum = 0.0;
  for (var oh = oh0; oh < oh1; oh++) {
    let rows = windowEnd(oh, p.H, p.OH) - windowStart(oh, p.H, p.OH);
    for (var ow = ow0; ow < ow1; ow++) {
      let cols = windowEnd(ow, p.W, p.OW) - windowStart(ow, p.W, p.OW);
      sum += gy[base + oh * p.OW + ow] / f32(rows * cols);
    }
  }
  gx[i] = sum;
}
`,
};

// The global pool's backward (output 1x1, ResNet's): every element of a plane gets gy / (H * W). One invocation
// per plane, which reads gy once and stores the plane, as vec4s when H * W is a multiple of 4.
const globalBackward = new Map<number, KernelDef>();
export function adaptiveAvgPoolBackwardGlobal(L: 1 | 4): KernelDef {
  let def = globalBackward.get(L);
  if (!def) {
    const T = L === 4 ? 'vec4f' : 'f32';
    def = {
      name: `adaptiveAvgPool2dBackwardGlobal${L === 4 ? 'Vec4' : ''}`,
      wgsl: /* wgsl */ `
struct Params { planes: u32, HW: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> gy: array<f32>;
@group(0) @binding(2) var<storage, read_write> gx: array<${T}>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let plane = gid.x + gid.y * nwg.x * 64u;
  if (plane >= params.planes) { return; }
  let v = ${T}(gy[plane] / f32(params.HW));
  let loads = params.HW / ${L}u;
  let base = plane * loads;
  for (var i = 0u; i < loads; i++) { gx[base + i] = v; }
}
`,
    };
    globalBackward.set(L, def);
  }
  return def;
}

import type { KernelDef } from '../kernel.js';
import { FLAT_WG } from '../workgroup.js';

// Elementwise kernels over flat f32 arrays. Invocation i handles element i; a 2-D grid (rt.grid) lifts the
// 65535-workgroup cap, so i = gid.x + gid.y * (workgroups in x) * FLAT_WG.

const header = /* wgsl */ `
struct Params { n: u32 }
@group(0) @binding(0) var<uniform> params: Params;
fn flatIndex(gid: vec3u, nwg: vec3u) -> u32 { return gid.x + gid.y * nwg.x * ${FLAT_WG}u; }
`;

export const reluForwardKernel: KernelDef = {
  name: 'reluForward',
  wgsl: /* wgsl */ `${header}
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(${FLAT_WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flatIndex(gid, nwg);
  if (i < params.n) { y[i] = max(x[i], 0.0); }
}`,
};

// Uses the forward output: y > 0 exactly where x > 0, and PyTorch's relu backward also passes no gradient at 0.
export const reluBackwardKernel: KernelDef = {
  name: 'reluBackward',
  wgsl: /* wgsl */ `${header}
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read> gy: array<f32>;
@group(0) @binding(3) var<storage, read_write> gx: array<f32>;
@compute @workgroup_size(${FLAT_WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flatIndex(gid, nwg);
  if (i < params.n) { gx[i] = select(0.0, gy[i], y[i] > 0.0); }
}`,
};

export const addKernel: KernelDef = {
  name: 'add',
  wgsl: /* wgsl */ `${header}
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(${FLAT_WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flatIndex(gid, nwg);
  if (i < params.n) { out[i] = a[i] + b[i]; }
}`,
};

/** acc += x, in place (gradient accumulation). */
export const accumulateKernel: KernelDef = {
  name: 'accumulate',
  wgsl: /* wgsl */ `${header}
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> acc: array<f32>;
@compute @workgroup_size(${FLAT_WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flatIndex(gid, nwg);
  if (i < params.n) { acc[i] = acc[i] + x[i]; }
}`,
};

/** out = x * scalar[0]: broadcasts a one-element GPU tensor (the upstream gradient of a sum) without a readback. */
export const scaleByTensorKernel: KernelDef = {
  name: 'scaleByTensor',
  wgsl: /* wgsl */ `
struct Params { n: u32, factor: f32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> scalar: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(${FLAT_WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * ${FLAT_WG}u;
  if (i < params.n) { out[i] = x[i] * scalar[0] * params.factor; }
}`,
};

/** out = scalar[0] * factor everywhere (the gradient of sum/mean broadcast back to its input's shape). */
export const broadcastScalarKernel: KernelDef = {
  name: 'broadcastScalar',
  wgsl: /* wgsl */ `
struct Params { n: u32, factor: f32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> scalar: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(${FLAT_WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * ${FLAT_WG}u;
  if (i < params.n) { out[i] = scalar[0] * params.factor; }
}`,
};

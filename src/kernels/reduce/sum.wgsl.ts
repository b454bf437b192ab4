import type { KernelDef } from '../../runtime/kernel.js';
import { FLAT_WG } from '../../runtime/workgroup.js';

// Deterministic sum of a flat f32 array in two fixed-order stages (no float atomics):
// stage 1: each of 256 workgroups sums one contiguous block of the input into partials[group];
// stage 2: one workgroup sums the partials. Both stages reduce in workgroup memory as a fixed binary tree.

export const SUM_GROUPS = 256;

export const sumPartialsKernel: KernelDef = {
  name: 'sumPartials',
  wgsl: /* wgsl */ `
struct Params { n: u32, block: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> partials: array<f32>;
var<workgroup> scratch: array<f32, ${FLAT_WG}>;

@compute @workgroup_size(${FLAT_WG})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3u) {
  let start = wg.x * params.block;
  let end = min(start + params.block, params.n);
  var s = 0.0;
  for (var i = start + lid; i < end; i += ${FLAT_WG}u) { s += x[i]; }
  scratch[lid] = s;
  workgroupBarrier();
  for (var half = ${FLAT_WG / 2}u; half > 0u; half >>= 1u) {
    if (lid < half) { scratch[lid] += scratch[lid + half]; }
    workgroupBarrier();
  }
  if (lid == 0u) { partials[wg.x] = scratch[0]; }
}`,
};

export const sumFinalKernel: KernelDef = {
  name: 'sumFinal',
  wgsl: /* wgsl */ `
struct Params { n: u32, factor: f32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> partials: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
var<workgroup> scratch: array<f32, ${FLAT_WG}>;

@compute @workgroup_size(${FLAT_WG})
fn main(@builtin(local_invocation_index) lid: u32) {
  var s = 0.0;
  for (var i = lid; i < params.n; i += ${FLAT_WG}u) { s += partials[i]; }
  scratch[lid] = s;
  workgroupBarrier();
  for (var half = ${FLAT_WG / 2}u; half > 0u; half >>= 1u) {
    if (lid < half) { scratch[lid] += scratch[lid + half]; }
    workgroupBarrier();
  }
  if (lid == 0u) { out[0] = scratch[0] * params.factor; }
}`,
};

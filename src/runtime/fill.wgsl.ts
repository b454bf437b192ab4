import type { KernelDef } from './kernel.js';
import { FLAT_WG } from './workgroup.js';

// Writes the same 32-bit pattern to every element, so one kernel fills f32, i32 and u32 tensors.
export const fillWgsl: KernelDef = {
  name: 'fill',
  wgsl: /* wgsl */ `
struct Params { n: u32, bits: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;

@compute @workgroup_size(${FLAT_WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * ${FLAT_WG}u;
  if (i < params.n) { out[i] = params.bits; }
}
`,
};

import type { KernelDef } from '../../runtime/kernel.js';

// Counts rows of logits [N, C] whose argmax equals the label, one invocation per row. argmax as torch.argmax: the
// first maximum wins, and a NaN counts as larger than everything (the first NaN wins). The count is an integer
// atomic, so its value does not depend on the order of the additions.

export const ACCURACY_WG = 64;

export const accuracyCountKernel: KernelDef = {
  name: 'accuracyCount',
  wgsl: /* wgsl */ `
struct Params { rows: u32, C: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<i32>;
@group(0) @binding(3) var<storage, read_write> count: array<atomic<u32>>;

// On the bits: compilers may assume NaN-free floats and fold v != v to false (lavapipe does).
fn isNan(v: f32) -> bool {
  return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

var<workgroup> hits: atomic<u32>;

@compute @workgroup_size(${ACCURACY_WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let row = gid.x + gid.y * nwg.x * ${ACCURACY_WG}u;
  if (row < params.rows) {
    let base = row * params.C;
    var best = logits[base];
    var arg = 0u;
    for (var j = 1u; j < params.C && !isNan(best); j++) {
      let v = logits[base + j];
      if (v > best || isNan(v)) {
        best = v;
        arg = j;
      }
    }
    if (i32(arg) == labels[row]) { atomicAdd(&hits, 1u); }
  }
  workgroupBarrier();
  if (lid.x == 0u) {
    let h = atomicLoad(&hits);
    if (h > 0u) { atomicAdd(&count[0], h); }
  }
}
`,
};

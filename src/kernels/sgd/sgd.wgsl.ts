import type { KernelDef } from '../kernel.js';
import { FLAT_WG } from '../workgroup.js';

// One SGD step for one parameter tensor, in place, exactly as torch.optim.SGD (1.13, foreach=False):
//   g = grad + weight_decay * p
//   momentum != 0: buf = first step ? g : momentum * buf + (1 - dampening) * g
//                  g = nesterov ? g + momentum * buf : buf
//   p = p - lr * g
export const sgdUpdateKernel: KernelDef = {
  name: 'sgdUpdate',
  wgsl: /* wgsl */ `
struct Params { n: u32, lr: f32, weightDecay: f32, momentum: f32, dampening: f32, nesterov: u32, firstStep: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> momentumBuffer: array<f32>;

@compute @workgroup_size(${FLAT_WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * ${FLAT_WG}u;
  if (i >= params.n) { return; }
  let p = param[i];
  var g = grad[i];
  if (params.weightDecay != 0.0) { g = g + params.weightDecay * p; }
  if (params.momentum != 0.0) {
    var buf = g;
    if (params.firstStep == 0u) { buf = params.momentum * momentumBuffer[i] + (1.0 - params.dampening) * g; }
    momentumBuffer[i] = buf;
    g = select(buf, g + params.momentum * buf, params.nesterov != 0u);
  }
  param[i] = p - params.lr * g;
}`,
};

// Without momentum there is no buffer to keep; a separate entry avoids binding a dummy.
export const sgdUpdateNoMomentumKernel: KernelDef = {
  name: 'sgdUpdateNoMomentum',
  wgsl: /* wgsl */ `
struct Params { n: u32, lr: f32, weightDecay: f32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;

@compute @workgroup_size(${FLAT_WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * ${FLAT_WG}u;
  if (i >= params.n) { return; }
  let p = param[i];
  param[i] = p - params.lr * (grad[i] + params.weightDecay * p);
}`,
};

import { flatKernel, type FlatLanes } from '../../runtime/flat.js';
import type { KernelDef } from '../../runtime/kernel.js';

// One SGD step for one parameter tensor, in place, exactly as torch.optim.SGD (1.13, foreach=False):
//   g = grad + weight_decay * p
//   momentum != 0: buf = first step ? g : momentum * buf + (1 - dampening) * g
//                  g = nesterov ? g + momentum * buf : buf
//   p = p - lr * g
// Flat kernels (src/runtime/flat.ts): L elements per load, the same arithmetic per component.
const withMomentum = new Map<FlatLanes, KernelDef>();
const withoutMomentum = new Map<FlatLanes, KernelDef>();

export function sgdUpdateKernel(L: FlatLanes): KernelDef {
  let def = withMomentum.get(L);
  if (!def) {
    def = flatKernel('sgdUpdate', L, {
      params: 'lr: f32, weightDecay: f32, momentum: f32, dampening: f32, nesterov: u32, firstStep: u32',
      bindings: /* wgsl */ `
@group(0) @binding(1) var<storage, read_write> param: array<T>;
@group(0) @binding(2) var<storage, read> grad: array<T>;
@group(0) @binding(3) var<storage, read_write> momentumBuffer: array<T>;`,
      body: /* wgsl */ `
    let p = param[i];
    var g = grad[i];
    if (params.weightDecay != 0.0) { g = g + params.weightDecay * p; }
    if (params.momentum != 0.0) {
      var buf = g;
      if (params.firstStep == 0u) { buf = params.momentum * momentumBuffer[i] + (1.0 - params.dampening) * g; }
      momentumBuffer[i] = buf;
      g = select(buf, g + params.momentum * buf, params.nesterov != 0u);
    }
    param[i] = p - params.lr * g;`,
    });
    withMomentum.set(L, def);
  }
  return def;
}

// Without momentum there is no buffer to keep; a separate entry avoids binding a dummy.
export function sgdUpdateNoMomentumKernel(L: FlatLanes): KernelDef {
  let def = withoutMomentum.get(L);
  if (!def) {
    def = flatKernel('sgdUpdateNoMomentum', L, {
      params: 'lr: f32, weightDecay: f32',
      bindings: /* wgsl */ `
@group(0) @binding(1) var<storage, read_write> param: array<T>;
@group(0) @binding(2) var<storage, read> grad: array<T>;`,
      body: /* wgsl */ `
    let p = param[i];
    param[i] = p - params.lr * (grad[i] + params.weightDecay * p);`,
    });
    withoutMomentum.set(L, def);
  }
  return def;
}

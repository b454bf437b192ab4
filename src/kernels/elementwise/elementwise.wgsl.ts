import { flatKernel, type FlatLanes } from '../../runtime/flat.js';
import type { KernelDef } from '../../runtime/kernel.js';

// Elementwise kernels over flat f32 arrays (src/runtime/flat.ts: vec4 loads when the count allows, a run of
// loads per invocation). Each factory gives the kernel for L elements per load.

function byLanes(make: (L: FlatLanes) => KernelDef): (L: FlatLanes) => KernelDef {
  const cache = new Map<FlatLanes, KernelDef>();
  return (L) => {
    let def = cache.get(L);
    if (!def) cache.set(L, (def = make(L)));
    return def;
  };
}

export const reluForwardKernel = byLanes((L) =>
  flatKernel('reluForward', L, {
    bindings: /* wgsl */ `
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> y: array<T>;`,
    body: 'y[i] = max(x[i], T(0.0));',
  }),
);

// Uses the forward output: y > 0 exactly where x > 0, and PyTorch's relu backward also passes no gradient at 0.
export const reluBackwardKernel = byLanes((L) =>
  flatKernel('reluBackward', L, {
    bindings: /* wgsl */ `
@group(0) @binding(1) var<storage, read> y: array<T>;
@group(0) @binding(2) var<storage, read> gy: array<T>;
@group(0) @binding(3) var<storage, read_write> gx: array<T>;`,
    body: 'gx[i] = select(T(0.0), gy[i], y[i] > T(0.0));',
  }),
);

export const addKernel = byLanes((L) =>
  flatKernel('add', L, {
    bindings: /* wgsl */ `
@group(0) @binding(1) var<storage, read> a: array<T>;
@group(0) @binding(2) var<storage, read> b: array<T>;
@group(0) @binding(3) var<storage, read_write> out: array<T>;`,
    body: 'out[i] = a[i] + b[i];',
  }),
);

/** acc += x, in place (gradient accumulation). */
export const accumulateKernel = byLanes((L) =>
  flatKernel('accumulate', L, {
    bindings: /* wgsl */ `
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> acc: array<T>;`,
    body: 'acc[i] = acc[i] + x[i];',
  }),
);

/** out = x * scalar[0] * factor: broadcasts a one-element GPU tensor (the upstream gradient of a sum) without a readback. */
export const scaleByTensorKernel = byLanes((L) =>
  flatKernel('scaleByTensor', L, {
    params: 'factor: f32',
    bindings: /* wgsl */ `
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read> scalar: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<T>;`,
    prologue: 'let s = scalar[0];',
    body: 'out[i] = x[i] * s * params.factor;',
  }),
);

/** out = scalar[0] * factor everywhere (the gradient of sum/mean broadcast back to its input's shape). */
export const broadcastScalarKernel = byLanes((L) =>
  flatKernel('broadcastScalar', L, {
    params: 'factor: f32',
    bindings: /* wgsl */ `
@group(0) @binding(1) var<storage, read> scalar: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<T>;`,
    prologue: 'let v = T(scalar[0] * params.factor);',
    body: 'out[i] = v;',
  }),
);

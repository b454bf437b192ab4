// Flat kernels: every element independent, tensors as flat arrays (relu, add, accumulate, the SGD update...).
// Loads are what cost on lavapipe (each storage access at a computed address is a per-lane, bounds-checked
// branch), so a kernel moves vec4s when the element count is a multiple of 4 (`L = 4`, else scalars), and each
// invocation makes one run of up to FLAT_RUN consecutive loads, which amortises the per-invocation work. The
// arithmetic is per component, so both widths give bitwise the same results.
import type { KernelDef } from './kernel.js';
import type { BindingSource, Runtime } from './runtime.js';
import { FLAT_WG } from './workgroup.js';

export type FlatLanes = 1 | 4;

export const FLAT_RUN = 16;

/** vec4 loads for a bound slice [start, start + count) of a flat tensor when it is a whole number of aligned vec4s. */
export function flatLanes(start: number, count: number): FlatLanes {
  return start % 4 === 0 && count % 4 === 0 ? 4 : 1;
}

export interface FlatKernelSource {
  /** Extra members of the params struct (after n and run), e.g. 'lr: f32, weightDecay: f32'. */
  params?: string;
  /** Binding declarations; `T` is f32 or vec4f. */
  bindings: string;
  /** Statements before the loop (per invocation). */
  prologue?: string;
  /** The loop body for load index `i`. */
  body: string;
}

/** A flat kernel's WGSL for L elements per load. */
export function flatKernel(name: string, L: FlatLanes, src: FlatKernelSource): KernelDef {
  return {
    name: L === 4 ? `${name}Vec4` : name,
    wgsl: /* wgsl */ `
struct Params { n: u32, run: u32, ${src.params ?? ''} }
@group(0) @binding(0) var<uniform> params: Params;
alias T = ${L === 4 ? 'vec4f' : 'f32'};
${src.bindings}
@compute @workgroup_size(${FLAT_WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let start = (gid.x + gid.y * nwg.x * ${FLAT_WG}u) * params.run;
  let end = min(start + params.run, params.n);
  ${src.prologue ?? ''}
  for (var i = start; i < end; i++) {
    ${src.body}
  }
}
`,
  };
}

/** Records a flat kernel over `elements` elements (one bound slice), L elements per load. */
export function dispatchFlat(
  rt: Runtime,
  def: KernelDef,
  L: FlatLanes,
  elements: number,
  bindings: Record<string, BindingSource>,
  params: Record<string, number> = {},
): void {
  const loads = elements / L;
  const invocations = Math.ceil(loads / FLAT_RUN);
  rt.dispatch(def, rt.grid(Math.ceil(invocations / FLAT_WG)), bindings, { n: loads, run: FLAT_RUN, ...params });
}

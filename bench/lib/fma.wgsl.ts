// A register-only multiply-add loop: the arithmetic ceiling of WGSL on an adapter (no memory traffic in the loop).
// `chains` independent vec4 accumulators, the loop body unrolled `unroll` times; one final store per invocation
// keeps the compiler from removing the loop. lavapipe lowers fma() to a multiply and an add, so on it this is a
// mul+add ceiling. FLOPs per invocation = iters * unroll * chains * 4 * 2.
import type { KernelDef } from '../../src/runtime/kernel.js';

export interface FmaLoopOptions {
  chains: number;
  unroll: number;
}

export function fmaLoopKernel({ chains, unroll }: FmaLoopOptions): KernelDef {
  const idx = [...Array(chains).keys()];
  const init = idx.map((j) => `  var a${j} = vec4f(s + ${j}.0, s - ${j}.5, s * 0.5 + ${j}.25, s + 0.125);`).join('\n');
  const step = idx.map((j) => `      a${j} = fma(a${j}, m, c);`).join('\n');
  const body = [...Array(unroll).keys()].map(() => step).join('\n');
  const sum = idx.map((j) => `a${j}`).join(' + ');
  return {
    name: `fmaLoop_${chains}x${unroll}`,
    wgsl: /* wgsl */ `
// ---- fmaLoop -------------------------------------------------------------------------------------------------
override WG: u32 = 64;
struct Params { iters: u32, seed: f32, mul: f32, add: f32 }
@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let s = params.seed + f32(gid.x) * 1e-6;
  let m = vec4f(params.mul);
  let c = vec4f(params.add);
${init}
  for (var i = 0u; i < params.iters; i++) {
${body}
  }
  let v = ${sum};
  out[gid.x] = v.x + v.y + v.z + v.w;
}
// ---- end fmaLoop ---------------------------------------------------------------------------------------------
`,
  };
}

export function fmaLoopFlop(o: FmaLoopOptions, invocations: number, iters: number): number {
  return invocations * iters * o.unroll * o.chains * 8;
}

// dawn.node 0.6.2 + lavapipe has killed processes that mix thousands of onSubmittedWorkDone() waits with
// thousands of mapAsync waits. The runtime waits only with mapAsync; this runs 5,000 submit+wait cycles of real
// kernels, alternating fence waits (sync) and readbacks, and checks the arithmetic all the way through.
import { expect, it } from 'vitest';
import { Tensor } from '../../src/runtime/tensor.js';
import type { KernelDef } from '../../src/runtime/kernel.js';
import { testRuntime } from '../helpers/gpu.js';

const addOne: KernelDef = {
  name: 'soakAddOne',
  wgsl: /* wgsl */ `
struct Params { n: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) { if (gid.x < params.n) { x[gid.x] = x[gid.x] + 1.0; } }`,
};

export const SOAK_CYCLES = 5000;

it(`survives ${SOAK_CYCLES} submit+wait cycles mixing fences, readbacks and kernels`, async () => {
  const rt = await testRuntime();
  const n = 4096;
  const x = Tensor.zeros(rt, [n]);
  const submitsBefore = rt.stats.submits;
  let expected = 0;
  for (let cycle = 0; cycle < SOAK_CYCLES; cycle++) {
    const dispatches = 1 + (cycle % 3);
    for (let d = 0; d < dispatches; d++) rt.dispatch(addOne, n / 64, { x }, { n });
    expected += dispatches;
    if (cycle % 2 === 0) {
      await rt.sync();
    } else {
      const got = await x.read();
      if (got[cycle % n] !== expected || got[n - 1] !== expected) {
        throw new Error(`cycle ${cycle}: expected ${expected}, read ${got[cycle % n]} / ${got[n - 1]}`);
      }
    }
  }
  expect((await x.read())[0]).toBe(expected);
  expect(rt.stats.submits - submitsBefore).toBeGreaterThanOrEqual(SOAK_CYCLES);
  console.log(`soak: ${SOAK_CYCLES} cycles, ${rt.stats.submits - submitsBefore} submits, ${expected} kernel dispatches`);
  x.release();
}, 600_000);

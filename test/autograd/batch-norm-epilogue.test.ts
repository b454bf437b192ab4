// batchNorm2d's fused epilogue through the tape: relu(bn2(relu(bn1(x))) + x), where x also feeds the block's
// first BatchNorm (its gradient arrives from two entries), against the same graph built from the unfused ops
// (batchNorm2d, add, relu), in train and eval mode; and a repeated step leaves the pool as it was.
import { describe, expect, it } from 'vitest';
import { add, batchNorm2d, flatten, linear, relu, sum, type BatchNormState } from '../../src/autograd/functions.js';
import { noGrad } from '../../src/autograd/grad-mode.js';
import { backward, zeroGrad } from '../../src/autograd/tape.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import { Tensor } from '../../src/runtime/tensor.js';
import { maxRelError, randn, uniform } from '../helpers/gradcheck.js';
import { testRuntime } from '../helpers/gpu.js';

const SHAPE = [3, 4, 6, 6];
const C = SHAPE[1]!;

function param(rt: Runtime, values: Float32Array, shape: number[]): Tensor<'f32'> {
  const t = Tensor.fromArray(rt, values, shape);
  t.requiresGrad = true;
  return t;
}

function bnState(rt: Runtime, seed: number): BatchNormState {
  return {
    weight: param(rt, uniform(C, seed, 0.5, 1.5), [C]),
    bias: param(rt, randn(C, seed + 1, 0.5), [C]),
    runningMean: Tensor.fromArray(rt, randn(C, seed + 2)),
    runningVar: Tensor.fromArray(rt, uniform(C, seed + 3, 0.5, 2)),
    momentum: 0.1,
    eps: 1e-5,
    tracker: { numBatchesTracked: 0 },
  };
}

interface Net {
  x: Tensor<'f32'>;
  head: Tensor<'f32'>;
  bn1: BatchNormState;
  bn2: BatchNormState;
}

function net(rt: Runtime): Net {
  return { x: param(rt, randn(SHAPE.reduce((a, b) => a * b), 7, 1.5), SHAPE), head: param(rt, randn(3 * 144, 8), [3, 144]), bn1: bnState(rt, 10), bn2: bnState(rt, 20) };
}

/** sum(linear(flatten(block(x)), head)): a scalar whose gradient reaches the block as an arbitrary gz. */
function loss(n: Net, training: boolean, fused: boolean): Tensor<'f32'> {
  let z: Tensor<'f32'>;
  if (fused) {
    const a = batchNorm2d(n.x, n.bn1, training, { relu: true });
    z = batchNorm2d(a, n.bn2, training, { relu: true, residual: n.x });
  } else {
    const a = relu(batchNorm2d(n.x, n.bn1, training));
    z = relu(add(batchNorm2d(a, n.bn2, training), n.x));
  }
  return sum(linear(flatten(z), n.head, null));
}

async function grads(n: Net): Promise<Record<string, Float32Array>> {
  const out: Record<string, Float32Array> = { x: await n.x.grad!.read(), head: await n.head.grad!.read() };
  for (const [name, s] of [['bn1', n.bn1], ['bn2', n.bn2]] as const) {
    out[`${name}.weight`] = await s.weight.grad!.read();
    out[`${name}.bias`] = await s.bias.grad!.read();
    out[`${name}.running_var`] = await s.runningVar.read();
  }
  return out;
}

describe('batchNorm2d with relu and residual fused, through the tape', () => {
  for (const training of [true, false]) {
    it(`${training ? 'train' : 'eval'} mode: same loss, gradients and running stats as batchNorm2d + add + relu`, async () => {
      const rt = await testRuntime();
      const fusedNet = net(rt);
      const plainNet = net(rt);
      const lf = loss(fusedNet, training, true);
      const lp = loss(plainNet, training, false);
      expect(lf.gradFn?.name).toBe('sum');
      const vf = await lf.item();
      const vp = await lp.item();
      backward(lf);
      backward(lp);
      const gf = await grads(fusedNet);
      const gp = await grads(plainNet);
      const errs = Object.fromEntries(Object.keys(gp).map((k) => [k, maxRelError(gf[k]!, gp[k]!)]));
      console.log(`fused vs unfused (${training ? 'train' : 'eval'}): loss ${vf} vs ${vp};`, Object.entries(errs).map(([k, v]) => `${k} ${v.toExponential(2)}`).join(' '));
      expect(Math.abs(vf - vp)).toBeLessThanOrEqual(1e-6 * Math.abs(vp));
      for (const [k, e] of Object.entries(errs)) expect(e, k).toBeLessThan(1e-6);
      expect(fusedNet.bn2.tracker.numBatchesTracked).toBe(training ? 1 : 0);
      // Under noGrad the fused op records nothing and gives the same output.
      const quiet = noGrad(() => batchNorm2d(fusedNet.x, fusedNet.bn1, false, { relu: true, residual: fusedNet.x }));
      expect(quiet.gradFn).toBeNull();
      quiet.release();
      for (const n of [fusedNet, plainNet]) for (const t of [n.x, n.head, n.bn1.weight, n.bn1.bias, n.bn2.weight, n.bn2.bias]) zeroGrad([t]);
      lf.release();
      lp.release();
    });
  }

  it('a repeated fused step leaves the pool as it was (saved statistics and dZ are freed)', async () => {
    const rt = await testRuntime();
    const n = net(rt);
    const params = [n.x, n.head, n.bn1.weight, n.bn1.bias, n.bn2.weight, n.bn2.bias];
    const step = async (): Promise<void> => {
      const l = loss(n, true, true);
      backward(l);
      await l.item();
      l.release();
      zeroGrad(params);
    };
    await step();
    const before = rt.pool.stats();
    await step();
    const after = rt.pool.stats();
    expect(after.liveBuffers).toBe(before.liveBuffers);
    expect(after.allocations).toBe(before.allocations);
  });
});

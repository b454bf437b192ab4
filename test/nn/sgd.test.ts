// SGD on a small model: frozen parameters get no gradient and no update, and the optimizer state survives a
// save/load round trip through safetensors bytes (training resumed from it continues exactly).
import { describe, expect, it } from 'vitest';
import { crossEntropy } from '../../src/autograd/functions.js';
import { backward } from '../../src/autograd/tape.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import { Tensor } from '../../src/runtime/tensor.js';
import { generator } from '../../src/nn/init.js';
import { Flatten, Linear, ReLU, Sequential } from '../../src/nn/layers.js';
import { SGD, sgdStateFromTensors, sgdStateToTensors } from '../../src/nn/sgd.js';
import { parseSafetensors, serializeSafetensors } from '../../src/weights/safetensors.js';
import { randn } from '../helpers/gradcheck.js';
import { testRuntime } from '../helpers/gpu.js';

function mlp(rt: Runtime): Sequential {
  const g = generator(5);
  return new Sequential(rt, new Flatten(rt), new Linear(rt, 12, 8, { generator: g }), new ReLU(rt), new Linear(rt, 8, 3, { generator: g }));
}

async function step(model: Sequential, opt: SGD, x: Tensor<'f32'>, y: Tensor<'i32'>): Promise<number> {
  opt.zeroGrad();
  const loss = crossEntropy(model.forward(x), y, 'sum');
  backward(loss);
  opt.step();
  const v = await loss.item();
  loss.release();
  return v;
}

describe('SGD', () => {
  it('leaves frozen parameters without gradient and unchanged', async () => {
    const rt = await testRuntime();
    const model = mlp(rt);
    const [first] = model.namedParameters().filter(([n]) => n === '1.weight').map(([, p]) => p);
    model.at(1).requiresGrad(false);
    const before = await first!.read();
    const opt = new SGD(model.parameters(), { lr: 0.1, weightDecay: 0.01, momentum: 0.9 });
    const x = Tensor.fromArray(rt, randn(4 * 12, 1), [4, 3, 4]);
    const y = Tensor.fromArray(rt, Int32Array.from([0, 1, 2, 1]));
    await step(model, opt, x, y);
    expect(first!.grad).toBeNull();
    expect(Array.from(await first!.read())).toEqual(Array.from(before));
    const trained = model.at(3).parameters()[0]!;
    expect(trained.grad).not.toBeNull();
    opt.release();
    model.release();
  });

  it('resumes from a saved optimizer state exactly as if never interrupted', async () => {
    const rt = await testRuntime();
    const x = Tensor.fromArray(rt, randn(4 * 12, 2), [4, 3, 4]);
    const y = Tensor.fromArray(rt, Int32Array.from([2, 1, 0, 1]));
    const make = (m: Sequential): SGD =>
      new SGD([{ params: m.at(1).parameters() }, { params: m.at(3).parameters(), lr: 0.2 }], { lr: 0.05, momentum: 0.9, weightDecay: 1e-3, nesterov: true });

    const a = mlp(rt);
    const optA = make(a);
    for (let i = 0; i < 2; i++) await step(a, optA, x, y);
    const saved = sgdStateToTensors(await optA.stateDict());
    const bytes = serializeSafetensors(saved.tensors, saved.metadata);
    const modelState = await a.stateDict();
    const lossA = await step(a, optA, x, y);

    const b = mlp(rt);
    b.loadStateDict(modelState);
    const optB = make(b);
    const parsed = parseSafetensors(bytes);
    optB.loadStateDict(sgdStateFromTensors(parsed.tensors, parsed.metadata));
    expect(optB.paramGroups[1]!.lr).toBe(0.2);
    const lossB = await step(b, optB, x, y);
    expect(lossB).toBe(lossA);
    const pa = await a.stateDict();
    const pb = await b.stateDict();
    for (const [name, t] of pa) expect(Array.from(pb.get(name)!.data as Float32Array), name).toEqual(Array.from(t.data as Float32Array));
    const wrong = { ...(await optA.stateDict()), paramGroups: [] };
    expect(() => optB.loadStateDict(wrong)).toThrow(/0 parameter groups, this optimizer 2/);
    for (const o of [optA, optB]) o.release();
    for (const m of [a, b]) m.release();
  });
});

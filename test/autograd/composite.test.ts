// PyTorch parity of every op chained through the tape: conv -> bn -> relu -> maxpool -> BasicBlock with downsample
// -> avgpool -> flatten -> linear -> cross-entropy (reduction none, summed), in eval and train mode, with every
// parameter's gradient and the running statistics after the step (fixtures/ops/composite.json, written by
// scripts/fixtures/make_composite_fixtures.py). Metric: max |engine - torch| / max |torch| per tensor < 1e-4.
import { describe, expect, it } from 'vitest';
import { crossEntropy } from '../../src/autograd/functions.js';
import { noGrad } from '../../src/autograd/grad-mode.js';
import { backward } from '../../src/autograd/tape.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import { Tensor } from '../../src/runtime/tensor.js';
import { generator } from '../../src/nn/init.js';
import { AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential } from '../../src/nn/layers.js';
import { BasicBlock } from '../../src/nn/resnet.js';
import type { StateDict } from '../../src/weights/state-dict.js';
import { loadOpFixture, toTensor, type FixtureTensor } from '../helpers/fixtures.js';
import { maxRelError } from '../helpers/gradcheck.js';
import { testRuntime } from '../helpers/gpu.js';

interface Fixture {
  state: Record<string, FixtureTensor & { dtype: string }>;
  input: FixtureTensor;
  labels: number[];
  logitsEval: FixtureTensor;
  logitsTrain: FixtureTensor;
  loss: number;
  grads: Record<string, FixtureTensor>;
  running: Record<string, FixtureTensor>;
}

const fixture = loadOpFixture<Fixture>('composite.json');
const BOUND = 1e-4;

function compositeNet(rt: Runtime): Sequential {
  const g = generator(1);
  const net = new Sequential(
    rt,
    new Conv2d(rt, 3, 8, 3, { padding: 1, generator: g }),
    new BatchNorm2d(rt, 8),
    new ReLU(rt),
    new MaxPool2d(rt, 3, 2, 1),
    new BasicBlock(rt, 8, 16, 2, g),
    new AdaptiveAvgPool2d(rt),
    new Flatten(rt),
    new Linear(rt, 16, 5, { generator: g }),
  );
  const dict: StateDict = new Map(
    Object.entries(fixture.state).map(([k, v]) => [
      k,
      v.dtype === 'int64'
        ? { dtype: 'int64', shape: v.shape, data: BigInt64Array.from(v.data, (n) => BigInt(n)) }
        : { dtype: 'float32', shape: v.shape, data: Float32Array.from(v.data) },
    ]),
  );
  net.loadStateDict(dict, { source: 'composite.json' });
  return net;
}

describe('composite network vs PyTorch', () => {
  it('eval mode: logits', async () => {
    const rt = await testRuntime();
    const net = compositeNet(rt).eval();
    const x = toTensor(rt, fixture.input);
    const logits = noGrad(() => net.forward(x));
    expect(maxRelError(await logits.read(), fixture.logitsEval.data)).toBeLessThan(BOUND);
    for (const t of [x, logits]) t.release();
    net.release();
  });

  it('train mode: logits, summed loss, every gradient, running stats; the graph frees its intermediates', async () => {
    const rt = await testRuntime();
    const net = compositeNet(rt).train();
    const x = toTensor(rt, fixture.input);
    const y = Tensor.fromArray(rt, Int32Array.from(fixture.labels));
    const logits = net.forward(x);
    logits.retain = true;
    const loss = crossEntropy(logits, y, 'sum');
    backward(loss);
    expect(maxRelError(await logits.read(), fixture.logitsTrain.data)).toBeLessThan(BOUND);
    expect(Math.abs((await loss.item()) - fixture.loss) / Math.abs(fixture.loss)).toBeLessThan(BOUND);
    const errors: Record<string, number> = {};
    for (const [name, p] of net.namedParameters()) errors[name] = maxRelError(await p.grad!.read(), fixture.grads[name]!.data);
    // The conv bias right before a train-mode BatchNorm has an exact gradient of 0 (BN subtracts the channel mean);
    // both sides hold rounding noise (torch: 2.5e-7), so measure it against its layer's weight-gradient scale.
    const weightScale = Math.max(...fixture.grads['0.weight']!.data.map(Math.abs));
    const biasGrad = await net.namedParameters().find(([n]) => n === '0.bias')![1].grad!.read();
    errors['0.bias'] = Math.max(...biasGrad.map(Math.abs)) / weightScale;
    for (const [name, b] of net.namedBuffers()) {
      if (b instanceof Tensor) errors[name] = maxRelError(await b.read(), fixture.running[name]!.data);
      else expect(b.value, name).toBe(1);
    }
    const worst = Object.entries(errors).sort((a, b) => b[1] - a[1])[0]!;
    console.log(`composite: worst max rel error ${worst[1].toExponential(2)} (${worst[0]})`);
    for (const [name, err] of Object.entries(errors)) expect(err, name).toBeLessThan(BOUND);
    expect(Object.keys(errors).length).toBe(Object.keys(fixture.grads).length + Object.keys(fixture.running).length);
    for (const t of [logits, loss]) t.release();
    // Further steps (gradients now accumulate into the existing .grad) leave nothing behind: backward() freed every
    // intermediate. From the third step on they allocate nothing either: the pool has all it needs.
    const step = async (): Promise<void> => {
      const l = crossEntropy(net.forward(x), y, 'sum');
      backward(l);
      l.release();
      await rt.sync();
    };
    await step();
    const before = rt.pool.stats();
    await step();
    expect(rt.pool.stats().liveBuffers).toBe(before.liveBuffers);
    expect(rt.pool.stats().allocations).toBe(before.allocations);
    for (const t of [x, y]) t.release();
    net.release();
  });
});

// PyTorch parity of the whole model: a torchvision resnet18 checkpoint written by torch.save, loaded by the
// engine's .pth reader, must give torchvision's logits, loss, gradients, running stats and SGD trajectory.
// Metric: max |engine - torch| / max |torch| per tensor (projections for large tensors, see resnet-fixture.ts),
// bound 1e-4; parameters after the SGD steps are also compared relative to the size of their update.
//
// Convolutions. With the direct lowerings (implicit GEMM, col2im), whose rounding is PyTorch's order, every tensor
// is held to 1e-4. Winograd F(4x4, 3x3), the default for 3x3 stride-1 layers where the texture GEMM runs, rounds
// about 10x more per convolution (a few 1e-6 of the output's scale; conv2d.test.ts holds each Winograd pass to 1e-5
// against float64). Forward values are continuous in that rounding, so logits, loss and running statistics keep the
// 1e-4 bound. Gradients are not, wherever a ReLU input lies within the rounding of zero: the mask flips and every
// gradient below it moves by that element's share. This fixture's ReLU inputs come within 1.1e-7 of zero (relative
// to their tensor's largest) at layer2.0's block output, 6.6e-7 in layer1 and 4.5e-6 in layer3, but no closer than
// 2.2e-5 in layer4 (scripts/fixtures/resnet_float32_error.py); a run with F(2x2, 3x3) forward, which rounds less
// than F(4x4), flipped the layer2.0 one and moved layer2.0.bn2.bias's gradient by 4.5e-2. So with Winograd the 1e-4
// bound applies to the gradients above every near-zero pre-activation (fc and layer4), and the rest are only
// guarded against gross errors. That guard alone would let through a local error (a tile or channel-quad index
// wrong only in large layers): so the convolutions themselves are checked too. During the default-lowering step
// every call that runs Winograd (or im2col, col2im) records its operands, and each is recomputed with the implicit
// GEMM from those operands: they must agree to 1e-5 relative, conv2d.test.ts' bound. That uses the engine's own
// ReLU masks, so no mask flip can matter; F(2x2, 3x3) and im2col steps get the same check. The SGD tests check the
// optimiser and run the direct lowerings.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { backward } from '../../src/autograd/tape.js';
import { crossEntropy } from '../../src/autograd/functions.js';
import { noGrad } from '../../src/autograd/grad-mode.js';
import { Tensor } from '../../src/runtime/tensor.js';
import { conv2dBackwardInput, conv2dBackwardWeight, conv2dForward, convCallsForTests, type ConvCall } from '../../src/kernels/conv2d/conv2d.js';
import { textureGemmSupported } from '../../src/kernels/matmul/texture-gemm.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import { replaceHead, resnet18, type ResNet } from '../../src/nn/resnet.js';
import { SGD } from '../../src/nn/sgd.js';
import type { StateDict } from '../../src/weights/state-dict.js';
import { maxRelError, randn } from '../helpers/gradcheck.js';
import { testRuntime } from '../helpers/gpu.js';
import { compareGradient, compareParameter, Expected, loadFixtureCheckpoint, worstOf } from './resnet-fixture.js';

const BOUND = 1e-4;
const WINOGRAD = ['winograd4', 'winograd2'];
/** Parameters whose gradients no near-zero pre-activation of the fixture lies under (see above). */
const ABOVE_EVERY_NEAR_ZERO = /^(fc|layer4)\./;
const GROSS = 0.1;
let rt: Runtime;
/** The adapter runs the texture GEMM, so the Winograd and im2col lowerings exist here. */
const TEXTURE = textureGemmSupported(await testRuntime());
/** The adapter (or the 'gpu' kernel mode) takes the GPU lowerings on the tiled GEMM. */
const GPU_LOWERINGS = !(await testRuntime()).ctx.isCpuDriver;
let checkpoint: StateDict;
let exp: Expected;

function fixtureModel(): ResNet {
  const model = resnet18(rt);
  model.loadStateDict(checkpoint, { source: 'resnet18-seed0.pth' });
  return model;
}

function inputs(): { x: Tensor<'f32'>; y: Tensor<'i32'> } {
  return { x: Tensor.fromArray(rt, exp.f32('input'), exp.shape('input')), y: Tensor.fromArray(rt, exp.labels()) };
}

/**
 * Records every conv2d pass of a training step that runs a lowering other than the implicit GEMM (Winograd, im2col,
 * col2im), with copies of its operands and result, to recompute afterwards with the implicit GEMM.
 */
function recordConvCalls(): { calls: ConvCall[]; stop(): void } {
  const copyOf = (t: Tensor<'f32'>): Tensor<'f32'> => {
    const c = Tensor.empty(rt, t.shape, 'f32', 'test.convCall');
    rt.copy(t.buffer, 0, c.buffer, 0, t.byteLength);
    return c;
  };
  const calls: ConvCall[] = [];
  convCallsForTests.record = (call) =>
    calls.push({ ...call, operands: [copyOf(call.operands[0]), copyOf(call.operands[1])], output: copyOf(call.output) });
  return { calls, stop: () => void (convCallsForTests.record = null) };
}

/**
 * Each recorded call recomputed with the implicit GEMM from the same operands: max |lowering - implicit| /
 * max |implicit| per call. Releases the recorded copies.
 */
async function recheckWithImplicit(calls: ConvCall[]): Promise<{ call: ConvCall; err: number }[]> {
  const out: { call: ConvCall; err: number }[] = [];
  for (const call of calls) {
    const [a, b] = call.operands;
    const ref =
      call.pass === 'forward'
        ? conv2dForward(a, b, null, call.opts, undefined, 'implicit')
        : call.pass === 'data'
          ? conv2dBackwardInput(a, b, call.shape, call.opts, undefined, 'implicit')
          : conv2dBackwardWeight(a, b, call.shape, call.opts, undefined, 'implicit');
    out.push({ call, err: maxRelError(await call.output.read(), await ref.read()) });
    for (const t of [a, b, call.output, ref]) t.release();
  }
  return out;
}

const describeCall = (c: ConvCall): string =>
  `${c.lowering} ${c.pass} of [${c.operands[0].shape.join(',')}] and [${c.operands[1].shape.join(',')}]`;

/** Each conv call of the step agrees with the implicit GEMM on its own operands to this (conv2d.test.ts' bound). */
const PER_CALL = 1e-5;

function expectCallsMatchImplicit(label: string, checked: { call: ConvCall; err: number }[], lowerings: string[]): void {
  for (const l of lowerings) expect(checked.some(({ call }) => call.lowering === l), `${l} calls`).toBe(true);
  if (checked.length === 0) return console.log(`${label}: no conv call ran another lowering than the implicit GEMM`);
  const by = new Map<string, number>();
  for (const { call } of checked) by.set(call.lowering, (by.get(call.lowering) ?? 0) + 1);
  const worst = checked.reduce((a, b) => (Number.isNaN(b.err) || b.err > a.err ? b : a), checked[0]!);
  console.log(
    `${label}: ${checked.length} conv calls (${[...by].map(([l, n]) => `${n} ${l}`).join(', ')}) recomputed with the implicit GEMM, ` +
      `worst max rel error ${worst.err.toExponential(2)} (${describeCall(worst.call)})`,
  );
  for (const { call, err } of checked) expect(err, describeCall(call)).toBeLessThan(PER_CALL);
}

beforeAll(async () => {
  rt = await testRuntime();
  checkpoint = await loadFixtureCheckpoint();
  exp = new Expected();
});
afterEach(() => rt.tuner.avoid([]));

describe('the comparisons cannot pass on NaN (pooled buffers hold NaN where no kernel wrote)', () => {
  it('a gradient or parameter holding one NaN or infinity has an infinite error, and is the worst of its model', () => {
    const names = [...checkpoint.keys()].filter((n) => exp.has(`proj/grad/${n}`) || exp.has(`grad/${n}`));
    const full = names.find((n) => exp.has(`grad/${n}`))!;
    const projected = names.find((n) => !exp.has(`grad/${n}`))!;
    expect(full && projected, 'the fixture has both kinds of entries').toBeTruthy();
    const exact = exp.f32(`grad/${full}`).slice();
    expect(compareGradient(exp, full, exact)).toBe(0);
    for (const bad of [NaN, Infinity]) {
      const poisoned = exact.slice();
      poisoned[poisoned.length >> 1] = bad;
      expect(compareGradient(exp, full, poisoned)).toBe(Infinity);
      const p = new Float32Array(checkpoint.get(projected)!.shape.reduce((a, b) => a * b, 1));
      p[7] = bad;
      expect(compareGradient(exp, projected, p)).toBe(Infinity);
      const before = new Float32Array(p.length);
      expect(compareParameter(exp, 'after3/m0', projected, p, before)).toEqual({ param: Infinity, update: Infinity });
    }
    // The worst-of reduction the parity tests use: an error that is NaN is the worst, wherever it stands.
    const poisoned = exact.slice();
    poisoned[3] = NaN;
    const errors = new Map<string, number>([
      ['a', 1e-6],
      [full, compareGradient(exp, full, poisoned)],
      ['c', 3e-5],
    ]);
    expect(worstOf(errors)).toEqual([full, Infinity]);
    expect(worstOf([['a', 1e-6], ['b', NaN], ['c', 3e-5]])).toEqual(['b', Infinity]);
    expect(worstOf([['a', 1e-6], ['c', 3e-5]])).toEqual(['c', 3e-5]);
  });
});

describe('resnet18 vs torchvision', () => {
  it('has torchvision names, order and shapes', () => {
    const model = resnet18(rt);
    const names = model.stateEntries().map(([n]) => n);
    expect(names).toEqual([...checkpoint.keys()]);
    for (const [name, t] of model.namedParameters()) expect([...t.shape]).toEqual(checkpoint.get(name)!.shape);
    expect(model.parameters().reduce((s, p) => s + p.size, 0)).toBe(11_689_512);
    model.release();
  });

  it('eval-mode logits match', async () => {
    const model = fixtureModel().eval();
    const { x, y } = inputs();
    const logits = noGrad(() => model.forward(x));
    const err = maxRelError(await logits.read(), exp.f32('logits_eval'));
    console.log(`eval logits: max rel error ${err.toExponential(2)}`);
    expect(err).toBeLessThan(BOUND);
    for (const t of [x, y, logits]) t.release();
    model.release();
  });

  it.each([
    ['direct lowerings', WINOGRAD],
    ['default lowerings (Winograd where it applies)', []],
  ] as const)('train-mode logits, summed loss, every gradient and the running stats match (%s)', async (label, avoid) => {
    rt.tuner.avoid(avoid);
    const model = fixtureModel().train();
    const { x, y } = inputs();
    // With the default lowerings, each Winograd (and col2im) call of the step is also recomputed with the implicit
    // GEMM from its own operands: that uses the engine's own ReLU masks, so no flip can hide or fake an error.
    const recorder = avoid.length ? null : recordConvCalls();
    let logits: Tensor<'f32'>;
    let loss: Tensor<'f32'>;
    try {
      logits = model.forward(x);
      logits.retain = true;
      loss = crossEntropy(logits, y, 'sum');
      backward(loss);
    } finally {
      recorder?.stop();
    }
    expect(maxRelError(await logits.read(), exp.f32('logits_train'))).toBeLessThan(BOUND);
    const lossErr = Math.abs((await loss.item()) - exp.f32('loss')[0]!) / Math.abs(exp.f32('loss')[0]!);
    expect(lossErr).toBeLessThan(BOUND);
    const errors = new Map<string, number>();
    for (const [name, p] of model.namedParameters()) errors.set(name, compareGradient(exp, name, (await p.grad!.read()) as Float32Array));
    const all = worstOf(errors);
    const top = worstOf([...errors].filter(([n]) => ABOVE_EVERY_NEAR_ZERO.test(n)));
    console.log(
      `${label}: gradients worst max rel error ${all[1].toExponential(2)} (${all[0]}), fc and layer4 ${top[1].toExponential(2)} ` +
        `(${top[0]}); loss rel error ${lossErr.toExponential(2)}`,
    );
    if (avoid.length) {
      expect(all[1], all[0]).toBeLessThan(BOUND);
    } else {
      expect(top[1], top[0]).toBeLessThan(BOUND);
      expect(all[1], all[0]).toBeLessThan(GROSS);
    }
    for (const [name, b] of model.namedBuffers()) {
      if (!(b instanceof Tensor)) {
        expect(b.value).toBe(1);
        continue;
      }
      expect(maxRelError(await b.read(), exp.f32(`running/${name}`)), name).toBeLessThan(BOUND);
    }
    if (recorder) expectCallsMatchImplicit(label, await recheckWithImplicit(recorder.calls), TEXTURE ? ['winograd4'] : []);
    for (const t of [x, y, logits, loss]) t.release();
    model.release();
  });

  // Each lowering other than the default, made the default by avoiding the ones before it in the table: every call of
  // a training step recomputed with the implicit GEMM on its own operands. The texture lowerings on CPU drivers; the
  // GPU lowerings (on the tiled GEMM) on GPUs and in the 'gpu' kernel mode, in which the CI runs this file.
  const rows: [string, boolean, string[], string[]][] = [
    ['winograd2', TEXTURE, ['winograd4'], ['winograd2']],
    ['im2col', TEXTURE, ['winograd4', 'winograd2', 'implicit', 'col2im'], ['im2col']],
    ['winograd4Tiled', GPU_LOWERINGS, ['implicitTiled', 'implicit', 'col2im'], ['winograd4Tiled', 'im2colTiled']],
    ['winograd2Tiled', GPU_LOWERINGS, ['implicitTiled', 'implicit', 'col2im', 'winograd4Tiled'], ['winograd2Tiled', 'im2colTiled']],
  ];
  for (const [label, here, avoid, lowerings] of rows) it.skipIf(!here)(`every ${label} call of a training step agrees with the implicit GEMM on its own operands`, async () => {
    rt.tuner.avoid(avoid);
    const model = fixtureModel().train();
    const { x, y } = inputs();
    const recorder = recordConvCalls();
    let loss: Tensor<'f32'>;
    try {
      loss = crossEntropy(model.forward(x), y, 'sum');
      backward(loss);
    } finally {
      recorder.stop();
    }
    expectCallsMatchImplicit(label, await recheckWithImplicit(recorder.calls), lowerings);
    for (const t of [x, y, loss]) t.release();
    model.release();
  });

  it.each([0, 0.9])('three SGD steps with two parameter groups (fc at 10x lr, weight decay 1e-3, momentum %s) match', async (momentum) => {
    rt.tuner.avoid(WINOGRAD);
    const model = fixtureModel().train();
    const before = new Map<string, Float32Array>();
    for (const [name, p] of model.namedParameters()) before.set(name, (await p.read()) as Float32Array);
    const fc = [model.fc.weight, model.fc.bias!];
    const rest = model.parameters().filter((p) => !fc.includes(p as Tensor<'f32'>));
    const opt = new SGD([{ params: rest }, { params: fc, lr: 3e-3 }], { lr: 3e-4, weightDecay: 1e-3, momentum });
    const { x, y } = inputs();
    for (let step = 0; step < 3; step++) {
      opt.zeroGrad();
      const loss = crossEntropy(model.forward(x), y, 'sum');
      backward(loss);
      loss.release();
      opt.step();
    }
    const tag = momentum === 0 ? 'm0' : 'm0.9';
    let worstParam = 0;
    let worstUpdate = 0;
    let worstName = '';
    for (const [name, p] of model.namedParameters()) {
      const err = compareParameter(exp, `after3/${tag}`, name, (await p.read()) as Float32Array, before.get(name)!);
      worstParam = Math.max(worstParam, err.param);
      if (err.update > worstUpdate) [worstUpdate, worstName] = [err.update, name];
    }
    console.log(
      `after 3 steps (momentum ${momentum}): parameters max rel error ${worstParam.toExponential(2)}; ` +
        `relative to the update ${worstUpdate.toExponential(2)} (${worstName})`,
    );
    expect(worstParam).toBeLessThan(BOUND);
    // The updates themselves agree to about 1e-3 of their size (the step-1 gradients' ~3e-5 f32 differences
    // compound over the steps); a wrong learning rate, weight decay or momentum is off by far more.
    expect(worstUpdate).toBeLessThan(3e-3);
    expect(model.bn1.num_batches_tracked.value).toBe(exp.f32(`after3/${tag}/num_batches_tracked`)[0]);
    opt.release();
    for (const t of [x, y]) t.release();
    model.release();
  });

  it('replaces the 1000-way head with a xavier-initialised 2-way one and trains', async () => {
    const model = fixtureModel().train();
    const hotdogRow = (await model.fc.weight.read()).slice(934 * 512, 935 * 512);
    expect(Array.from(hotdogRow)).toEqual(Array.from(checkpointRow(934)));
    const head = replaceHead(model, 2, 7);
    expect(model.fc).toBe(head);
    expect(model.fc.weight.shape).toEqual([2, 512]);
    const w = await head.weight.read();
    const bound = Math.sqrt(6 / (512 + 2));
    expect(Math.max(...w.map(Math.abs))).toBeLessThanOrEqual(bound);
    expect(Math.max(...w.map(Math.abs))).toBeGreaterThan(bound * 0.9);
    expect(model.stateEntries().find(([n]) => n === 'fc.weight')![1]).toBe(head.weight);
    const opt = new SGD([{ params: model.parameters().filter((p) => p !== head.weight && p !== head.bias) }, { params: [head.weight, head.bias!], lr: 3e-3 }], {
      lr: 3e-4,
      weightDecay: 1e-3,
    });
    const { x } = inputs();
    const y = Tensor.fromArray(rt, Int32Array.from([1, 0, 0, 1]));
    const losses: number[] = [];
    for (let step = 0; step < 4; step++) {
      opt.zeroGrad();
      const loss = crossEntropy(model.forward(x), y, 'sum');
      backward(loss);
      losses.push(await loss.item());
      loss.release();
      opt.step();
    }
    console.log(`2-way head, 4 steps on one batch: losses ${losses.map((l) => l.toFixed(4)).join(' ')}`);
    expect(losses[3]!).toBeLessThan(losses[0]!);
    opt.release();
    for (const t of [x, y]) t.release();
    model.release();
  });

  it("a batch of one whose layer4 is 1x1 fails in train mode with the BatchNorm op's error, and runs in eval mode", async () => {
    // --image-size 32 and a last batch of one image: layer4 sees [1, 512, 1, 1], one value per channel, which
    // PyTorch refuses in train mode too ("Expected more than 1 value per channel when training").
    const model = resnet18(rt, { numClasses: 2, seed: 1 }).train();
    const x = Tensor.fromArray(rt, randn(3 * 32 * 32, 5), [1, 3, 32, 32]);
    expect(() => model.forward(x)).toThrow(/^batchNormTrainForward: expected more than 1 value per channel when training, got input \[1, 512, 1, 1\]$/);
    const logits = noGrad(() => model.eval().forward(x));
    const v = await logits.read();
    expect(v.length).toBe(2);
    expect(v.every(Number.isFinite)).toBe(true);
    for (const t of [x, logits]) t.release();
    model.release();
  });

  it('reports every missing key, unexpected key and shape mismatch of a foreign checkpoint at once', () => {
    const model = resnet18(rt, { numClasses: 2 });
    const foreign: StateDict = new Map(checkpoint);
    foreign.delete('layer4.1.bn2.running_var');
    foreign.delete('conv1.weight');
    foreign.set('classifier.weight', checkpoint.get('fc.weight')!);
    let message = '';
    try {
      model.loadStateDict(foreign, { source: 'other.pth' });
    } catch (e) {
      message = (e as Error).message;
    }
    // torch's load_state_dict wording, every line of it.
    expect(message).toBe(
      [
        'Error(s) in loading state_dict for ResNet from other.pth:',
        'Missing key(s) in state_dict: "conv1.weight", "layer4.1.bn2.running_var".',
        'Unexpected key(s) in state_dict: "classifier.weight".',
        'size mismatch for fc.weight: copying a param with shape [1000, 512] from checkpoint, the shape in current model is [2, 512].',
        'size mismatch for fc.bias: copying a param with shape [1000] from checkpoint, the shape in current model is [2].',
      ].join('\n\t'),
    );
    // Non-strict loading skips missing/unexpected keys but never a shape mismatch.
    expect(() => model.loadStateDict(foreign, { strict: false })).toThrow(/fc\.weight/);
    model.release();
  });
});

function checkpointRow(row: number): Float32Array {
  const t = checkpoint.get('fc.weight')!;
  return (t.data as Float32Array).slice(row * 512, (row + 1) * 512);
}

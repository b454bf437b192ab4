// The training loop's arithmetic (src/train/fit.ts) with fake batches through a small linear model, checked
// against a float64 re-computation: loss per example, train and test accuracy, examples/sec from an injected
// clock, a last batch smaller than the others, the update order (each batch sees the previous step's weights),
// resuming at a later epoch, and the stop on a non-finite loss.
import { describe, expect, it } from 'vitest';
import type { Runtime } from '../../src/runtime/runtime.js';
import { Flatten, Linear, Sequential } from '../../src/nn/layers.js';
import { SGD } from '../../src/nn/sgd.js';
import { fit, NonFiniteLossError, type BatchProgress, type EpochMetrics, type HostBatch } from '../../src/train/fit.js';
import { Random } from '../../src/util/random.js';
import { testRuntime } from '../helpers/gpu.js';

const FEATURES = 12; // [n, 3, 2, 2] flattened
const CLASSES = 2;

function fakeBatch(g: Random, n: number, scale = 1): HostBatch {
  const images = Float32Array.from({ length: n * FEATURES }, () => Math.fround(g.uniform(-1, 1) * scale));
  const labels = Int32Array.from({ length: n }, () => g.randint(0, CLASSES - 1));
  return { images, labels, shape: [n, 3, 2, 2] };
}

async function* iterate(batches: readonly HostBatch[], after?: () => void): AsyncGenerator<HostBatch> {
  for (const b of batches) yield b;
  after?.();
}

/** A Linear(12, 2) behind a Flatten, with the given weights. */
function model(rt: Runtime, w: Float64Array, b: Float64Array): { net: Sequential; lin: Linear } {
  const lin = new Linear(rt, FEATURES, CLASSES);
  rt.write(lin.weight.buffer, 0, Float32Array.from(w));
  rt.write(lin.bias!.buffer, 0, Float32Array.from(b));
  return { net: new Sequential(rt, new Flatten(rt), lin), lin };
}

/** Logits, per-example loss and argmax in float64 (weights rounded to f32 as the GPU holds them). */
function forward64(w: Float64Array, b: Float64Array, batch: HostBatch) {
  const n = batch.labels.length;
  const out: { loss: number; correct: boolean; probs: number[] }[] = [];
  for (let i = 0; i < n; i++) {
    const z = Array.from({ length: CLASSES }, (_, c) => {
      let s = b[c]!;
      for (let k = 0; k < FEATURES; k++) s += w[c * FEATURES + k]! * batch.images[i * FEATURES + k]!;
      return s;
    });
    const max = Math.max(...z);
    const lse = max + Math.log(z.reduce((a, v) => a + Math.exp(v - max), 0));
    const y = batch.labels[i]!;
    out.push({ loss: lse - z[y]!, correct: z.indexOf(max) === y, probs: z.map((v) => Math.exp(v - lse)) });
  }
  return out;
}

/** torch.optim.SGD on the summed loss, in float64. */
function sgdStep64(w: Float64Array, b: Float64Array, batch: HostBatch, o: { lr: number; momentum: number; wd: number }, buf: { w?: Float64Array; b?: Float64Array }): void {
  const gw = new Float64Array(w.length);
  const gb = new Float64Array(b.length);
  forward64(w, b, batch).forEach((r, i) => {
    for (let c = 0; c < CLASSES; c++) {
      const d = r.probs[c]! - (batch.labels[i] === c ? 1 : 0);
      gb[c]! += d;
      for (let k = 0; k < FEATURES; k++) gw[c * FEATURES + k]! += d * batch.images[i * FEATURES + k]!;
    }
  });
  for (const [p, g, key] of [[w, gw, 'w'], [b, gb, 'b']] as const) {
    for (let i = 0; i < p.length; i++) g[i] = g[i]! + o.wd * p[i]!;
    let d: Float64Array = g;
    if (o.momentum) {
      const prev = buf[key];
      if (prev) for (let i = 0; i < p.length; i++) prev[i] = o.momentum * prev[i]! + g[i]!;
      d = prev ?? (buf[key] = Float64Array.from(g));
    }
    for (let i = 0; i < p.length; i++) p[i] = p[i]! - o.lr * d[i]!;
  }
}

function initialWeights(seed: number): [Float64Array, Float64Array] {
  const g = new Random(seed);
  const f = (n: number) => Float64Array.from({ length: n }, () => Math.fround(g.uniform(-0.5, 0.5)));
  return [f(CLASSES * FEATURES), f(CLASSES)];
}

describe('fit', () => {
  it('reports loss per example, train/test accuracy and examples/sec, with a smaller last batch', async () => {
    const rt = await testRuntime();
    const g = new Random(11);
    const train = [fakeBatch(g, 4), fakeBatch(g, 4), fakeBatch(g, 3)];
    const test = [fakeBatch(g, 3), fakeBatch(g, 2)];
    const [w, b] = initialWeights(3);
    const { net } = model(rt, w, b);
    // lr 0: the weights stay put, so every batch's loss follows from the initial weights.
    const opt = new SGD(net.parameters(), { lr: 0 });
    let clock = 1000;
    const progress: BatchProgress[] = [];
    const epochs: EpochMetrics[] = [];
    const history = await fit(net, opt, {
      epochs: 2,
      trainBatches: () => iterate(train, () => (clock += 2750)),
      testBatches: () => iterate(test, () => (clock += 500)),
      onBatch: (p) => progress.push(p),
      onEpoch: (m) => void epochs.push(m),
      now: () => clock,
    });
    const trainRows = train.flatMap((bt) => forward64(w, b, bt));
    const testRows = test.flatMap((bt) => forward64(w, b, bt));
    const lossSum = trainRows.reduce((a, r) => a + r.loss, 0);
    expect(history).toEqual(epochs);
    for (const [i, m] of history.entries()) {
      expect(m.epoch).toBe(i + 1);
      expect(m.examples).toBe(11);
      expect(m.loss).toBeCloseTo(lossSum / 11, 5);
      expect(m.trainAcc).toBe(trainRows.filter((r) => r.correct).length / 11);
      expect(m.testAcc).toBe(testRows.filter((r) => r.correct).length / 5);
      expect(m.trainSeconds).toBe(2.75);
      expect(m.examplesPerSec).toBe(4);
      expect(m.testSeconds).toBe(0.5);
    }
    expect(progress.map((p) => [p.epoch, p.batch, p.size, p.examples])).toEqual([
      [1, 1, 4, 4], [1, 2, 4, 8], [1, 3, 3, 11],
      [2, 1, 4, 4], [2, 2, 4, 8], [2, 3, 3, 11],
    ]);
    const perBatch = train.map((bt) => forward64(w, b, bt).reduce((a, r) => a + r.loss, 0));
    progress.slice(0, 3).forEach((p, i) => expect(p.batchLoss).toBeCloseTo(perBatch[i]!, 5));
    expect(progress[2]!.lossSum).toBeCloseTo(lossSum, 5);
    net.release();
  });

  it('steps in order: each batch sees the weights after the previous update (SGD, momentum, weight decay)', async () => {
    const rt = await testRuntime();
    const g = new Random(12);
    const train = [fakeBatch(g, 4), fakeBatch(g, 4), fakeBatch(g, 2)];
    const [w0, b0] = initialWeights(4);
    const { net, lin } = model(rt, w0, b0);
    const hyper = { lr: 0.05, momentum: 0.9, wd: 1e-3 };
    const opt = new SGD(net.parameters(), { lr: hyper.lr, momentum: hyper.momentum, weightDecay: hyper.wd });
    const losses: number[] = [];
    await fit(net, opt, {
      epochs: 2,
      trainBatches: () => iterate(train),
      testBatches: () => iterate([]),
      onBatch: (p) => losses.push(p.batchLoss),
    });
    const w = Float64Array.from(w0);
    const b = Float64Array.from(b0);
    const buf = {};
    const expected: number[] = [];
    for (let e = 0; e < 2; e++) {
      for (const bt of train) {
        expected.push(forward64(w, b, bt).reduce((a, r) => a + r.loss, 0));
        sgdStep64(w, b, bt, hyper, buf);
      }
    }
    losses.forEach((l, i) => expect(l).toBeCloseTo(expected[i]!, 4));
    const gotW = await lin.weight.read();
    gotW.forEach((v, i) => expect(v).toBeCloseTo(w[i]!, 5));
    net.release();
    opt.release();
  });

  it('starts at startEpoch (a resumed run) and names the epochs from there', async () => {
    const rt = await testRuntime();
    const g = new Random(13);
    const train = [fakeBatch(g, 3)];
    const [w, b] = initialWeights(5);
    const { net } = model(rt, w, b);
    const asked: number[] = [];
    const history = await fit(net, new SGD(net.parameters(), { lr: 0 }), {
      epochs: 3,
      startEpoch: 2,
      trainBatches: (e) => (asked.push(e), iterate(train)),
      testBatches: () => iterate(train),
    });
    expect(asked).toEqual([2]);
    expect(history.map((m) => m.epoch)).toEqual([3]);
    net.release();
  });

  it('stops with the epoch, batch and learning rates when the loss is not finite', async () => {
    const rt = await testRuntime();
    const g = new Random(14);
    // Inputs of size ~10 and lr 1e38: gradients above 3.4 make the first update overflow f32, so batch 2 sees inf weights.
    const train = [fakeBatch(g, 4, 10), fakeBatch(g, 4, 10), fakeBatch(g, 4, 10)];
    const [w, b] = initialWeights(6);
    const { net, lin } = model(rt, w, b);
    const opt = new SGD([{ params: [lin.weight] }, { params: [lin.bias!], lr: 2e38 }], { lr: 1e38 });
    const epochs: EpochMetrics[] = [];
    const err = await fit(net, opt, { epochs: 1, trainBatches: () => iterate(train), testBatches: () => iterate([]), onEpoch: (m) => void epochs.push(m) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NonFiniteLossError);
    const e = err as NonFiniteLossError;
    expect([e.epoch, e.batch]).toEqual([1, 2]);
    expect(e.message).toMatch(/^the loss became (NaN|Infinity|-Infinity) in epoch 1, batch 2 \(lr 1e\+38, head lr 2e\+38\)$/);
    expect(epochs).toEqual([]);
    net.release();
  });
});

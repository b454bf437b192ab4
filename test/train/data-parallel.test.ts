// Data parallelism and micro-batches (src/train/data-parallel.ts) on two lavapipe devices of one adapter, with a
// ResNet-18 (BatchNorm matters: each shard normalises with its own statistics): one step on two replicas computes
// what one device computes with accumulate 2 (loss and every gradient to 1e-6 relative; the parameters after the
// step too), the replicas stay bit-identical over steps, fit() drives both, and a device destroyed mid-run stops
// the step with an error naming it. Also the shard sizes, and micro-batches against the whole batch (the loss is a
// sum, so only BatchNorm's per-shard statistics separate them).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNodeRuntimes } from '../../src/node/engine-node.js';
import { resnet18, type ResNet } from '../../src/nn/resnet.js';
import { SGD } from '../../src/nn/sgd.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import {
  DeviceFailedError,
  dataParallelStep,
  replicaDifference,
  replicateState,
  shardSizes,
  splitBatch,
  type Replica,
} from '../../src/train/data-parallel.js';
import { fit, trainStep, type HostBatch } from '../../src/train/fit.js';
import { Random } from '../../src/util/random.js';

const SIZE = 32;

function batchOf(g: Random, n: number): HostBatch {
  const images = Float32Array.from({ length: n * 3 * SIZE * SIZE }, () => Math.fround(g.uniform(-2, 2)));
  const labels = Int32Array.from({ length: n }, () => g.randint(0, 1));
  return { images, labels, shape: [n, 3, SIZE, SIZE] };
}

function replicaOn(rt: Runtime): Replica & { model: ResNet } {
  const model = resnet18(rt, { numClasses: 2, seed: 3 });
  const optimizer = new SGD(model.parameters(), { lr: 0.05, momentum: 0.9, weightDecay: 1e-3 });
  return { model, optimizer };
}

async function grads(r: Replica): Promise<Float32Array[]> {
  return Promise.all(r.model.parameters().map(async (p) => Float32Array.from(await p.grad!.read())));
}

async function params(r: Replica): Promise<Float32Array[]> {
  return Promise.all(r.model.parameters().map(async (p) => Float32Array.from(await p.read())));
}

/** Largest |a - b| / max(|b|, tiny) over every element of every tensor. */
function maxRelative(a: Float32Array[], b: Float32Array[]): number {
  expect(a.length).toBe(b.length);
  let worst = 0;
  a.forEach((x, i) => {
    const y = b[i]!;
    expect(x.length).toBe(y.length);
    let scale = 0;
    for (const v of y) scale = Math.max(scale, Math.abs(v));
    for (let j = 0; j < x.length; j++) worst = Math.max(worst, Math.abs(x[j]! - y[j]!) / Math.max(scale, 1e-30));
  });
  return worst;
}

describe('shards', () => {
  it('splits as evenly as possible, the first shards larger, and keeps the examples in order', () => {
    expect(shardSizes(128, 2)).toEqual([64, 64]);
    expect(shardSizes(10, 4)).toEqual([3, 3, 2, 2]);
    expect(shardSizes(3, 4)).toEqual([1, 1, 1, 0]);
    expect(() => shardSizes(4, 0)).toThrow(/positive whole number/);
    const g = new Random(1);
    const b = batchOf(g, 5);
    const parts = splitBatch(b, 2);
    expect(parts.map((p) => p.shape[0])).toEqual([3, 2]);
    expect([...parts[1]!.labels]).toEqual([...b.labels.subarray(3)]);
    expect(parts[1]!.images[0]).toBe(b.images[3 * 3 * SIZE * SIZE]);
    expect(splitBatch(batchOf(g, 1), 3)).toHaveLength(1);
  });
});

describe('two devices of one adapter', () => {
  let rts: Runtime[];
  beforeAll(async () => {
    rts = await createNodeRuntimes(3);
    // Every device computes with the built-in kernel variants (measured choices could differ per device).
    for (const rt of rts) rt.tuner.enabled = false;
  });
  afterAll(() => {
    for (const rt of rts) rt.destroy();
  });

  it('opens one device per runtime on the same adapter', () => {
    expect(rts).toHaveLength(3);
    expect(new Set(rts.map((rt) => rt.device)).size).toBe(3);
    expect(new Set(rts.map((rt) => rt.ctx.adapterInfo.description)).size).toBe(1);
  });

  it('one step on two replicas equals one device with accumulate 2: loss, every gradient, the parameters after', async () => {
    const g = new Random(7);
    const batch = batchOf(g, 6);
    const a = replicaOn(rts[0]!);
    const b = replicaOn(rts[1]!);
    const single = replicaOn(rts[2]!);
    await replicateState([a, b, single]);
    const [dpLoss, dpCorrect] = await dataParallelStep([a, b], batch, { bucketBytes: 256 * 1024 });
    const [accLoss, accCorrect] = await trainStep(single.model, single.optimizer, batch, 2);
    expect(Math.abs(dpLoss - accLoss) / Math.abs(accLoss)).toBeLessThanOrEqual(1e-6);
    expect(dpCorrect).toBe(accCorrect);
    expect(maxRelative(await grads(a), await grads(single))).toBeLessThanOrEqual(1e-6);
    expect(maxRelative(await grads(b), await grads(single))).toBeLessThanOrEqual(1e-6);
    expect(maxRelative(await params(a), await params(single))).toBeLessThanOrEqual(1e-6);
    expect(await replicaDifference([a, b])).toBeNull();

    // Micro-batches differ from the whole batch only through BatchNorm's per-shard statistics: in eval mode
    // (running statistics) the summed loss of accumulate 3 is the whole batch's.
    for (const r of [a, single]) r.model.eval();
    await replicateState([a, single]);
    const [whole] = await trainStep(a.model, a.optimizer, batch);
    const [micro] = await trainStep(single.model, single.optimizer, batch, 3);
    expect(Math.abs(whole - micro) / Math.abs(whole)).toBeLessThanOrEqual(1e-5);
    expect(maxRelative(await grads(single), await grads(a))).toBeLessThanOrEqual(1e-4);
    for (const r of [a, b, single]) {
      r.optimizer.release();
      r.model.release();
    }
  });

  it('fit() on two replicas trains them identically and tests on the first', async () => {
    const g = new Random(11);
    const train = [batchOf(g, 5), batchOf(g, 4), batchOf(g, 6)];
    const test = [batchOf(g, 4)];
    const a = replicaOn(rts[0]!);
    const b = replicaOn(rts[1]!);
    const single = replicaOn(rts[2]!);
    await replicateState([a, b, single]);
    const iterate = async function* (list: HostBatch[]): AsyncGenerator<HostBatch> {
      yield* list;
    };
    const seen: number[] = [];
    const [dp] = await fit(a.model, a.optimizer, {
      epochs: 1,
      replicas: [b],
      trainBatches: () => iterate(train),
      testBatches: () => iterate(test),
      onBatch: (p) => seen.push(p.size),
    });
    const [acc] = await fit(single.model, single.optimizer, { epochs: 1, accumulate: 2, trainBatches: () => iterate(train), testBatches: () => iterate(test) });
    expect(seen).toEqual([5, 4, 6]);
    expect(await replicaDifference([a, b])).toBeNull();
    expect(Math.abs(dp!.loss - acc!.loss) / acc!.loss).toBeLessThanOrEqual(1e-6);
    expect(dp!.trainAcc).toBe(acc!.trainAcc);
    expect(dp!.testAcc).toBe(acc!.testAcc);
    expect(maxRelative(await params(a), await params(single))).toBeLessThanOrEqual(1e-5);
    for (const r of [a, b, single]) {
      r.optimizer.release();
      r.model.release();
    }
  });

  it('a device destroyed mid-run stops the step with an error naming it', async () => {
    const g = new Random(5);
    const a = replicaOn(rts[0]!);
    const b = replicaOn(rts[1]!);
    await replicateState([a, b]);
    await dataParallelStep([a, b], batchOf(g, 4));
    rts[1]!.device.destroy();
    const err = await dataParallelStep([a, b], batchOf(g, 4)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeviceFailedError);
    expect((err as DeviceFailedError).replica).toBe(1);
    expect((err as Error).message).toMatch(/^device 2 of 2 \(.*llvmpipe.*\) failed: /i);
    // The surviving device still works.
    expect(Number.isFinite((await trainStep(a.model, a.optimizer, batchOf(g, 2)))[0])).toBe(true);
    a.optimizer.release();
    a.model.release();
  });
});

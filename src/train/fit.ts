// The training loop of the fine-tuning experiment (d2l's train_ch13): per batch, forward, loss with
// reduction 'none' summed over the batch, backward, SGD step; per epoch the mean loss per example, training
// accuracy, test accuracy and examples/sec. Web-standard: batches come from any async iterable.
import { crossEntropy } from '../autograd/functions.js';
import { noGrad } from '../autograd/grad-mode.js';
import { backward } from '../autograd/tape.js';
import { accuracyCount } from '../kernels/accuracy/accuracy.js';
import type { Runtime } from '../runtime/runtime.js';
import { Tensor } from '../runtime/tensor.js';
import type { Module } from '../nn/module.js';
import type { SGD } from '../nn/sgd.js';
import type { HostBatch } from './batch.js';
import { accumulatedStep, dataParallelStep, replicaDifference, replicaSync, splitBatch, type Replica } from './data-parallel.js';

export type { HostBatch } from './batch.js';

export interface EpochMetrics {
  epoch: number;
  /** Sum of per-example losses / examples (d2l's "loss"). */
  loss: number;
  trainAcc: number;
  testAcc: number;
  examples: number;
  /** Seconds spent in training steps (data waits included: they are what a user waits for). */
  trainSeconds: number;
  examplesPerSec: number;
  testSeconds: number;
}

/** Reads a step's loss sum (f32) and correct count (u32) in one readback. */
async function readMetrics(rt: Runtime, loss: Tensor, correct: Tensor): Promise<[number, number]> {
  const packed = Tensor.empty(rt, [2], 'u32', 'metrics');
  rt.copy(loss.buffer, 0, packed.buffer, 0, 4);
  rt.copy(correct.buffer, 0, packed.buffer, 4, 4);
  loss.release();
  correct.release();
  const view = new DataView((await packed.read()).buffer);
  packed.release();
  return [view.getFloat32(0, true), view.getUint32(4, true)];
}

/**
 * One training step. Returns a promise of [loss sum, correct] that resolves when the GPU is done, so the caller
 * can prepare the next batch meanwhile. `accumulate` K > 1 runs the batch as K micro-batches (data-parallel.ts).
 */
export function trainStep(model: Module, optimizer: SGD, batch: HostBatch, accumulate = 1): Promise<[number, number]> {
  if (accumulate > 1) return accumulatedStep(model, optimizer, batch, accumulate);
  const rt = model.rt;
  const x = Tensor.fromArray(rt, batch.images, batch.shape, 'images');
  const y = Tensor.fromArray(rt, batch.labels, [batch.labels.length], 'labels');
  optimizer.zeroGrad();
  const logits = model.forward(x);
  const correct = noGrad(() => accuracyCount(logits, y));
  const loss = crossEntropy(logits, y, 'sum');
  backward(loss);
  optimizer.step();
  x.release();
  y.release();
  return readMetrics(rt, loss, correct);
}

/** Number of correct predictions over the batches, in eval mode without gradients. */
export async function evaluateAccuracy(model: Module, batches: AsyncIterable<HostBatch>): Promise<{ correct: number; total: number }> {
  const rt = model.rt;
  const wasTraining = model.training;
  model.eval();
  let correct = 0;
  let total = 0;
  let pending: Promise<Uint32Array> | null = null;
  try {
    for await (const batch of batches) {
      const count = noGrad(() => {
        const x = Tensor.fromArray(rt, batch.images, batch.shape, 'images');
        const y = Tensor.fromArray(rt, batch.labels, [batch.labels.length], 'labels');
        const logits = model.forward(x);
        const c = accuracyCount(logits, y);
        for (const t of [x, y, logits]) t.release();
        return c;
      });
      total += batch.labels.length;
      if (pending) correct += (await pending)[0]!;
      pending = count.read().finally(() => count.release());
    }
    if (pending) correct += (await pending)[0]!;
  } finally {
    model.train(wasTraining);
  }
  return { correct, total };
}

/** The state of the running epoch after each training step (1-based epoch and batch). */
export interface BatchProgress {
  epoch: number;
  batch: number;
  /** This batch's loss sum and correct count. */
  batchLoss: number;
  batchCorrect: number;
  size: number;
  /** Running totals of the epoch so far. */
  lossSum: number;
  correct: number;
  examples: number;
  seconds: number;
}

/** A training step whose loss is NaN or infinite: the run stops rather than train on garbage. */
export class NonFiniteLossError extends Error {
  override name = 'NonFiniteLossError';
  constructor(
    readonly epoch: number,
    readonly batch: number,
    readonly loss: number,
    readonly lrs: readonly number[],
  ) {
    super(`the loss became ${loss} in epoch ${epoch}, batch ${batch} (lr ${lrs.map(String).join(', head lr ')})`);
  }
}

export interface FitOptions {
  /** Total number of epochs (epochs startEpoch+1 .. epochs are run). */
  epochs: number;
  /** 0-based index of the first epoch to run (a resumed run starts after its last checkpoint). */
  startEpoch?: number;
  /** The training batches of 0-based epoch `epoch`. */
  trainBatches: (epoch: number) => AsyncIterable<HostBatch>;
  testBatches: () => AsyncIterable<HostBatch>;
  onEpoch?: (m: EpochMetrics) => void | Promise<void>;
  onBatch?: (p: BatchProgress) => void;
  /** Called when the test pass of a (1-based) epoch starts. */
  onTestStart?: (epoch: number) => void;
  /** Lines about kernel variants measured after the first step (src/runtime/autotune.ts). */
  onTune?: (line: string) => void;
  now?: () => number;
  /**
   * Each batch as this many micro-batches, one after the other (split as evenly as possible, the first ones larger),
   * each with its own BatchNorm statistics; gradients summed, one optimizer step (default 1). Peak memory falls
   * with it. With `replicas`, each replica's shard is split so.
   */
  accumulate?: number;
  /**
   * More replicas of the model and optimizer, each on a device of its own (data-parallel.ts): each batch is split
   * across [model, ...replicas], gradients are summed across them, and every replica takes the same step. Testing
   * and BatchNorm's running statistics use `model` (the first replica), as PyTorch's DataParallel does. After each
   * epoch the replicas' parameters are checked to be bit-identical.
   */
  replicas?: readonly Replica[];
  /** Bytes per gradient bucket read back during backward (data-parallel.ts; default 8 MiB). */
  bucketBytes?: number;
}

/**
 * Meets every kernel shape of a training step on this batch's shape, without training: a forward and backward pass
 * on zeros in eval mode (so BatchNorm's running statistics stay as they are), gradients discarded; then measures
 * the kernel variants the runtime's tuner has to choose between (src/runtime/autotune.ts). Done before the first
 * step, so every step of a run computes with the same variants (they round differently).
 */
export async function tuneKernels(model: Module, optimizer: SGD, batch: HostBatch, log?: (line: string) => void): Promise<void> {
  const rt = model.rt;
  if (!rt.tuner.enabled) return;
  const wasTraining = model.training;
  model.eval();
  const x = Tensor.zeros(rt, batch.shape, 'f32', 'tune.images');
  const y = Tensor.zeros(rt, [batch.labels.length], 'i32', 'tune.labels');
  const loss = crossEntropy(model.forward(x), y, 'sum');
  backward(loss);
  for (const t of [loss, x, y]) t.release();
  optimizer.zeroGrad();
  model.train(wasTraining);
  await rt.tuner.tunePending(log);
  // The probe pass and the measuring runs leave buffers and textures of shapes (and variants) no step uses again.
  await rt.trimPools();
}

/** Tunes the kernel shapes every replica will meet on the first replica and gives the others its choices. */
async function tuneReplicas(all: readonly Replica[], batch: HostBatch, accumulate: number, log?: (line: string) => void): Promise<void> {
  const shapes = new Map<string, HostBatch>();
  for (const shard of splitBatch(batch, all.length)) for (const micro of splitBatch(shard, accumulate)) shapes.set(micro.shape.join('x'), micro);
  if (replicaSync(all) === 'step-all') {
    for (const micro of shapes.values()) await tuneKernels(all[0]!.model, all[0]!.optimizer, micro, log);
    const choices = all[0]!.model.rt.tuner.snapshot();
    for (const r of all.slice(1)) r.model.rt.tuner.pin(choices);
  } else {
    // Different adapters offer different variants: each tunes its own (the first replica's parameters are copied).
    for (const r of all) for (const micro of shapes.values()) await tuneKernels(r.model, r.optimizer, micro, log);
  }
}

export async function fit(model: Module, optimizer: SGD, options: FitOptions): Promise<EpochMetrics[]> {
  const accumulate = options.accumulate ?? 1;
  if (!(Number.isInteger(accumulate) && accumulate >= 1)) throw new Error(`fit: accumulate ${accumulate} is not a positive whole number`);
  const replicas: Replica[] = [{ model, optimizer }, ...(options.replicas ?? [])];
  for (const r of replicas.slice(1)) r.model.train();
  const now = options.now ?? (() => performance.now());
  const history: EpochMetrics[] = [];
  let tuned = false;
  let tuningMs = 0;
  for (let epoch = options.startEpoch ?? 0; epoch < options.epochs; epoch++) {
    model.train();
    let lossSum = 0;
    let correct = 0;
    let examples = 0;
    let batchIndex = 0;
    const start = now();
    tuningMs = 0;
    // One step in flight: the next batch is encoded while the previous step's metrics come back.
    let pending: { done: Promise<[number, number]>; size: number } | null = null;
    const settle = async (): Promise<void> => {
      if (!pending) return;
      const [l, c] = await pending.done;
      const size = pending.size;
      pending = null;
      batchIndex++;
      if (!Number.isFinite(l)) {
        throw new NonFiniteLossError(epoch + 1, batchIndex, l, optimizer.paramGroups.map((g) => g.lr));
      }
      lossSum += l;
      correct += c;
      examples += size;
      options.onBatch?.({ epoch: epoch + 1, batch: batchIndex, batchLoss: l, batchCorrect: c, size, lossSum, correct, examples, seconds: (now() - start - tuningMs) / 1000 });
    };
    try {
      for await (const batch of options.trainBatches(epoch)) {
        if (!tuned) {
          // (Not part of the epoch's time: it happens once per run.)
          const t0 = now();
          if (replicas.length > 1 || accumulate > 1) await tuneReplicas(replicas, batch, accumulate, options.onTune);
          else await tuneKernels(model, optimizer, batch, options.onTune);
          tuningMs = now() - t0;
          tuned = true;
        }
        if (replicas.length > 1) {
          // The step waits for the gradients of every replica before it updates: nothing to overlap with the next.
          await settle();
          pending = { done: dataParallelStep(replicas, batch, { accumulate, bucketBytes: options.bucketBytes }), size: batch.labels.length };
          continue;
        }
        const done = trainStep(model, optimizer, batch, accumulate);
        await settle();
        pending = { done, size: batch.labels.length };
      }
      await settle();
    } finally {
      // A step still in flight when the loop fails must not outlive it unobserved.
      if (pending) await (pending as { done: Promise<unknown> }).done.catch(() => undefined);
    }
    if (examples === 0) throw new Error(`epoch ${epoch + 1} had no training batches`);
    if (replicas.length > 1) {
      const differs = await replicaDifference(replicas);
      if (differs) throw new Error(`after epoch ${epoch + 1} the replicas are no longer identical: ${differs}`);
    }
    const trainSeconds = (now() - start - tuningMs) / 1000;
    options.onTestStart?.(epoch + 1);
    const testStart = now();
    const test = await evaluateAccuracy(model, options.testBatches());
    const m: EpochMetrics = {
      epoch: epoch + 1,
      loss: lossSum / examples,
      trainAcc: correct / examples,
      testAcc: test.total ? test.correct / test.total : NaN,
      examples,
      trainSeconds,
      examplesPerSec: examples / trainSeconds,
      testSeconds: (now() - testStart) / 1000,
    };
    history.push(m);
    await options.onEpoch?.(m);
  }
  return history;
}

// The training step and loop as a library user calls them: fit.ts's trainStep and fit, with every batch checked
// first (its shape against its data, 3 channels, the image size the caller trains at, labels that are class indices
// of the model's head) and a destroyed runtime refused, each with an error naming the batch and what is wrong.
// Without these checks a wrong batch trains silently on garbage (a label past the head's last row) or fails deep in
// a kernel. Web-standard.
import { fit as fitBatches, trainStep as trainStepRaw, type EpochMetrics, type FitOptions, type HostBatch } from './fit.js';
import { ResNet } from '../nn/resnet.js';
import type { Module } from '../nn/module.js';
import type { SGD } from '../nn/sgd.js';
import { RuntimeDestroyedError } from '../runtime/runtime.js';

/** A batch that does not fit the model or the training (names the batch and what is wrong). */
export class BatchError extends Error {
  override name = 'BatchError';
}

export interface BatchExpectations {
  /** Labels must lie in [0, numClasses): the rows of the model's head. */
  numClasses?: number;
  /** Height and width every image of the batch must have (the size the caller trains or evaluates at). */
  imageSize?: number;
}

/** The head's number of outputs when the model is a ResNet (its `fc`); undefined for other modules. */
export function numClassesOf(model: Module): number | undefined {
  return model instanceof ResNet ? model.fc.outFeatures : undefined;
}

/** Throws a BatchError unless `batch` is N images of 3 x H x W floats (NCHW) with N labels fitting `expect`. */
export function checkBatch(batch: HostBatch, where: string, expect: BatchExpectations = {}): void {
  const shape = batch.shape;
  if (shape.length !== 4 || !shape.every((d) => Number.isInteger(d) && d > 0)) {
    throw new BatchError(`${where}: the shape [${shape.join(', ')}] is not [N, 3, height, width]`);
  }
  const [n, c, h, w] = shape;
  if (c !== 3) throw new BatchError(`${where}: images have ${c} channels, the model takes 3 (RGB, NCHW: shape [N, 3, height, width])`);
  if (batch.images.length !== n * c * h * w) {
    throw new BatchError(`${where}: the shape [${shape.join(', ')}] needs ${n * c * h * w} floats, the images hold ${batch.images.length}`);
  }
  if (expect.imageSize !== undefined && (h !== expect.imageSize || w !== expect.imageSize)) {
    throw new BatchError(
      `${where}: the images are ${w}x${h} pixels, expected ${expect.imageSize}x${expect.imageSize} (imageSize ${expect.imageSize}; ` +
        `trainTransform(${expect.imageSize}) and evalTransform(${expect.imageSize}) make images of that size)`,
    );
  }
  if (batch.labels.length !== n) throw new BatchError(`${where}: ${n} images but ${batch.labels.length} labels`);
  if (expect.numClasses !== undefined) {
    const k = expect.numClasses;
    const bad = batch.labels.findIndex((l) => !(l >= 0 && l < k));
    if (bad >= 0) {
      throw new BatchError(`${where}: label ${batch.labels[bad]} (image ${bad}) is not a class index of the model's ${k}-way head (0 to ${k - 1})`);
    }
  }
}

function checkAlive(model: Module): void {
  if (model.rt.isDestroyed) throw new RuntimeDestroyedError();
}

export interface StepResult {
  /** Mean cross-entropy per example (PyTorch's loss.item() with reduction 'mean'). */
  loss: number;
  /** Correct predictions (argmax of the logits) in the batch. */
  correct: number;
  examples: number;
}

/**
 * One training step, as PyTorch's `optimizer.zero_grad(); loss = F.cross_entropy(model(x), y); loss.backward();
 * optimizer.step()`, on one batch of NCHW images. Runs in the model's current mode (call model.train() first).
 */
export async function trainStep(
  model: Module,
  optimizer: SGD,
  batch: HostBatch,
  options: BatchExpectations & { /** Run the batch as this many micro-batches (gradient accumulation; default 1). */ accumulate?: number } = {},
): Promise<StepResult> {
  checkAlive(model);
  const { accumulate = 1, ...expect } = options;
  if (!Number.isInteger(accumulate) || accumulate < 1) throw new BatchError(`trainStep: accumulate must be a whole number >= 1, got ${accumulate}`);
  checkBatch(batch, 'trainStep: the batch', { numClasses: numClassesOf(model), ...expect });
  const [lossSum, correct] = await trainStepRaw(model, optimizer, batch, accumulate);
  return { loss: lossSum / batch.labels.length, correct, examples: batch.labels.length };
}

export interface CheckedFitOptions extends FitOptions {
  /** When given, every training and test image must be imageSize x imageSize. */
  imageSize?: number;
}

async function* checked(batches: AsyncIterable<HostBatch>, where: string, expect: BatchExpectations): AsyncGenerator<HostBatch> {
  let i = 0;
  for await (const b of batches) {
    checkBatch(b, `${where} batch ${++i}`, expect);
    yield b;
  }
}

/**
 * d2l's train_ch13 loop (fit.ts) over batches from any async iterables, with every batch checked as trainStep
 * checks it. Returns the per-epoch metrics.
 */
export function fit(model: Module, optimizer: SGD, options: CheckedFitOptions): Promise<EpochMetrics[]> {
  checkAlive(model);
  const expect: BatchExpectations = { numClasses: numClassesOf(model), imageSize: options.imageSize };
  return fitBatches(model, optimizer, {
    ...options,
    trainBatches: (epoch) => checked(options.trainBatches(epoch), `fit: epoch ${epoch + 1}, training`, expect),
    testBatches: () => checked(options.testBatches(), 'fit: test', expect),
  });
}

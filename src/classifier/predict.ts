// Inference for a library user: class probabilities for decoded images (torchvision's evaluation transform at the
// size the model was trained at) or for a batch already transformed, as `model.eval(); softmax(model(x))` in
// PyTorch. Web-standard.
import { noGrad } from '../autograd/grad-mode.js';
import { checkImage, type RgbImage } from '../image/image.js';
import { evalTransform, type TensorImage } from '../image/transforms.js';
import type { ResNet } from '../nn/resnet.js';
import { RuntimeDestroyedError } from '../runtime/runtime.js';
import { Tensor } from '../runtime/tensor.js';
import { BatchError, checkBatch } from '../train/checked.js';
import type { HostBatch } from '../train/fit.js';
import { Random } from '../util/random.js';

export interface PredictOptions {
  /** The crop side the model was trained at: Resize(imageSize * 256 / 224) + CenterCrop(imageSize) (evalTransform). */
  imageSize: number;
  /** Class names in label order; each prediction then names its class. */
  classes?: readonly string[];
  /** Images per forward pass (default 16). */
  batchSize?: number;
}

export interface ClassPrediction {
  /** One probability per output of the model's head, summing to 1. */
  probabilities: number[];
  /** Index of the most probable class. */
  label: number;
  /** classes[label], when classes were given. */
  className?: string;
}

/** Probabilities for decoded RGB images of any size, each resized and centre-cropped as torchvision evaluates. */
export async function predict(model: ResNet, images: readonly RgbImage[], options: PredictOptions): Promise<ClassPrediction[]> {
  checkPredictOptions(model, options);
  const transform = evalTransform(options.imageSize);
  const rng = new Random(0); // the evaluation transform draws nothing
  const batchSize = options.batchSize ?? 16;
  const out: ClassPrediction[] = [];
  for (let start = 0; start < images.length; start += batchSize) {
    const chunk = images.slice(start, start + batchSize);
    const tensors = chunk.map((img, i) => {
      try {
        checkImage(img);
      } catch (e) {
        throw new BatchError(`predict: image ${start + i}: ${(e as Error).message}`);
      }
      return transform.apply(img, rng) as TensorImage;
    });
    const per = 3 * options.imageSize * options.imageSize;
    const data = new Float32Array(per * tensors.length);
    tensors.forEach((t, i) => data.set(t.data, i * per));
    out.push(...(await predictBatch(model, { images: data, shape: [tensors.length, 3, options.imageSize, options.imageSize] }, options)));
  }
  return out;
}

/**
 * Probabilities for a batch already transformed (NCHW floats, normalised as evalTransform does); its images must be
 * imageSize x imageSize. Its labels are not used.
 */
export async function predictBatch(model: ResNet, batch: Pick<HostBatch, 'images' | 'shape'>, options: PredictOptions): Promise<ClassPrediction[]> {
  checkPredictOptions(model, options);
  const n = batch.shape[0];
  checkBatch({ ...batch, labels: new Int32Array(n) }, 'predict: the batch', { imageSize: options.imageSize });
  const wasTraining = model.training;
  model.eval();
  let flat: Float32Array;
  try {
    const logits = noGrad(() => {
      const x = Tensor.fromArray(model.rt, batch.images, batch.shape, 'images');
      const y = model.forward(x);
      x.release();
      return y;
    });
    flat = await logits.read();
    logits.release();
  } finally {
    model.train(wasTraining);
  }
  const k = model.fc.outFeatures;
  return Array.from({ length: n }, (_, i) => {
    const probabilities = softmax(flat.subarray(i * k, (i + 1) * k));
    const label = probabilities.indexOf(Math.max(...probabilities));
    return options.classes ? { probabilities, label, className: options.classes[label]! } : { probabilities, label };
  });
}

function checkPredictOptions(model: ResNet, options: PredictOptions): void {
  if (model.rt.isDestroyed) throw new RuntimeDestroyedError();
  if (!Number.isInteger(options.imageSize) || options.imageSize <= 0) throw new BatchError(`predict: imageSize ${options.imageSize} is not a positive integer`);
  if (options.classes && options.classes.length !== model.fc.outFeatures) {
    throw new BatchError(`predict: ${options.classes.length} class names given, the model's head has ${model.fc.outFeatures} outputs`);
  }
}

/** Softmax in float64. */
function softmax(logits: Float32Array): number[] {
  const max = logits.reduce((m, v) => Math.max(m, v), -Infinity);
  const exp = Array.from(logits, (v) => Math.exp(v - max));
  const total = exp.reduce((a, b) => a + b, 0);
  return exp.map((e) => e / total);
}

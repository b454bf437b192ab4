// The hot-dog classifier that the browser page (and Node, in tests) runs: a torchvision ResNet-18 weight file in,
// class probabilities out, and fine-tuning in place, either the head alone on features computed once (the body
// frozen) or the whole network. Web-standard: images arrive as decoded RGB, weight files as bytes.
import { crossEntropy } from '../autograd/functions.js';
import { noGrad } from '../autograd/grad-mode.js';
import { backward } from '../autograd/tape.js';
import { accuracyCount } from '../kernels/accuracy/accuracy.js';
import type { Runtime } from '../runtime/runtime.js';
import { Tensor } from '../runtime/tensor.js';
import { evalTransform, trainTransform, type TensorImage } from '../image/transforms.js';
import type { RgbImage } from '../image/image.js';
import { replaceHead, resnet18, type ResNet } from '../nn/resnet.js';
import { SGD } from '../nn/sgd.js';
import { classNamesMetadata, imageSizeMetadata, readClassNames, readImageSize } from '../weights/classes.js';
import { readWeightBytes } from '../weights/format.js';
import { serializeSafetensors } from '../weights/safetensors.js';
import { WeightFormatError, type StateDict } from '../weights/state-dict.js';
import { trainStep } from '../train/fit.js';
import { IMAGENET_HOTDOG_CLASS, modeDefaults, recipeOptimizer } from '../train/modes.js';
import { deriveSeed, Random } from '../util/random.js';

export const DEFAULT_CLASSES: readonly string[] = ['hotdog', 'not-hotdog'];
/** The evaluation size of weights that do not say theirs: ImageNet's 224. */
export const DEFAULT_IMAGE_SIZE = 224;

export interface Prediction {
  /** One probability per entry of `classes`, summing to 1. */
  probabilities: number[];
  /** Index of the most probable class. */
  label: number;
}

export interface StepReport {
  step: number;
  /** Mean cross-entropy per example over the step's batch. */
  loss: number;
  accuracy: number;
  seconds: number;
}

export interface LabelledImage {
  image: RgbImage;
  label: number;
}

export interface HeadTrainingOptions {
  steps: number;
  lr: number;
  weightDecay?: number;
  momentum?: number;
  /**
   * Side of the centre crop the features are computed at (evalTransform(size): Resize(size * 256 / 224) +
   * CenterCrop(size)); default: the classifier's imageSize. Afterwards the classifier evaluates at it.
   */
  imageSize?: number;
  seed?: number;
  onFeatures?: (done: number, total: number) => void;
  onStep?: (r: StepReport) => void | Promise<void>;
  /** Checked between steps; true stops the training. */
  shouldStop?: () => boolean;
}

export interface FullTrainingOptions extends Omit<HeadTrainingOptions, 'onFeatures'> {
  /** The head's learning rate is lr x this (the recipe's 10). */
  headLrMult?: number;
}

/**
 * What a ResNet-18 weight file holds: 'classifier' (an n-way head whose names come from the file's `classes`
 * metadata, or the hot-dog pair for 2 classes) or 'imagenet' (torchvision's 1000-way head, read as hot dog =
 * class 934 against the rest).
 */
export type ModelKind = 'classifier' | 'imagenet';

export class Classifier {
  private constructor(
    readonly rt: Runtime,
    readonly model: ResNet,
    public kind: ModelKind,
    public classes: string[],
    readonly source: string,
    /**
     * The crop side the weights were trained at (metadata `image_size`; 224, ImageNet's, when the file does not
     * say). predict() evaluates at it, as `npm run predict` does; training in the page sets it to the size trained at.
     */
    public imageSize: number,
  ) {}

  /** Reads a .pth or .safetensors ResNet-18 state dict (torchvision names). Errors name the file and what is wrong. */
  static fromBytes(rt: Runtime, name: string, bytes: Uint8Array): Classifier {
    let tensors: StateDict;
    let metadata: Record<string, string> | undefined;
    try {
      ({ tensors, metadata } = readWeightBytes(name, bytes));
    } catch (e) {
      throw new WeightFormatError(`${name}: ${(e as Error).message}`);
    }
    const fc = tensors.get('fc.weight');
    if (!fc || fc.shape.length !== 2 || fc.shape[1] !== 512 || !tensors.has('conv1.weight') || !tensors.has('layer4.1.bn2.running_var')) {
      const keys = [...tensors.keys()];
      throw new WeightFormatError(
        `${name}: not a torchvision ResNet-18 state dict (expected conv1.weight ... layer4.1.bn2 and fc.weight [n, 512]; ` +
          `the file has ${keys.length} tensors${keys.length ? `: ${keys.slice(0, 4).join(', ')}${keys.length > 4 ? ', ...' : ''}` : ''})`,
      );
    }
    const outputs = fc.shape[0]!;
    let classes: string[] | null;
    try {
      classes = readClassNames(metadata);
    } catch (e) {
      throw new WeightFormatError(`${name}: ${(e as Error).message}`);
    }
    if (classes && classes.length !== outputs) {
      throw new WeightFormatError(`${name}: its metadata names ${classes.length} classes but fc.weight has ${outputs} rows`);
    }
    const kind: ModelKind = !classes && outputs === 1000 ? 'imagenet' : 'classifier';
    if (kind === 'classifier' && !classes) {
      if (outputs !== DEFAULT_CLASSES.length) {
        throw new WeightFormatError(`${name}: a ${outputs}-way head without class names (metadata "classes"); expected 2 (hot dog / not) or 1000 (ImageNet)`);
      }
      classes = [...DEFAULT_CLASSES];
    }
    let imageSize: number | null;
    try {
      imageSize = readImageSize(metadata);
    } catch (e) {
      throw new WeightFormatError(`${name}: ${(e as Error).message}`);
    }
    const model = resnet18(rt, { numClasses: outputs });
    try {
      model.loadStateDict(tensors, { source: name });
    } catch (e) {
      model.release();
      throw new WeightFormatError((e as Error).message);
    }
    model.eval();
    return new Classifier(rt, model, kind, classes ?? [...DEFAULT_CLASSES], name, imageSize ?? DEFAULT_IMAGE_SIZE);
  }

  /** Probabilities for one image (eval mode, torchvision's evaluation transform at `imageSize`: the weights' own). */
  async predict(image: RgbImage, imageSize = this.imageSize): Promise<Prediction> {
    const x = preprocess([image], evalTransform(imageSize));
    const [logits] = await this.logits(x);
    return this.toPrediction(logits!);
  }

  /** Softmax of one row of logits, folded to [hot dog, the rest] for an ImageNet head. Computed in float64. */
  toPrediction(logits: Float32Array): Prediction {
    const max = logits.reduce((m, v) => Math.max(m, v), -Infinity);
    const exp = Array.from(logits, (v) => Math.exp(v - max));
    const total = exp.reduce((a, b) => a + b, 0);
    let probabilities = exp.map((e) => e / total);
    if (this.kind === 'imagenet') probabilities = [probabilities[IMAGENET_HOTDOG_CLASS]!, 1 - probabilities[IMAGENET_HOTDOG_CLASS]!];
    const label = probabilities.indexOf(Math.max(...probabilities));
    return { probabilities, label };
  }

  private async logits(batch: HostImages): Promise<Float32Array[]> {
    this.model.eval();
    const out = noGrad(() => {
      const x = Tensor.fromArray(this.rt, batch.data, batch.shape, 'images');
      const y = this.model.forward(x);
      x.release();
      return y;
    });
    const flat = await out.read();
    out.release();
    const c = out.shape[1]!;
    return Array.from({ length: batch.shape[0] }, (_, i) => flat.slice(i * c, (i + 1) * c));
  }

  /**
   * Replaces an ImageNet head by a new xavier-initialised one for `classes` (the recipe's model.fc = Linear(512, 2)),
   * or renames the classes of a head that already has that many outputs.
   */
  setClasses(classes: readonly string[], seed = 0): void {
    classNamesMetadata(classes); // validates
    if (this.kind === 'imagenet' || this.model.fc.outFeatures !== classes.length) {
      replaceHead(this.model, classes.length, seed);
      this.kind = 'classifier';
    }
    this.classes = [...classes];
  }

  /**
   * The frozen mode: the body runs once per image (eval mode, no gradients) and only the head trains, with the
   * engine's autograd and SGD, full batch, on those features.
   */
  async trainHead(examples: readonly LabelledImage[], options: HeadTrainingOptions): Promise<StepReport[]> {
    this.checkExamples(examples);
    const size = options.imageSize ?? this.imageSize;
    const transform = evalTransform(size);
    const n = examples.length;
    const features = new Float32Array(n * 512);
    this.model.eval();
    for (let i = 0; i < n; i++) {
      const batch = preprocess([examples[i]!.image], transform);
      const f = noGrad(() => {
        const x = Tensor.fromArray(this.rt, batch.data, batch.shape, 'images');
        const y = this.model.features(x);
        x.release();
        return y;
      });
      features.set(await f.read(), i * 512);
      f.release();
      options.onFeatures?.(i + 1, n);
    }
    const head = this.model.fc;
    const optimizer = new SGD(head.parameters(), { lr: options.lr, weightDecay: options.weightDecay ?? 0, momentum: options.momentum ?? 0 });
    const x = Tensor.fromArray(this.rt, features, [n, 512], 'features');
    const y = Tensor.fromArray(this.rt, Int32Array.from(examples, (e) => e.label), [n], 'labels');
    const reports: StepReport[] = [];
    try {
      for (let step = 1; step <= options.steps && !options.shouldStop?.(); step++) {
        const start = performance.now();
        optimizer.zeroGrad();
        const logits = head.forward(x);
        const correct = noGrad(() => accuracyCount(logits, y));
        const loss = crossEntropy(logits, y, 'sum');
        backward(loss);
        optimizer.step();
        const [lossSum, right] = await Promise.all([loss.read(), correct.read()]);
        loss.release();
        correct.release();
        const r = { step, loss: lossSum[0]! / n, accuracy: right[0]! / n, seconds: (performance.now() - start) / 1000 };
        reports.push(r);
        await options.onStep?.(r);
      }
      this.imageSize = size; // the weights are now trained at this size: predict() evaluates at it
    } finally {
      x.release();
      y.release();
      optimizer.release();
      head.weight.grad?.release();
      head.weight.grad = null;
      if (head.bias) {
        head.bias.grad?.release();
        head.bias.grad = null;
      }
    }
    return reports;
  }

  /**
   * The whole network, train mode (BatchNorm on batch statistics), the recipe's training transform at a small
   * `imageSize` (fresh random crops and flips each step), full batch, the head at headLrMult x lr.
   */
  async trainAll(examples: readonly LabelledImage[], options: FullTrainingOptions): Promise<StepReport[]> {
    this.checkExamples(examples);
    const size = options.imageSize ?? 96;
    const transform = trainTransform(size);
    const optimizer = recipeOptimizer(this.model, {
      mode: 'finetune',
      lr: options.lr,
      headLrMult: options.headLrMult ?? modeDefaults('finetune').headLrMult,
      weightDecay: options.weightDecay ?? 0,
      momentum: options.momentum ?? 0,
    });
    const labels = Int32Array.from(examples, (e) => e.label);
    const reports: StepReport[] = [];
    this.model.train();
    try {
      for (let step = 1; step <= options.steps && !options.shouldStop?.(); step++) {
        const start = performance.now();
        const seed = deriveSeed(options.seed ?? 0, step);
        const images = examples.map((e, i) => transform.apply(e.image, new Random(deriveSeed(seed, i))) as TensorImage);
        const batch = stack(images);
        const [lossSum, right] = await trainStep(this.model, optimizer, { images: batch.data, labels, shape: batch.shape });
        const r = { step, loss: lossSum / examples.length, accuracy: right / examples.length, seconds: (performance.now() - start) / 1000 };
        reports.push(r);
        await options.onStep?.(r);
      }
      this.imageSize = size; // the weights are now trained at this size: predict() evaluates at it
    } finally {
      this.model.eval();
      optimizer.release();
      for (const p of this.model.parameters()) {
        p.grad?.release();
        p.grad = null;
      }
    }
    return reports;
  }

  /** The weights as safetensors (torchvision names) with metadata `classes` and `image_size`. */
  async toSafetensors(): Promise<Uint8Array> {
    if (this.kind === 'imagenet') throw new Error('this is the ImageNet model: fine-tune it first (its head becomes 2-way)');
    return serializeSafetensors(await this.model.stateDict(), { ...classNamesMetadata(this.classes), ...imageSizeMetadata(this.imageSize) });
  }

  release(): void {
    this.model.release();
  }

  private checkExamples(examples: readonly LabelledImage[]): void {
    if (this.kind === 'imagenet') throw new Error('the ImageNet head must be replaced first (setClasses)');
    if (examples.length === 0) throw new Error('no training images');
    for (const e of examples) {
      if (!Number.isInteger(e.label) || e.label < 0 || e.label >= this.classes.length) throw new Error(`label ${e.label} is not a class index`);
    }
  }
}

interface HostImages {
  data: Float32Array;
  shape: [number, number, number, number];
}

function preprocess(images: readonly RgbImage[], transform: ReturnType<typeof evalTransform>): HostImages {
  const rng = new Random(0); // the evaluation transform draws nothing
  return stack(images.map((img) => transform.apply(img, rng) as TensorImage));
}

function stack(images: readonly TensorImage[]): HostImages {
  const first = images[0]!;
  const per = first.data.length;
  const data = new Float32Array(per * images.length);
  images.forEach((t, i) => {
    if (t.data.length !== per) throw new Error('images of different sizes in one batch');
    data.set(t.data, i * per);
  });
  return { data, shape: [images.length, first.channels, first.height, first.width] };
}

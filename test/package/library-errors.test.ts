// The library API's errors, each naming the thing that is wrong: a tensor of another runtime in an op, a state dict
// of another architecture (torch's load_state_dict wording, and which architecture it holds), images or batches of
// the wrong size or shape, a training step on a destroyed runtime. Imports go through the package's entries.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  add,
  BatchError,
  Classifier,
  fit,
  ForeignTensorError,
  noGrad,
  predict,
  predictBatch,
  parseSafetensors,
  resnet18,
  RuntimeDestroyedError,
  serializeSafetensors,
  SGD,
  StateDictError,
  Tensor,
  trainStep,
  type HostBatch,
  type RgbImage,
  type Runtime,
  type StateDict,
  type TensorData,
} from '../../src/index.js';
import { createNodeRuntime, fitImageFolders, readStateDictFile } from '../../src/node/index.js';
import { readPth } from '../../src/weights/pth.js';
import { fixtureClassifierBytes, fixturePthBytes } from '../e2e/model-fixture.js';
import { testRuntime } from '../helpers/gpu.js';
import { writeTinyImageFolder } from '../helpers/tiny-image-folder.js';

let rt: Runtime;
let resnet18Dict: StateDict;
beforeAll(async () => {
  rt = await testRuntime();
  resnet18Dict = readPth(fixturePthBytes());
});

function errorOf(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected an error');
}

function batch(n: number, size: number, labels: number[] = Array.from({ length: n }, (_, i) => i % 2)): HostBatch {
  const images = Float32Array.from({ length: n * 3 * size * size }, (_, i) => Math.sin(i) * 0.5);
  return { images, labels: Int32Array.from(labels), shape: [n, 3, size, size] };
}

describe('a tensor of another runtime', () => {
  let other: Runtime;
  beforeAll(async () => {
    other = await createNodeRuntime();
  });
  afterAll(() => other.destroy());

  it('in an op is refused, naming the tensor', () => {
    const a = Tensor.fromArray(rt, [1, 2, 3], [3], 'a');
    const b = Tensor.fromArray(other, [4, 5, 6], [3], 'weights-from-elsewhere');
    const e = errorOf(() => add(a, b));
    expect(e).toBeInstanceOf(ForeignTensorError);
    expect(e.message).toMatch(/^kernel add: binding "b" is tensor "weights-from-elsewhere", which belongs to another runtime: /);
    for (const t of [a, b]) t.release();
  });

  it('as the input of a model made on another runtime is refused', () => {
    const model = resnet18(rt, { numClasses: 2 }).eval();
    const x = Tensor.fromArray(other, batch(1, 32).images, [1, 3, 32, 32], 'photo');
    const e = errorOf(() => noGrad(() => model.forward(x)));
    expect(e).toBeInstanceOf(ForeignTensorError);
    expect(e.message).toMatch(/belongs to another runtime: tensors and modules cannot be shared between runtimes/);
    x.release();
    model.release();
  });
});

describe('a state dict of another architecture', () => {
  it("resnet34's: torch's unexpected-key error, naming resnet34", () => {
    const dict: StateDict = new Map(resnet18Dict);
    // torchvision's resnet34 has [3, 4, 6, 3] BasicBlocks: resnet18's keys and more blocks of the same shapes.
    for (const [layer, blocks] of [[1, 3], [2, 4], [3, 6], [4, 3]] as const) {
      for (let b = 2; b < blocks; b++) {
        for (const [k, t] of resnet18Dict) if (k.startsWith(`layer${layer}.1.`)) dict.set(k.replace(`layer${layer}.1.`, `layer${layer}.${b}.`), t);
      }
    }
    const model = resnet18(rt, { numClasses: 1000 });
    const e = errorOf(() => model.loadStateDict(dict, { source: 'resnet34.pth' })) as StateDictError;
    expect(e).toBeInstanceOf(StateDictError);
    expect(e.missing).toEqual([]);
    expect(e.unexpected).toHaveLength(dict.size - resnet18Dict.size);
    const lines = e.message.split('\n\t');
    expect(lines[0]).toBe('Error(s) in loading state_dict for ResNet from resnet34.pth:');
    expect(lines[1]).toMatch(/^Unexpected key\(s\) in state_dict: "layer1\.2\.conv1\.weight", "layer1\.2\.bn1\.weight", .*"layer4\.2\.bn2\.num_batches_tracked"\.$/);
    expect(lines.at(-1)).toBe("The state dict holds a ResNet with [3, 4, 6, 3] BasicBlocks per layer (torchvision's resnet34); the model is resnet18 with [2, 2, 2, 2] BasicBlocks per layer.");
    // Nothing was written: the model still holds its own initialisation, and loads a fitting dict afterwards.
    expect(model.loadStateDict(resnet18Dict)).toEqual({ missing: [], unexpected: [] });
    model.release();
  });

  it("resnet50's bottleneck blocks: missing keys, size mismatches, and the name", () => {
    const dict: StateDict = new Map();
    const t = (shape: number[]): TensorData => ({ dtype: 'float32', shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) });
    dict.set('conv1.weight', t([64, 3, 7, 7]));
    for (const [layer, blocks] of [[1, 3], [2, 4], [3, 6], [4, 3]] as const) {
      for (let b = 0; b < blocks; b++) for (const c of [1, 2, 3]) dict.set(`layer${layer}.${b}.conv${c}.weight`, t([1, 1, 1, 1]));
    }
    dict.set('fc.weight', t([1000, 2048]));
    const model = resnet18(rt, { numClasses: 1000 });
    const e = errorOf(() => model.loadStateDict(dict)) as StateDictError;
    expect(e.message).toMatch(/^Error\(s\) in loading state_dict for ResNet:\n\tMissing key\(s\) in state_dict: "bn1\.weight", "bn1\.bias", /);
    expect(e.message).toMatch(/\n\tUnexpected key\(s\) in state_dict: "layer1\.0\.conv3\.weight", /);
    expect(e.message).toContain('\n\tsize mismatch for fc.weight: copying a param with shape [1000, 2048] from checkpoint, the shape in current model is [1000, 512].');
    expect(e.message).toMatch(/\n\tThe state dict holds a ResNet with \[3, 4, 6, 3\] Bottleneck blocks \(conv3\) per layer \(torchvision's resnet50\); the model is resnet18/);
    model.release();
  });

  it('a dict of no ResNet at all, read from a file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hotdog-foreign-'));
    try {
      const file = join(dir, 'bert.safetensors');
      writeFileSync(file, serializeSafetensors(new Map([['encoder.layer.0.weight', { dtype: 'float32', shape: [2], data: new Float32Array(2) }]])));
      const model = resnet18(rt, { numClasses: 2 });
      const foreign = await readStateDictFile(file);
      const e2 = errorOf(() => model.loadStateDict(foreign, { source: file }));
      expect(e2.message).toContain(`Error(s) in loading state_dict for ResNet from ${file}:\n\tMissing key(s) in state_dict: "conv1.weight", `);
      expect(e2.message).toContain('\n\tUnexpected key(s) in state_dict: "encoder.layer.0.weight".');
      expect(e2.message).toMatch(/\n\tThe state dict is not a torchvision ResNet \(no layer1-4; its 1 keys begin "encoder\.layer\.0\.weight"\); the model is resnet18 with \[2, 2, 2, 2\] BasicBlocks per layer\.$/);
      model.release();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('images and batches of the wrong size', () => {
  let model: ReturnType<typeof resnet18>;
  let optimizer: SGD;
  beforeAll(() => {
    model = resnet18(rt, { numClasses: 2 });
    optimizer = new SGD(model.fc.parameters(), { lr: 0.01 });
  });
  afterAll(() => model.release());

  it('predict: a batch of another image size than the model evaluates at, an image whose data does not fit its size', async () => {
    await expect(predictBatch(model, batch(2, 32), { imageSize: 64 })).rejects.toThrow(BatchError);
    await expect(predictBatch(model, batch(2, 32), { imageSize: 64 })).rejects.toThrow(
      /^predict: the batch: the images are 32x32 pixels, expected 64x64 \(imageSize 64; trainTransform\(64\) and evalTransform\(64\) make images of that size\)$/,
    );
    const good: RgbImage = { width: 40, height: 30, data: new Uint8Array(40 * 30 * 3) };
    const bad: RgbImage = { width: 40, height: 30, data: new Uint8Array(40 * 30) };
    await expect(predict(model, [good, bad], { imageSize: 32 })).rejects.toThrow(/^predict: image 1: image data holds 1200 bytes, expected 40x30x3$/);
    await expect(predict(model, [good], { imageSize: 32, classes: ['a', 'b', 'c'] })).rejects.toThrow(/3 class names given, the model's head has 2 outputs/);
  });

  it('trainStep: shape against data, channels, labels past the head, label count', async () => {
    const b = batch(2, 32);
    await expect(trainStep(model, optimizer, { ...b, images: b.images.subarray(1) })).rejects.toThrow(
      /^trainStep: the batch: the shape \[2, 3, 32, 32\] needs 6144 floats, the images hold 6143$/,
    );
    await expect(trainStep(model, optimizer, { ...b, shape: [2, 1, 32, 96] })).rejects.toThrow(/images have 1 channels, the model takes 3/);
    await expect(trainStep(model, optimizer, batch(2, 32, [0, 2]))).rejects.toThrow(/label 2 \(image 1\) is not a class index of the model's 2-way head \(0 to 1\)/);
    await expect(trainStep(model, optimizer, { ...b, labels: Int32Array.of(0) })).rejects.toThrow(/2 images but 1 labels/);
    await expect(trainStep(model, optimizer, b, { imageSize: 64 })).rejects.toThrow(/the images are 32x32 pixels, expected 64x64/);
    await expect(trainStep(model, optimizer, b, { accumulate: 0 })).rejects.toThrow(/^trainStep: accumulate must be a whole number >= 1, got 0$/);
  });

  it('trainStep with accumulate runs the batch as micro-batches and reports the whole batch', async () => {
    model.eval(); // BatchNorm on running statistics: the micro-batches then compute exactly what the whole batch does
    const b = batch(4, 32);
    const saved = await Promise.all(model.fc.parameters().map((p) => p.read()));
    const whole = await trainStep(model, optimizer, b);
    model.fc.parameters().forEach((p, i) => rt.write(p.buffer, 0, saved[i]!));
    const micro = await trainStep(model, optimizer, b, { accumulate: 2 });
    expect(micro.examples).toBe(4);
    expect(Math.abs(micro.loss - whole.loss)).toBeLessThan(1e-6 * Math.abs(whole.loss));
    model.train();
  });

  it('fit: a batch of another size than imageSize names the epoch and batch', async () => {
    await expect(
      fit(model, optimizer, {
        epochs: 1,
        imageSize: 32,
        trainBatches: async function* () {
          yield batch(2, 40);
        },
        testBatches: async function* () {},
      }),
    ).rejects.toThrow(/^fit: epoch 1, training batch 1: the images are 40x40 pixels, expected 32x32/);
  });

  it('fitImageFolders: more classes than the head has outputs', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hotdog-classes-'));
    try {
      await writeTinyImageFolder(dir, { classes: ['a', 'b', 'c'], trainPerClass: 1, testPerClass: 1, size: [16, 16] });
      await expect(fitImageFolders(model, optimizer, { train: join(dir, 'train'), test: join(dir, 'test'), epochs: 1, batchSize: 2, imageSize: 32 })).rejects.toThrow(
        new RegExp(`^fitImageFolders: ${join(dir, 'train').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} has 3 classes \\(a, b, c\\), the model's head 2 outputs; give it a new head first: replaceHead\\(model, 3\\)$`),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('a destroyed runtime', () => {
  it('refuses a training step, a prediction and new tensors, saying so', async () => {
    const gone = await createNodeRuntime();
    const model = resnet18(gone, { numClasses: 2 });
    const optimizer = new SGD(model.parameters(), { lr: 0.01 });
    gone.destroy();
    const message = /^this runtime was destroyed \(runtime\.destroy\(\)\): its device, tensors and modules cannot be used any more; create a new runtime and load the weights onto it$/;
    await expect(trainStep(model, optimizer, batch(2, 32))).rejects.toThrow(RuntimeDestroyedError);
    await expect(trainStep(model, optimizer, batch(2, 32))).rejects.toThrow(message);
    await expect(predictBatch(model, batch(1, 32), { imageSize: 32 })).rejects.toThrow(message);
    expect(() => Tensor.fromArray(gone, [1, 2], [2])).toThrow(message);
  });
});

describe('the public API', () => {
  it('predict() gives the probabilities Classifier.predict gives for the same weights', async () => {
    const bytes = fixtureClassifierBytes(['hotdog', 'not-hotdog'], 32);
    const classifier = Classifier.fromBytes(rt, 'model.safetensors', bytes);
    const model = resnet18(rt, { numClasses: 2 });
    model.loadStateDict(parseSafetensors(bytes).tensors);
    const image: RgbImage = { width: 45, height: 37, data: Uint8Array.from({ length: 45 * 37 * 3 }, (_, i) => (i * 37) % 251) };
    const expected = await classifier.predict(image);
    const [p] = await predict(model, [image], { imageSize: 32, classes: classifier.classes });
    expect(p!.className).toBe(classifier.classes[expected.label]);
    expect(p!.probabilities).toEqual(expected.probabilities);
    classifier.release();
    model.release();
  });

  it('trainStep() returns the mean loss and the correct count, and trains the parameter groups', async () => {
    const model = resnet18(rt, { numClasses: 2 }).train();
    const before = await model.fc.weight.read();
    const optimizer = new SGD([{ params: model.fc.parameters(), lr: 0.1 }], { lr: 0 });
    const r = await trainStep(model, optimizer, batch(4, 32));
    expect(r.examples).toBe(4);
    expect(r.loss).toBeGreaterThan(0);
    expect(Number.isInteger(r.correct) && r.correct >= 0 && r.correct <= 4).toBe(true);
    expect(await model.fc.weight.read()).not.toEqual(before);
    optimizer.release();
    model.release();
  });
});

#!/usr/bin/env node
// npm run predict -- --weights model.safetensors IMAGE_OR_FOLDER...: class probabilities per image, with the
// class names and image size from the weights' metadata (as npm run finetune writes them). An image that cannot
// be read gets its own error line; the others are still classified. Exit status 0, 1 when some image failed,
// 2 for a bad command line.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { noGrad } from '../autograd/grad-mode.js';
import { compareCodePoints, evalTransform, hasImageExtension, loadSample, type TensorImage } from '../data/index.js';
import { Tensor } from '../runtime/tensor.js';
import { resnet18 } from '../nn/resnet.js';
import type { StateDict } from '../weights/state-dict.js';
import { createNodeRuntime, destroyNodeRuntime } from '../node/engine-node.js';
import { readSafetensorsFile, readStateDictFile } from '../node/weights-file.js';
import { UsageError } from './finetune-options.js';

const HELP = `Classify images with fine-tuned weights.

usage: npm run predict -- --weights FILE [options] IMAGE_OR_FOLDER...

  --weights FILE      model.safetensors from a run folder (or any ResNet-18 .pth/.safetensors; then pass --classes)
  --classes A,B,...   class names, in label order (default: the weights' metadata)
  --image-size N      Resize(N*256/224) + CenterCrop(N) (default: the size the weights were trained at, else 224)
  --batch-size N      images per forward pass (16)
  --json              one JSON object: {"weights", "classes", "predictions": [{"file", "probabilities"} or {"file", "error"}]}
  -h, --help

Folders are searched recursively for images (torchvision's extensions).`;

export interface Prediction {
  file: string;
  probabilities?: Record<string, number>;
  predicted?: string;
  error?: string;
}

function listInputs(paths: readonly string[]): string[] {
  const files: string[] = [];
  const walk = (dir: string): void => {
    const entries = readdirSync(dir, { withFileTypes: true }).sort((a, b) => compareCodePoints(a.name, b.name));
    for (const e of entries) {
      if (e.name.startsWith('.')) continue;
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (hasImageExtension(e.name)) files.push(p);
    }
  };
  for (const p of paths) {
    if (existsSync(p) && statSync(p).isDirectory()) walk(p);
    else files.push(p); // a missing or unreadable file gets its own error below
  }
  return files;
}

function softmax(logits: Float32Array, offset: number, n: number): number[] {
  let max = -Infinity;
  for (let j = 0; j < n; j++) max = Math.max(max, logits[offset + j]!);
  const e = Array.from({ length: n }, (_, j) => Math.exp(logits[offset + j]! - max));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / sum);
}

async function readWeights(path: string): Promise<{ dict: StateDict; metadata: Record<string, string> }> {
  if (path.toLowerCase().endsWith('.safetensors')) {
    const { tensors, metadata } = await readSafetensorsFile(path);
    return { dict: tensors, metadata: metadata ?? {} };
  }
  return { dict: await readStateDictFile(path), metadata: {} };
}

async function main(argv: string[]): Promise<number> {
  let values;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      options: {
        weights: { type: 'string' },
        classes: { type: 'string' },
        'image-size': { type: 'string' },
        'batch-size': { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: true,
      strict: true,
    }));
    if (values.help) {
      process.stdout.write(`${HELP}\n`);
      return 0;
    }
    if (!values.weights) throw new UsageError('--weights FILE is required');
    if (positionals.length === 0) throw new UsageError('give at least one image or folder');
  } catch (e) {
    process.stderr.write(`predict: ${(e as Error).message}\n(npm run predict -- --help lists the options)\n`);
    return 2;
  }
  const weightsPath = resolve(values.weights);
  const positiveInt = (flag: string, v: string | undefined, fallback: number): number => {
    if (v === undefined) return fallback;
    const n = Number(v);
    if (!Number.isInteger(n) || n <= 0) throw new UsageError(`--${flag}: '${v}' is not a positive integer`);
    return n;
  };

  let dict: StateDict;
  let classes: string[];
  let imageSize: number;
  let batchSize: number;
  try {
    if (!existsSync(weightsPath)) throw new UsageError(`--weights: the file ${weightsPath} does not exist`);
    const w = await readWeights(weightsPath);
    dict = w.dict;
    const fc = dict.get('fc.weight');
    if (!fc || fc.shape.length !== 2) throw new UsageError(`--weights: ${weightsPath} is not a ResNet checkpoint (no 2-D fc.weight)`);
    const n = fc.shape[0]!;
    if (values.classes) classes = values.classes.split(',').map((c) => c.trim());
    else if (w.metadata.classes) classes = JSON.parse(w.metadata.classes) as string[];
    else throw new UsageError(`--weights: ${weightsPath} names no classes in its metadata; pass --classes A,B,...`);
    if (classes.length !== n) throw new UsageError(`${classes.length} class names for a ${n}-way head`);
    imageSize = positiveInt('image-size', values['image-size'], Number(w.metadata.image_size) || 224);
    batchSize = positiveInt('batch-size', values['batch-size'], 16);
  } catch (e) {
    const usage = e instanceof UsageError;
    process.stderr.write(`predict: ${(e as Error).message}\n`);
    return usage ? 2 : 1;
  }

  const files = listInputs(positionals);
  const transform = evalTransform(imageSize);
  const results: Prediction[] = files.map((file) => ({ file }));
  const rt = await createNodeRuntime();
  const model = resnet18(rt, { numClasses: classes.length });
  try {
    model.loadStateDict(dict, { source: weightsPath });
    model.eval();
    for (let start = 0; start < files.length; start += batchSize) {
      const slots = results.slice(start, start + batchSize);
      const loaded = await Promise.all(
        slots.map((p) =>
          loadSample(p.file, transform, 0).catch((e: unknown) => {
            p.error = e instanceof Error ? e.message : String(e);
            return null;
          }),
        ),
      );
      const ok = slots.filter((_, k) => loaded[k]);
      const images = loaded.filter((t): t is TensorImage => t !== null);
      if (images.length === 0) continue;
      const size = 3 * imageSize * imageSize;
      const batch = new Float32Array(images.length * size);
      images.forEach((t, k) => batch.set(t.data, k * size));
      const y = noGrad(() => {
        const x = Tensor.fromArray(rt, batch, [images.length, 3, imageSize, imageSize], 'images');
        const out = model.forward(x);
        x.release();
        return out;
      });
      const logits = await y.read();
      y.release();
      ok.forEach((p, k) => {
        const probs = softmax(logits, k * classes.length, classes.length);
        p.probabilities = Object.fromEntries(classes.map((c, j) => [c, probs[j]!]));
        p.predicted = classes[probs.indexOf(Math.max(...probs))];
      });
    }
  } finally {
    model.release();
    destroyNodeRuntime(rt);
  }

  if (values.json) {
    process.stdout.write(`${JSON.stringify({ weights: weightsPath, classes, imageSize, predictions: results }, null, 2)}\n`);
  } else {
    for (const p of results) {
      if (p.error) process.stdout.write(`${p.file}: error: ${p.error}\n`);
      else process.stdout.write(`${p.file}: ${p.predicted} (${classes.map((c) => `${c} ${p.probabilities![c]!.toFixed(3)}`).join(', ')})\n`);
    }
  }
  const failed = results.filter((p) => p.error).length;
  if (failed && !values.json) process.stderr.write(`predict: ${failed} of ${results.length} images could not be classified\n`);
  return failed ? 1 : 0;
}

process.exitCode = await main(process.argv.slice(2));

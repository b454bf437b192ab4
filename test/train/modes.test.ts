// The four modes: which weights each run starts from, which parameters train, at which learning rates.
import { beforeAll, describe, expect, it } from 'vitest';
import type { Runtime } from '../../src/runtime/runtime.js';
import { resnet18 } from '../../src/nn/resnet.js';
import type { StateDict } from '../../src/weights/state-dict.js';
import { createModel, hotdogClassIndex, IMAGENET_HOTDOG_CLASS, modeDefaults, parameterGroups } from '../../src/train/modes.js';
import { testRuntime } from '../helpers/gpu.js';

const CLASSES = ['hotdog', 'not-hotdog'];
let rt: Runtime;
let imagenet: StateDict; // a stand-in for the ImageNet checkpoint: seeded random weights, 1000-way head

beforeAll(async () => {
  rt = await testRuntime();
  const m = resnet18(rt, { numClasses: 1000, seed: 99 });
  imagenet = await m.stateDict();
  m.release();
});

const f32 = (d: StateDict, name: string): Float32Array => d.get(name)!.data as Float32Array;

describe('modes', () => {
  it('defaults follow the chapter: fine-tuning 5e-5 with the head at 10x, from scratch 5e-4 for all', () => {
    expect(modeDefaults('finetune')).toEqual({ lr: 5e-5, headLrMult: 10 });
    expect(modeDefaults('frozen')).toEqual({ lr: 5e-5, headLrMult: 10 });
    expect(modeDefaults('hotdog-head')).toEqual({ lr: 5e-5, headLrMult: 10 });
    expect(modeDefaults('scratch')).toEqual({ lr: 5e-4, headLrMult: 1 });
  });

  it('finetune: the pretrained body, a new xavier head, body at lr and head at lr x mult; frozen: only the head trains', async () => {
    const { model, source } = createModel(rt, 'finetune', CLASSES, 3, { dict: imagenet, source: 'in.pth' });
    expect(source).toBe('in.pth (1000-way head replaced by a new 2-way one)');
    const got = await model.stateDict();
    for (const [name, t] of imagenet) {
      if (name.startsWith('fc.')) continue;
      expect(Buffer.from(got.get(name)!.data.buffer).equals(Buffer.from(t.data.buffer)), name).toBe(true);
    }
    const w = f32(got, 'fc.weight');
    expect(got.get('fc.weight')!.shape).toEqual([2, 512]);
    const bound = Math.sqrt(6 / (512 + 2));
    expect(Math.max(...w.map(Math.abs))).toBeLessThanOrEqual(bound);
    expect(Math.max(...w.map(Math.abs))).toBeGreaterThan(0.9 * bound);
    const groups = parameterGroups(model, 'finetune', 5e-5, 10);
    expect(groups.map((g) => [g.params.length, g.lr])).toEqual([[60, 5e-5], [2, 5e-4]]);
    expect(groups[1]!.params).toEqual([model.fc.weight, model.fc.bias]);
    expect(model.parameters().every((p) => p.requiresGrad)).toBe(true);

    // scratch: one group with every parameter (the grouping depends only on the structure).
    const scratch = parameterGroups(model, 'scratch', 5e-4, 1);
    expect(scratch.map((g) => [g.params.length, g.lr])).toEqual([[62, 5e-4]]);

    const frozen = parameterGroups(model, 'frozen', 5e-5, 10);
    expect(frozen[0]!.params.every((p) => !p.requiresGrad)).toBe(true);
    expect(frozen[1]!.params.every((p) => p.requiresGrad)).toBe(true);
    model.release();
  });

  it('hotdog-head: the hot-dog row is ImageNet row 934 (weight and bias), the other row the new head\'s init', async () => {
    const classes = ['Not hot dog', 'Hot-Dog']; // hot dog is label 1 here
    const { model, source } = createModel(rt, 'hotdog-head', classes, 3, { dict: imagenet, source: 'in.pth' });
    expect(source).toMatch(/row 1 \(Hot-Dog\) copied from ImageNet class 934/);
    const w = await model.fc.weight.read();
    const b = await model.fc.bias!.read();
    const row934 = f32(imagenet, 'fc.weight').subarray(IMAGENET_HOTDOG_CLASS * 512, (IMAGENET_HOTDOG_CLASS + 1) * 512);
    expect(Array.from(w.subarray(512, 1024))).toEqual(Array.from(row934));
    expect(b[1]).toBe(f32(imagenet, 'fc.bias')[IMAGENET_HOTDOG_CLASS]);
    // Row 0 keeps the new head's initialisation: xavier-uniform weight, PyTorch's default bias bound 1/sqrt(512).
    const other = w.subarray(0, 512);
    expect(Math.max(...other.map(Math.abs))).toBeLessThanOrEqual(Math.sqrt(6 / 514));
    expect(Math.max(...other.map(Math.abs))).toBeGreaterThan(0.9 * Math.sqrt(6 / 514));
    expect(Math.abs(b[0]!)).toBeLessThanOrEqual(1 / Math.sqrt(512));
    expect(b[0]).not.toBe(f32(imagenet, 'fc.bias')[0]);
    model.release();
  });

  it('hotdog-head needs a class named hotdog and a 1000-way head', () => {
    expect(hotdogClassIndex(['cat', 'hot dog'])).toBe(1);
    expect(() => hotdogClassIndex(['cat', 'dog'])).toThrow(/needs a class named hotdog; the classes are cat, dog/);
    const twoWay: StateDict = new Map(imagenet);
    twoWay.set('fc.weight', { dtype: 'float32', shape: [2, 512], data: new Float32Array(1024) });
    twoWay.set('fc.bias', { dtype: 'float32', shape: [2], data: new Float32Array(2) });
    expect(() => createModel(rt, 'hotdog-head', CLASSES, 0, { dict: twoWay, source: 'standin.pth' })).toThrow(/needs a pretrained 1000-way ImageNet head .* standin\.pth has 2 classes/);
  });
});

// The training recipe's one owner: the chapter's four ways to start a run (d2l's fine-tuning chapter and its
// exercises), their default learning rates, the model they start from, the optimizer's parameter groups and their
// learning rates, and the pretrained head's hot-dog row. The CLI, a resumed run and the classifier (the page) all
// take them from here. Web-standard: the pretrained weights come in as a state dict.
import type { Runtime } from '../runtime/runtime.js';
import type { Tensor } from '../runtime/tensor.js';
import { replaceHead, resnet18, type ResNet } from '../nn/resnet.js';
import { SGD, type ParamGroup } from '../nn/sgd.js';
import { toFloat32, type StateDict } from '../weights/state-dict.js';

export const MODES = ['finetune', 'scratch', 'frozen', 'hotdog-head'] as const;
export type Mode = (typeof MODES)[number];

export function isMode(s: string): s is Mode {
  return (MODES as readonly string[]).includes(s);
}

/** ImageNet's class 934, "hotdog, hot dog, red hot": the pretrained head's hot-dog row. */
export const IMAGENET_HOTDOG_CLASS = 934;

/**
 * The chapter's learning rates. Fine-tuning: 5e-5 with the new head at 10x; from scratch: 5e-4 for every
 * parameter. Freezing the body and initialising the head from row 934 are exercises on the fine-tuning recipe,
 * so they keep its rates (the frozen run's head thus trains at 5e-4).
 */
export function modeDefaults(mode: Mode): { lr: number; headLrMult: number } {
  return mode === 'scratch' ? { lr: 5e-4, headLrMult: 1 } : { lr: 5e-5, headLrMult: 10 };
}

/** What a run trains with, whoever starts it (the CLI, a resumed run, a library user): the recipe's numbers. */
export interface Recipe {
  mode: Mode;
  /** Side of the training crops; evaluation resizes to size * 256 / 224 and centre-crops size (evalTransform). */
  imageSize: number;
  epochs: number;
  batchSize: number;
  /** The body's learning rate (every parameter's from scratch). */
  lr: number;
  /** The head trains at lr x this (not used from scratch). */
  headLrMult: number;
  weightDecay: number;
  momentum: number;
  seed: number;
  /** At most this many batches an epoch (quick runs); null: all. */
  maxBatches: number | null;
}

export class ModeError extends Error {
  override name = 'ModeError';
}

/** Index of the class named "hotdog" (case, spaces and dashes ignored: "Hot dog", "hot-dog"...). */
export function hotdogClassIndex(classes: readonly string[]): number {
  const i = classes.findIndex((c) => c.toLowerCase().replace(/[^a-z0-9]/g, '') === 'hotdog');
  if (i < 0) throw new ModeError(`--mode hotdog-head needs a class named hotdog; the classes are ${classes.join(', ')}`);
  return i;
}

export interface BuiltModel {
  model: ResNet;
  /** Where the weights came from, for the run record. */
  source: string;
}

/**
 * The run's starting model. `scratch`: torchvision's random init (seeded). Every other mode: the pretrained
 * body with a new xavier-initialised head for `classes`; `hotdog-head` then copies the pretrained head's row 934
 * (weight and bias) into the hot-dog row, the other rows keep the new head's initialisation.
 */
export function createModel(
  rt: Runtime,
  mode: Mode,
  classes: readonly string[],
  seed: number,
  pretrained?: { dict: StateDict; source: string },
): BuiltModel {
  const numClasses = classes.length;
  if (mode === 'scratch') return { model: resnet18(rt, { numClasses, seed }), source: 'random init (from scratch)' };
  if (!pretrained) throw new ModeError(`--mode ${mode} needs pretrained weights`);
  const { dict, source } = pretrained;
  const fc = dict.get('fc.weight');
  const fcBias = dict.get('fc.bias');
  if (!fc || fc.shape.length !== 2 || !fcBias) throw new ModeError(`${source}: not a ResNet checkpoint (no 2-D fc.weight and fc.bias)`);
  const oldClasses = fc.shape[0]!;
  const hot = mode === 'hotdog-head' ? hotdogClassIndex(classes) : -1;
  if (mode === 'hotdog-head' && oldClasses <= IMAGENET_HOTDOG_CLASS) {
    throw new ModeError(`--mode hotdog-head needs a pretrained 1000-way ImageNet head (row ${IMAGENET_HOTDOG_CLASS} is hot dog); ${source} has ${oldClasses} classes`);
  }
  const model = resnet18(rt, { numClasses: oldClasses, seed });
  model.loadStateDict(dict, { source });
  let oldWeight: Float32Array | null = null;
  let oldBias: Float32Array | null = null;
  if (hot >= 0) {
    const inFeatures = fc.shape[1]!;
    const w = toFloat32(fc);
    oldWeight = w.slice(IMAGENET_HOTDOG_CLASS * inFeatures, (IMAGENET_HOTDOG_CLASS + 1) * inFeatures);
    oldBias = toFloat32(fcBias).slice(IMAGENET_HOTDOG_CLASS, IMAGENET_HOTDOG_CLASS + 1);
  }
  const head = replaceHead(model, numClasses, seed);
  let note = `${oldClasses}-way head replaced by a new ${numClasses}-way one`;
  if (oldWeight && oldBias) {
    rt.write(head.weight.buffer, hot * head.inFeatures * 4, oldWeight);
    rt.write(head.bias!.buffer, hot * 4, oldBias);
    note += `; its row ${hot} (${classes[hot]}) copied from ImageNet class ${IMAGENET_HOTDOG_CLASS}`;
  }
  return { model, source: `${source} (${note})` };
}

/**
 * The optimizer's parameter groups: one group at `lr` from scratch; otherwise the body at `lr` and the head at
 * `lr * headLrMult`, with the body's parameters frozen (no gradient, so no update) in `frozen` mode.
 */
export function parameterGroups(model: ResNet, mode: Mode, lr: number, headLrMult: number): ParamGroup[] {
  const lrs = groupLearningRates(mode, lr, headLrMult);
  if (mode === 'scratch') return [{ params: model.parameters(), lr: lrs[0]! }];
  const head: Tensor[] = [model.fc.weight, ...(model.fc.bias ? [model.fc.bias] : [])];
  const body = model.parameters().filter((p) => !head.includes(p));
  if (mode === 'frozen') for (const p of body) p.requiresGrad = false;
  return [
    { params: body, lr: lrs[0]! },
    { params: head, lr: lrs[1]! },
  ];
}

/** The learning rate of each of parameterGroups' groups, in order: [lr] from scratch, else [body, head]. */
export function groupLearningRates(mode: Mode, lr: number, headLrMult: number): number[] {
  return mode === 'scratch' ? [lr] : [lr, lr * headLrMult];
}

/** The recipe's optimizer: SGD over parameterGroups, with the recipe's weight decay and momentum. */
export function recipeOptimizer(model: ResNet, recipe: Pick<Recipe, 'mode' | 'lr' | 'headLrMult' | 'weightDecay' | 'momentum'>): SGD {
  const groups = parameterGroups(model, recipe.mode, recipe.lr, recipe.headLrMult);
  return new SGD(groups, { lr: recipe.lr, weightDecay: recipe.weightDecay, momentum: recipe.momentum });
}

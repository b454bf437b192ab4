// BatchNorm2d (NCHW) as torch.nn.BatchNorm2d with affine=True, track_running_stats=True.
//
// num_batches_tracked (an int64 in PyTorch state dicts) is kept on the host: pass `tracker` and every training
// forward increments tracker.numBatchesTracked. It only matters for momentum=null (cumulative moving average,
// factor 1/numBatchesTracked), which is supported when a tracker is given.
import { batchChunks, type BatchChunk } from '../../runtime/chunks.js';
import type { KernelDef } from '../../runtime/kernel.js';
import type { BufferSource, Runtime } from '../../runtime/runtime.js';
import { Tensor } from '../../runtime/tensor.js';
import {
  ELEMENTWISE_MAX_LOADS,
  ELEMENTWISE_WG,
  REDUCE_WG,
  applyKey,
  bnAffine,
  bnApply,
  bnGradFinal,
  bnGradInput,
  bnGradPartial,
  bnStatsFinal,
  bnStatsPartial,
  type GradInputVariant,
  type GradPartialVariant,
  type Lanes,
  type ReluMask,
} from './batch-norm.wgsl.js';

type F32 = Tensor<'f32'>;

export interface BatchNormTracker {
  numBatchesTracked: number;
}

/** What the forward applies after the normalisation: z = relu(bn(x) + residual), each part optional. */
export interface BatchNormEpilogue {
  relu?: boolean;
  /** Same shape as x; added before the relu (the end of a ResNet BasicBlock: relu(bn2(conv2(h)) + identity)). */
  residual?: F32 | null;
}

export interface BatchNormTrainOptions extends BatchNormEpilogue {
  /** Weight of the new batch statistic in the running average (PyTorch's default 0.1); null = cumulative average. */
  momentum?: number | null;
  eps?: number;
  tracker?: BatchNormTracker;
}

/**
 * What the backward must know of the forward's epilogue. With relu, the mask [z > 0] is recomputed from x when no
 * residual was added (give the forward's bias), or read from the forward's output z (give it) when one was.
 */
export interface BatchNormBackwardEpilogue {
  relu?: { bias: F32 } | { output: F32 };
}

export interface BatchNormNeeds {
  input: boolean;
  weight: boolean;
  bias: boolean;
  /** The gradient of the epilogue's residual (dZ, the gradient reaching bn(x) + residual). */
  residual?: boolean;
}

export interface BatchNormGrads {
  gx: F32 | null;
  gweight: F32 | null;
  gbias: F32 | null;
  /** Only when needs.residual. */
  gresidual?: F32 | null;
}

// A stage-1 workgroup reduces about this many elements (REDUCE_WG invocations x 256 elements each).
const ELEMENTS_PER_PARTIAL = REDUCE_WG * 256;
const MAX_PARTIALS_PER_SLICE = 1024;

interface Geometry {
  N: number;
  C: number;
  HW: number;
  /** Elements per load (vec4 when a plane is a whole number of them). */
  L: Lanes;
  chunks: BatchChunk[];
}

function sameShape(op: string, x: F32, t: Tensor): void {
  if (t.shape.length !== x.shape.length || t.shape.some((d, i) => d !== x.shape[i])) {
    throw new Error(`${op}: shape [${t.shape.join(', ')}] does not match the input's [${x.shape.join(', ')}]`);
  }
}

function geometry(rt: Runtime, op: string, x: F32, others: readonly Tensor[] = []): Geometry {
  if (x.shape.length !== 4) throw new Error(`${op}: expected an NCHW tensor, got shape [${x.shape.join(', ')}]`);
  const [N, C, H, W] = x.shape as [number, number, number, number];
  for (const t of others) sameShape(op, x, t);
  const HW = H * W;
  return { N, C, HW, L: HW % 4 === 0 ? 4 : 1, chunks: batchChunks(rt, N, [C * HW]) };
}

function checkChannelVectors(op: string, C: number, vectors: Record<string, Tensor>): void {
  for (const [name, t] of Object.entries(vectors)) {
    if (t.size !== C) throw new Error(`${op}: ${name} has ${t.size} elements, expected ${C} (one per channel)`);
  }
}

function checkResidual(op: string, x: F32, residual: F32 | null | undefined): void {
  if (!residual) return;
  if (residual.shape.length !== x.shape.length || residual.shape.some((d, i) => d !== x.shape[i])) {
    throw new Error(`${op}: residual has shape [${residual.shape.join(', ')}], expected the input's [${x.shape.join(', ')}]`);
  }
}

interface SlicePlan {
  chunk: BatchChunk;
  /** Loads of one channel in the slice, loads per partial, partials, first partial's index. */
  M: number;
  per: number;
  G: number;
  base: number;
}

/** Per-slice stage-1 plan: workgroups per channel and where the slice's partials start. */
function partialPlan(g: Geometry): { slices: SlicePlan[]; P: number } {
  let base = 0;
  const HWL = g.HW / g.L;
  const slices = g.chunks.map((chunk) => {
    const M = chunk.count * HWL;
    const G = Math.min(MAX_PARTIALS_PER_SLICE, Math.ceil((chunk.count * g.HW) / ELEMENTS_PER_PARTIAL));
    const per = Math.max(1, Math.ceil(M / Math.max(1, G)));
    const s = { chunk, M, G: Math.ceil(M / per), per, base };
    base += s.G;
    return s;
  });
  return { slices, P: base };
}

function reduceParams(g: Geometry, s: SlicePlan): Record<string, number> {
  return { C: g.C, HW: g.HW / g.L, M: s.M, per: s.per, run: Math.ceil(s.per / REDUCE_WG), partBase: s.base };
}

type Range = (t: F32) => BufferSource;

/** Binds the slice's part of full-size NCHW tensors. */
function sliceRange(g: Geometry, chunk: BatchChunk): Range {
  const perSample = g.C * g.HW;
  return (t) => t.gpuBindingRange(chunk.start * perSample, chunk.count * perSample);
}

/** Records an elementwise kernel over NCHW tensors, batch slice by batch slice. */
function elementwise(rt: Runtime, g: Geometry, def: KernelDef, bind: (range: Range) => Record<string, BufferSource>): void {
  const HWL = g.HW / g.L;
  // Runs of equal length (the last one of a plane may be shorter): ceil(49 / ceil(49 / 32)) = 25, not 32 + 17.
  const runs = Math.max(1, Math.ceil(HWL / ELEMENTWISE_MAX_LOADS));
  const run = Math.max(1, Math.ceil(HWL / runs));
  for (const chunk of g.chunks) {
    const invocations = chunk.count * g.C * runs;
    rt.dispatch(def, rt.grid(Math.ceil(invocations / ELEMENTWISE_WG)), bind(sliceRange(g, chunk)), { C: g.C, HW: HWL, invocations, runs, run });
  }
}

function apply(rt: Runtime, g: Geometry, x: F32, aff: F32, epilogue: BatchNormEpilogue): F32 {
  const residual = epilogue.residual ?? null;
  const y = Tensor.empty(rt, x.shape, 'f32', residual ? 'batchNorm.addRelu' : epilogue.relu ? 'batchNorm.relu' : 'batchNorm.y');
  const def = bnApply(applyKey({ L: g.L, relu: epilogue.relu ?? false, residual: residual !== null }));
  elementwise(rt, g, def, (range) => ({ x: range(x), aff, ...(residual ? { residual: range(residual) } : {}), y: range(y) }));
  return y;
}

/**
 * Training-mode forward: normalises with the batch mean and biased variance, applies the epilogue, and updates
 * runningMean/runningVar in place (running_var takes the unbiased variance). saveMean/saveInvStd are what the
 * backward needs.
 */
export function batchNormTrainForward(
  x: F32,
  weight: F32,
  bias: F32,
  runningMean: F32,
  runningVar: F32,
  options: BatchNormTrainOptions = {},
): { y: F32; saveMean: F32; saveInvStd: F32 } {
  const rt = x.rt;
  const op = 'batchNormTrainForward';
  const g = geometry(rt, op, x);
  checkChannelVectors(op, g.C, { weight, bias, runningMean, runningVar });
  checkResidual(op, x, options.residual);
  const count = g.N * g.HW;
  if (count <= 1) throw new Error(`${op}: expected more than 1 value per channel when training, got input [${x.shape.join(', ')}]`);
  const eps = options.eps ?? 1e-5;
  const tracker = options.tracker;
  let momentum = options.momentum === undefined ? 0.1 : options.momentum;
  if (momentum === null && !tracker) throw new Error(`${op}: momentum null (cumulative average) needs a tracker`);
  if (tracker) tracker.numBatchesTracked += 1;
  if (momentum === null) momentum = 1 / tracker!.numBatchesTracked;

  const plan = partialPlan(g);
  const parts = Tensor.empty(rt, [plan.P, g.C, 3], 'f32', 'batchNorm.statsParts');
  for (const s of plan.slices) {
    rt.dispatch(bnStatsPartial(`${g.L}`), [s.G, g.C], { x: sliceRange(g, s.chunk)(x), parts }, reduceParams(g, s));
  }
  const saveMean = Tensor.empty(rt, [g.C], 'f32', 'batchNorm.saveMean');
  const saveInvStd = Tensor.empty(rt, [g.C], 'f32', 'batchNorm.saveInvStd');
  const aff = Tensor.empty(rt, [g.C, 4], 'f32', 'batchNorm.affine');
  rt.dispatch(
    bnStatsFinal,
    g.C,
    { parts, weight, bias, saveMean, saveInvStd, runningMean, runningVar, aff },
    { C: g.C, P: plan.P, eps, momentum, unbias: count / (count - 1) },
  );
  parts.release();
  const y = apply(rt, g, x, aff, options);
  aff.release();
  return { y, saveMean, saveInvStd };
}

/** aff (one vec4 per channel) from the running statistics (eval) or from the forward's saved batch statistics. */
function affine(rt: Runtime, C: number, mean: F32, stat: { variance: F32; eps: number } | { invStd: F32 }, weight: F32, bias: F32 | null): F32 {
  const aff = Tensor.empty(rt, [C, 4], 'f32', 'batchNorm.affine');
  const source = 'variance' in stat ? 'variance' : 'invStd';
  const bindings = { mean, [source]: 'variance' in stat ? stat.variance : stat.invStd, weight, ...(bias ? { bias } : {}), aff };
  rt.dispatch(bnAffine(`${source}${bias ? '+bias' : ''}` as const), Math.ceil(C / 64), bindings, { C, eps: 'eps' in stat ? stat.eps : 0 });
  return aff;
}

/** Eval-mode forward: normalises with the running statistics (which are not changed), then the epilogue. */
export function batchNormEvalForward(
  x: F32,
  weight: F32,
  bias: F32,
  runningMean: F32,
  runningVar: F32,
  eps = 1e-5,
  epilogue: BatchNormEpilogue = {},
): F32 {
  const rt = x.rt;
  const op = 'batchNormEvalForward';
  const g = geometry(rt, op, x);
  checkChannelVectors(op, g.C, { weight, bias, runningMean, runningVar });
  checkResidual(op, x, epilogue.residual);
  const aff = affine(rt, g.C, runningMean, { variance: runningVar, eps }, weight, bias);
  const y = apply(rt, g, x, aff, epilogue);
  aff.release();
  return y;
}

function reluMask(epilogue: BatchNormBackwardEpilogue): ReluMask {
  if (!epilogue.relu) return 'none';
  return 'output' in epilogue.relu ? 'output' : 'recompute';
}

function keep(t: F32 | null, needed: boolean): F32 | null {
  if (needed) return t;
  t?.release();
  return null;
}

/**
 * The backward of both modes. aff holds the statistics the forward normalised with; `train` says whether they
 * were the batch's own (x then enters them). One pass reduces sum dZ and sum dZ (x - mean) per channel (and stores
 * dZ when the residual needs it), a second writes the input gradient.
 */
function backward(
  rt: Runtime,
  g: Geometry,
  train: boolean,
  gy: F32,
  x: F32,
  aff: F32,
  epilogue: BatchNormBackwardEpilogue,
  needs: BatchNormNeeds,
): BatchNormGrads {
  const mask = reluMask(epilogue);
  const output = epilogue.relu && 'output' in epilogue.relu ? epilogue.relu.output : null;
  const wantResidual = needs.residual ?? false;
  const sums = needs.weight || needs.bias || (train && needs.input);
  let dz: F32 | null = null;
  let gweight: F32 | null = null;
  let gbias: F32 | null = null;
  let coef: F32 | null = null;
  if (sums || wantResidual) {
    const plan = partialPlan(g);
    const parts = Tensor.empty(rt, [plan.P, g.C, 2], 'f32', 'batchNorm.gradParts');
    if (wantResidual) dz = Tensor.empty(rt, x.shape, 'f32', 'batchNorm.dz');
    const variant: GradPartialVariant = { L: g.L, mask, writeDz: dz !== null };
    for (const s of plan.slices) {
      const range = sliceRange(g, s.chunk);
      const bindings: Record<string, BufferSource> = { gy: range(gy), x: range(x), aff, parts };
      if (output) bindings.y = range(output);
      if (dz) bindings.dz = range(dz);
      rt.dispatch(bnGradPartial(JSON.stringify(variant)), [s.G, g.C], bindings, reduceParams(g, s));
    }
    gweight = Tensor.empty(rt, [g.C], 'f32', 'batchNorm.gweight');
    gbias = Tensor.empty(rt, [g.C], 'f32', 'batchNorm.gbias');
    coef = Tensor.empty(rt, [g.C, 4], 'f32', 'batchNorm.gradCoef');
    rt.dispatch(bnGradFinal, g.C, { parts, aff, gweight, gbias, coef }, { C: g.C, P: plan.P, invM: 1 / (g.N * g.HW) });
    parts.release();
  }
  let gx: F32 | null = null;
  if (needs.input) {
    const variant: GradInputVariant = { L: g.L, mode: train ? 'train' : 'eval', source: dz ? 'dz' : mask };
    const out = Tensor.empty(rt, x.shape, 'f32', 'batchNorm.gx');
    elementwise(rt, g, bnGradInput(JSON.stringify(variant)), (range) => {
      const b: Record<string, BufferSource> = { aff, gx: range(out) };
      if (dz) b.dz = range(dz);
      else b.gy = range(gy);
      if (train || variant.source === 'recompute') b.x = range(x);
      if (variant.source === 'output') b.y = range(output!);
      if (train) b.coef = coef!;
      return b;
    });
    gx = out;
  }
  coef?.release();
  return {
    gx,
    gweight: keep(gweight, needs.weight),
    gbias: keep(gbias, needs.bias),
    ...(needs.residual !== undefined ? { gresidual: dz } : {}),
  };
}

function backwardChecks(op: string, gy: F32, x: F32, epilogue: BatchNormBackwardEpilogue, vectors: Record<string, Tensor>): Geometry {
  const rt = x.rt;
  const relu = epilogue.relu;
  const g = geometry(rt, op, x, [gy, ...(relu && 'output' in relu ? [relu.output] : [])]);
  checkChannelVectors(op, g.C, { ...vectors, ...(relu && 'bias' in relu ? { bias: relu.bias } : {}) });
  return g;
}

const none = (needs: BatchNormNeeds): boolean => !needs.input && !needs.weight && !needs.bias && !needs.residual;
const noGrads = (needs: BatchNormNeeds): BatchNormGrads => ({
  gx: null,
  gweight: null,
  gbias: null,
  ...(needs.residual !== undefined ? { gresidual: null } : {}),
});

/** Training-mode backward (batch statistics from the forward's saveMean/saveInvStd), through the epilogue. */
export function batchNormBackward(
  gy: F32,
  x: F32,
  weight: F32,
  saveMean: F32,
  saveInvStd: F32,
  needs: BatchNormNeeds,
  epilogue: BatchNormBackwardEpilogue = {},
): BatchNormGrads {
  const op = 'batchNormBackward';
  const g = backwardChecks(op, gy, x, epilogue, { weight, saveMean, saveInvStd });
  if (none(needs)) return noGrads(needs);
  const rt = x.rt;
  const bias = epilogue.relu && 'bias' in epilogue.relu ? epilogue.relu.bias : null;
  const aff = affine(rt, g.C, saveMean, { invStd: saveInvStd }, weight, bias);
  const grads = backward(rt, g, true, gy, x, aff, epilogue, needs);
  aff.release();
  return grads;
}

/** Eval-mode backward: y is affine in x with the running statistics as constants, then the epilogue. */
export function batchNormEvalBackward(
  gy: F32,
  x: F32,
  weight: F32,
  runningMean: F32,
  runningVar: F32,
  eps: number,
  needs: BatchNormNeeds,
  epilogue: BatchNormBackwardEpilogue = {},
): BatchNormGrads {
  const op = 'batchNormEvalBackward';
  const g = backwardChecks(op, gy, x, epilogue, { weight, runningMean, runningVar });
  if (none(needs)) return noGrads(needs);
  const rt = x.rt;
  const bias = epilogue.relu && 'bias' in epilogue.relu ? epilogue.relu.bias : null;
  const aff = affine(rt, g.C, runningMean, { variance: runningVar, eps }, weight, bias);
  const grads = backward(rt, g, false, gy, x, aff, epilogue, needs);
  aff.release();
  return grads;
}

// BatchNorm2d (NCHW) as torch.nn.BatchNorm2d with affine=True, track_running_stats=True.
//
// num_batches_tracked (an int64 in PyTorch state dicts) is kept on the host: pass `tracker` and every training
// forward increments tracker.numBatchesTracked. It only matters for momentum=null (cumulative moving average,
// factor 1/numBatchesTracked), which is supported when a tracker is given.
import { batchChunks, type BatchChunk } from '../chunks.js';
import type { KernelDef } from '../kernel.js';
import type { BufferSource, Runtime } from '../runtime.js';
import { Tensor } from '../tensor.js';
import {
  ELEMENTWISE_SPAN,
  REDUCE_WG,
  bnEvalInvStd,
  bnGradFinal,
  bnGradInputEval,
  bnGradInputTrain,
  bnGradPartial,
  bnNormalize,
  bnStatsFinal,
  bnStatsPartial,
} from './batch-norm.wgsl.js';

export interface BatchNormTracker {
  numBatchesTracked: number;
}

export interface BatchNormTrainOptions {
  /** Weight of the new batch statistic in the running average (PyTorch's default 0.1); null = cumulative average. */
  momentum?: number | null;
  eps?: number;
  tracker?: BatchNormTracker;
}

export interface BatchNormNeeds {
  input: boolean;
  weight: boolean;
  bias: boolean;
}

export interface BatchNormGrads {
  gx: Tensor<'f32'> | null;
  gweight: Tensor<'f32'> | null;
  gbias: Tensor<'f32'> | null;
}

type F32 = Tensor<'f32'>;

// A stage-1 workgroup reduces about this many elements (REDUCE_WG invocations x 64 elements each).
const ELEMENTS_PER_PARTIAL = REDUCE_WG * 64;
const MAX_PARTIALS_PER_SLICE = 1024;

interface Geometry {
  N: number;
  C: number;
  HW: number;
  chunks: BatchChunk[];
}

function geometry(rt: Runtime, op: string, x: F32, others: readonly Tensor[] = []): Geometry {
  if (x.shape.length !== 4) throw new Error(`${op}: expected an NCHW tensor, got shape [${x.shape.join(', ')}]`);
  const [N, C, H, W] = x.shape as [number, number, number, number];
  for (const t of others) {
    if (t.shape.length !== x.shape.length || t.shape.some((d, i) => d !== x.shape[i])) {
      throw new Error(`${op}: shape [${t.shape.join(', ')}] does not match the input's [${x.shape.join(', ')}]`);
    }
  }
  return { N, C, HW: H * W, chunks: batchChunks(rt, N, [C * H * W]) };
}

function checkChannelVectors(op: string, C: number, vectors: Record<string, Tensor>): void {
  for (const [name, t] of Object.entries(vectors)) {
    if (t.size !== C) throw new Error(`${op}: ${name} has ${t.size} elements, expected ${C} (one per channel)`);
  }
}

/** Per-slice stage-1 plan: workgroups per channel and where the slice's partials start. */
function partialPlan(g: Geometry): { slices: { chunk: BatchChunk; M: number; G: number; per: number; base: number }[]; P: number } {
  let base = 0;
  const slices = g.chunks.map((chunk) => {
    const M = chunk.count * g.HW;
    const G = Math.min(MAX_PARTIALS_PER_SLICE, Math.ceil(M / ELEMENTS_PER_PARTIAL));
    const per = Math.max(1, Math.ceil(M / Math.max(1, G)));
    const s = { chunk, M, G: Math.ceil(M / per), per, base };
    base += s.G;
    return s;
  });
  return { slices, P: base };
}

function reduceParams(g: Geometry, s: { M: number; per: number; base: number }): Record<string, number> {
  return { C: g.C, HW: g.HW, M: s.M, per: s.per, partBase: s.base, stepQ: g.HW ? Math.floor(REDUCE_WG / g.HW) : 0, stepR: g.HW ? REDUCE_WG % g.HW : 0 };
}

/**
 * Records an elementwise kernel over NCHW tensors, batch slice by batch slice; `bind` names the bindings of one
 * slice, `range(t)` being the slice of a full-size tensor t.
 */
function elementwise(rt: Runtime, g: Geometry, def: KernelDef, bind: (range: (t: F32) => BufferSource) => Record<string, BufferSource>): void {
  const perSample = g.C * g.HW;
  const pieces = Math.max(1, Math.ceil(g.HW / ELEMENTWISE_SPAN));
  for (const chunk of g.chunks) {
    const planes = chunk.count * g.C;
    const range = (t: F32) => t.gpuBindingRange(chunk.start * perSample, chunk.count * perSample);
    rt.dispatch(def, rt.grid(planes * pieces), bind(range), { C: g.C, HW: g.HW, planes, pieces });
  }
}

function normalize(rt: Runtime, g: Geometry, x: F32, mean: F32, invStd: F32, weight: F32, bias: F32): F32 {
  const y = Tensor.empty(rt, x.shape, 'f32', 'batchNorm.y');
  elementwise(rt, g, bnNormalize, (range) => ({ x: range(x), mean, invStd, weight, bias, y: range(y) }));
  return y;
}

/**
 * Training-mode forward: normalises with the batch mean and biased variance, and updates runningMean/runningVar
 * in place (running_var takes the unbiased variance). saveMean/saveInvStd are what the backward needs.
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
  const g = geometry(rt, 'batchNormTrainForward', x);
  checkChannelVectors('batchNormTrainForward', g.C, { weight, bias, runningMean, runningVar });
  const count = g.N * g.HW;
  if (count <= 1) throw new Error(`batchNormTrainForward: expected more than 1 value per channel when training, got input [${x.shape.join(', ')}]`);
  const eps = options.eps ?? 1e-5;
  const tracker = options.tracker;
  if (tracker) tracker.numBatchesTracked += 1;
  let momentum = options.momentum === undefined ? 0.1 : options.momentum;
  if (momentum === null) {
    if (!tracker) throw new Error('batchNormTrainForward: momentum null (cumulative average) needs a tracker');
    momentum = 1 / tracker.numBatchesTracked;
  }

  const plan = partialPlan(g);
  const parts = Tensor.empty(rt, [plan.P, g.C, 3], 'f32', 'batchNorm.statsParts');
  const perSample = g.C * g.HW;
  for (const s of plan.slices) {
    rt.dispatch(
      bnStatsPartial,
      [s.G, g.C],
      { x: x.gpuBindingRange(s.chunk.start * perSample, s.chunk.count * perSample), parts },
      reduceParams(g, s),
    );
  }
  const saveMean = Tensor.empty(rt, [g.C], 'f32', 'batchNorm.saveMean');
  const saveInvStd = Tensor.empty(rt, [g.C], 'f32', 'batchNorm.saveInvStd');
  rt.dispatch(
    bnStatsFinal,
    g.C,
    { parts, saveMean, saveInvStd, runningMean, runningVar },
    { C: g.C, P: plan.P, eps, momentum, unbias: count / (count - 1) },
  );
  parts.release();
  const y = normalize(rt, g, x, saveMean, saveInvStd, weight, bias);
  return { y, saveMean, saveInvStd };
}

function evalInvStd(rt: Runtime, C: number, runningVar: F32, eps: number): F32 {
  const invStd = Tensor.empty(rt, [C], 'f32', 'batchNorm.evalInvStd');
  rt.dispatch(bnEvalInvStd, Math.ceil(C / 64), { runningVar, invStd }, { C, eps });
  return invStd;
}

/** Eval-mode forward: normalises with the running statistics (which are not changed). */
export function batchNormEvalForward(x: F32, weight: F32, bias: F32, runningMean: F32, runningVar: F32, eps = 1e-5): F32 {
  const rt = x.rt;
  const g = geometry(rt, 'batchNormEvalForward', x);
  checkChannelVectors('batchNormEvalForward', g.C, { weight, bias, runningMean, runningVar });
  const invStd = evalInvStd(rt, g.C, runningVar, eps);
  const y = normalize(rt, g, x, runningMean, invStd, weight, bias);
  invStd.release();
  return y;
}

/** Per-channel sums of the backward; returns gweight, gbias and the training-mode input-gradient coefficients. */
function gradSums(rt: Runtime, g: Geometry, gy: F32, x: F32, weight: F32, mean: F32, invStd: F32): { gweight: F32; gbias: F32; coef: F32 } {
  const plan = partialPlan(g);
  const parts = Tensor.empty(rt, [plan.P, g.C, 2], 'f32', 'batchNorm.gradParts');
  const perSample = g.C * g.HW;
  for (const s of plan.slices) {
    const range = (t: F32) => t.gpuBindingRange(s.chunk.start * perSample, s.chunk.count * perSample);
    rt.dispatch(bnGradPartial, [s.G, g.C], { gy: range(gy), x: range(x), mean, parts }, reduceParams(g, s));
  }
  const gweight = Tensor.empty(rt, [g.C], 'f32', 'batchNorm.gweight');
  const gbias = Tensor.empty(rt, [g.C], 'f32', 'batchNorm.gbias');
  const coef = Tensor.empty(rt, [g.C, 3], 'f32', 'batchNorm.gradCoef');
  rt.dispatch(bnGradFinal, g.C, { parts, invStd, weight, gweight, gbias, coef }, { C: g.C, P: plan.P, invM: 1 / (g.N * g.HW) });
  parts.release();
  return { gweight, gbias, coef };
}

function keep(t: F32, needed: boolean): F32 | null {
  if (needed) return t;
  t.release();
  return null;
}

/** Training-mode backward (batch statistics from the forward's saveMean/saveInvStd). */
export function batchNormBackward(gy: F32, x: F32, weight: F32, saveMean: F32, saveInvStd: F32, needs: BatchNormNeeds): BatchNormGrads {
  const rt = x.rt;
  const g = geometry(rt, 'batchNormBackward', x, [gy]);
  checkChannelVectors('batchNormBackward', g.C, { weight, saveMean, saveInvStd });
  if (!needs.input && !needs.weight && !needs.bias) return { gx: null, gweight: null, gbias: null };
  // Every gradient, the input's included, needs both per-channel sums.
  const { gweight, gbias, coef } = gradSums(rt, g, gy, x, weight, saveMean, saveInvStd);
  let gx: F32 | null = null;
  if (needs.input) {
    const out = Tensor.empty(rt, x.shape, 'f32', 'batchNorm.gx');
    elementwise(rt, g, bnGradInputTrain, (range) => ({ gy: range(gy), x: range(x), mean: saveMean, coef, gx: range(out) }));
    gx = out;
  }
  coef.release();
  return { gx, gweight: keep(gweight, needs.weight), gbias: keep(gbias, needs.bias) };
}

/** Eval-mode backward: y is affine in x with the running statistics as constants. */
export function batchNormEvalBackward(
  gy: F32,
  x: F32,
  weight: F32,
  runningMean: F32,
  runningVar: F32,
  eps: number,
  needs: BatchNormNeeds,
): BatchNormGrads {
  const rt = x.rt;
  const g = geometry(rt, 'batchNormEvalBackward', x, [gy]);
  checkChannelVectors('batchNormEvalBackward', g.C, { weight, runningMean, runningVar });
  if (!needs.input && !needs.weight && !needs.bias) return { gx: null, gweight: null, gbias: null };
  const invStd = evalInvStd(rt, g.C, runningVar, eps);
  let gx: F32 | null = null;
  if (needs.input) {
    const out = Tensor.empty(rt, x.shape, 'f32', 'batchNorm.gx');
    elementwise(rt, g, bnGradInputEval, (range) => ({ gy: range(gy), invStd, weight, gx: range(out) }));
    gx = out;
  }
  let gweight: F32 | null = null;
  let gbias: F32 | null = null;
  if (needs.weight || needs.bias) {
    const sums = gradSums(rt, g, gy, x, weight, runningMean, invStd);
    sums.coef.release();
    gweight = keep(sums.gweight, needs.weight);
    gbias = keep(sums.gbias, needs.bias);
  }
  invStd.release();
  return { gx, gweight, gbias };
}

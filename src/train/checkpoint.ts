// The end-of-epoch checkpoint as one safetensors file: everything a run needs to continue exactly where it was.
//
//   model.<name>                        every parameter and buffer (torch's state_dict names)
//   optimizer.state.<i>.momentum_buffer SGD's momentum buffers (torch's optimizer.state_dict() indices)
//   data.next_order                     int32: the dataset indices the next epoch visits, in order
//   __metadata__                        format, epoch (completed), seed, rng, param_groups, data fingerprint, run
//
// What "RNG state" means here: the loader draws epoch e's permutation from deriveSeed(seed, 0x5eed, e) and sample
// k's augmentation from deriveSeed(seed, e, k) (src/data/loader.ts); the head's initialisation happens once, before
// epoch 1, and is in the saved weights. No generator carries state from one epoch to the next, so the seed and the
// epoch are the whole RNG state; the saved order lets a resumed run check that it visits the same data.
// Web-standard: the caller reads/writes the bytes.
import type { Module } from '../nn/module.js';
import { sgdStateFromTensors, sgdStateToTensors, type SGD, type SgdStateDict } from '../nn/sgd.js';
import type { StateDict } from '../weights/state-dict.js';
import { checkRunRecord, type RunRecord } from './run-record.js';

export const CHECKPOINT_FORMAT = 'hotdog-webgpu-checkpoint/1';

export interface TrainingState {
  /** Epochs completed. */
  epoch: number;
  seed: number;
  /** Dataset indices of the next epoch, in visiting order. */
  nextOrder: readonly number[];
  /** Identifies the training data (file list and labels); a resumed run refuses different data. */
  dataFingerprint: string;
  record: RunRecord;
}

export interface Checkpoint {
  model: StateDict;
  optimizer: SgdStateDict;
  state: TrainingState;
}

/** A parameter or buffer holds NaN/inf: such weights are never written over a good checkpoint. */
export class NonFiniteWeightsError extends Error {
  override name = 'NonFiniteWeightsError';
}

export function checkFinite(dict: StateDict, when: string): void {
  for (const [name, t] of dict) {
    if (t.data instanceof Float32Array && !t.data.every(Number.isFinite)) {
      throw new NonFiniteWeightsError(`${name} holds NaN or infinite values ${when}`);
    }
  }
}

/** Reads model and optimizer back from the GPU into the checkpoint's tensors and metadata. */
export async function checkpointContents(
  model: Module,
  optimizer: SGD,
  state: TrainingState,
): Promise<{ tensors: StateDict; metadata: Record<string, string> }> {
  const modelDict = await model.stateDict();
  checkFinite(modelDict, `after epoch ${state.epoch}`);
  const opt = sgdStateToTensors(await optimizer.stateDict());
  const tensors: StateDict = new Map();
  for (const [k, v] of modelDict) tensors.set(`model.${k}`, v);
  for (const [k, v] of opt.tensors) tensors.set(`optimizer.${k}`, v);
  tensors.set('data.next_order', { dtype: 'int32', shape: [state.nextOrder.length], data: Int32Array.from(state.nextOrder) });
  const metadata: Record<string, string> = {
    format: CHECKPOINT_FORMAT,
    epoch: String(state.epoch),
    seed: String(state.seed),
    rng: JSON.stringify({
      generator: 'xoshiro128** seeded through splitmix32 (src/util/random.ts)',
      shuffle: 'deriveSeed(seed, 0x5eed, epoch)',
      augmentation: 'deriveSeed(seed, epoch, sampleIndex)',
      seed: state.seed,
      nextEpoch: state.epoch,
    }),
    param_groups: opt.metadata.param_groups!,
    data_fingerprint: state.dataFingerprint,
    run: JSON.stringify(state.record),
  };
  return { tensors, metadata };
}

export function parseCheckpoint(tensors: StateDict, metadata: Record<string, string> | undefined, source: string): Checkpoint {
  if (metadata?.format !== CHECKPOINT_FORMAT) {
    throw new Error(`${source}: not a training checkpoint (metadata format ${JSON.stringify(metadata?.format)}, expected ${CHECKPOINT_FORMAT})`);
  }
  const model: StateDict = new Map();
  const opt: StateDict = new Map();
  let order: Int32Array | null = null;
  for (const [name, t] of tensors) {
    if (name.startsWith('model.')) model.set(name.slice(6), t);
    else if (name.startsWith('optimizer.')) opt.set(name.slice(10), t);
    else if (name === 'data.next_order' && t.data instanceof Int32Array) order = t.data;
    else throw new Error(`${source}: unexpected entry ${name}`);
  }
  const epoch = Number(metadata.epoch);
  const seed = Number(metadata.seed);
  if (!Number.isInteger(epoch) || epoch < 1 || !Number.isSafeInteger(seed)) throw new Error(`${source}: bad epoch/seed metadata`);
  if (!order) throw new Error(`${source}: no data.next_order`);
  let record: RunRecord;
  try {
    record = checkRunRecord(JSON.parse(metadata.run ?? ''), `${source} (run metadata)`);
  } catch (e) {
    throw new Error(`${source}: ${e instanceof SyntaxError ? 'the run metadata is not JSON' : (e as Error).message}`);
  }
  return {
    model,
    optimizer: sgdStateFromTensors(opt, metadata),
    state: { epoch, seed, nextOrder: Array.from(order), dataFingerprint: metadata.data_fingerprint ?? '', record },
  };
}

// run.json: everything needed to tell later what a run was and how it went. The engine's CLI and the PyTorch
// reference script (scripts/reference/finetune_torch.py) write the same shape, so runs can be compared.
import type { EpochMetrics } from './fit.js';
import type { Recipe } from './modes.js';

export const RUN_FORMAT = 'hotdog-webgpu-run/1';

/**
 * Memory at the end of an epoch: the GPU buffer pool (null for PyTorch), the process's resident set, and the bytes
 * the JS heap and its external buffers (typed arrays) hold (null for PyTorch). `afterGc`: measured right after a
 * full collection (node --expose-gc), so garbage does not count.
 */
export interface MemorySample {
  gpuPoolBytesHeld: number | null;
  gpuPoolBytesInUse: number | null;
  gpuBuffers: number | null;
  /** The most bytes of buffers in use at once since the run began (what bytesHeld could shrink to); absent in older records. */
  gpuPoolPeakBytesInUse?: number | null;
  /** Bytes of the operand textures the engine's pool holds (the texture GEMM's A and B); absent in older records. */
  gpuTexturePoolBytesHeld?: number | null;
  /** Textures the pool holds, live or free. */
  gpuTextures?: number | null;
  /** The most bytes of textures in use at once since the run began. */
  gpuTexturePoolPeakBytesInUse?: number | null;
  rssBytes: number;
  jsHeapBytes: number | null;
  afterGc: boolean;
}

export interface EpochRecord extends EpochMetrics {
  memory: MemorySample;
}

/** Running means inside an epoch: `epoch` is fractional (1.5 = half way through the second epoch). */
export interface TracePoint {
  epoch: number;
  batch: number;
  loss: number;
  trainAcc: number;
  examples: number;
}

/** A run's options as recorded and resolved (folders absolute): the recipe plus where its inputs and outputs are. */
export interface RunOptions extends Recipe {
  train: string;
  test: string;
  /** 'imagenet', 'none' or the weight file's absolute path. */
  weights: string;
  workers: number;
  out: string;
  /** Devices the run trains on (absent in records older than data parallelism: 1). */
  devices?: number;
  /** Micro-batches per batch and device (absent: 1). */
  accumulate?: number;
}

/** A device as a run record describes it: its kind, adapter (as WebGPU describes it) and limits. */
export interface DeviceRecord {
  kind: string;
  name: string;
  adapter: Record<string, string> | null;
  limits: Record<string, number> | null;
}

export interface RunRecord {
  format: typeof RUN_FORMAT;
  /** "hotdog-webgpu 0.1.0" or "pytorch 1.13.0". */
  engine: string;
  command: string[];
  started: string;
  finished: string | null;
  status: 'running' | 'finished' | 'failed';
  error?: string;
  options: RunOptions;
  seed: number;
  data: { train: string; test: string; classes: string[]; trainImages: number; testImages: number; batchesPerEpoch: number };
  model: { mode: string; weights: string; parameters: number; trainableParameters: number };
  device: DeviceRecord;
  /** Every device the run trains on, the first (the one `device` names) included; absent in older records. */
  devices?: DeviceRecord[];
  versions: Record<string, string>;
  epochs: EpochRecord[];
  trace: TracePoint[];
  /**
   * The engine's measured kernel choices (src/runtime/autotune.ts) the run computed with; a resume uses them again.
   * Absent in PyTorch's records.
   */
  kernelChoices?: Record<string, string>;
  /** Each time the run was continued with --resume: after which epoch, when, and what was changed. */
  resumes: { afterEpoch: number; at: string; changed: Record<string, number> }[];
  files: Record<string, string>;
}

/** Trace (and plain progress lines) every this many batches, and at an epoch's last batch: ten points an epoch. */
export function traceEvery(batchesPerEpoch: number): number {
  return Math.max(1, Math.floor(batchesPerEpoch / 10));
}

export function isTracePoint(batch: number, batchesPerEpoch: number): boolean {
  return batch % traceEvery(batchesPerEpoch) === 0 || batch === batchesPerEpoch;
}

/** Checks that a parsed JSON value is a run record (enough for plotting and resuming), naming what is wrong. */
export function checkRunRecord(value: unknown, source: string): RunRecord {
  const r = value as Partial<RunRecord> | null;
  if (typeof r !== 'object' || r === null || Array.isArray(r)) throw new Error(`${source}: not a JSON object`);
  if (r.format !== RUN_FORMAT) throw new Error(`${source}: not a run record (format ${JSON.stringify(r.format)}, expected ${RUN_FORMAT})`);
  for (const key of ['epochs', 'trace', 'resumes'] as const) {
    if (!Array.isArray(r[key])) throw new Error(`${source}: "${key}" is not a list`);
  }
  if (typeof r.options !== 'object' || r.options === null) throw new Error(`${source}: no "options"`);
  return r as RunRecord;
}

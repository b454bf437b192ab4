// Requests the bench orchestrator (bench/run.ts) sends to its workers: the engine (bench/workers/engine.ts), the
// tfjs peer (bench/workers/tfjs.ts) and the PyTorch peer (bench/peers/torch_step.py, JSON lines, same shapes).
import type { CheckResult } from './check.js';
import type { ConvDirection, ConvShape } from './shapes.js';

export type CaseSpec =
  | { type: 'train'; size: number; batch: number; momentum: number; weightDecay: number }
  | { type: 'inference'; size: number; batch: number }
  | { type: 'conv'; shape: ConvShape; direction: ConvDirection; batch: number }
  | { type: 'matmul'; n: number }
  | { type: 'fma'; wg: number };

export type Request =
  | { op: 'info' }
  | { op: 'prepare'; spec: CaseSpec }
  /** Runs the prepared case at least minRuns times and for at least minSeconds, at most maxRuns times. */
  | { op: 'run'; minSeconds: number; minRuns: number; maxRuns: number }
  | { op: 'release' }
  | { op: 'rss' };

export interface InfoReply {
  adapter: string;
  versions: Record<string, string>;
  threads?: number;
  /** The engine's adapter in detail (the tfjs and PyTorch peers give only `adapter`). */
  adapterInfo?: AdapterReport;
}

export interface AdapterReport {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  featureLevel: string;
  /** The adapter is a CPU driver (lavapipe, SwiftShader), whatever kernel mode the engine runs in. */
  cpuDriver: boolean;
  /** The engine's kernel mode: 'auto', or 'gpu' (HOTDOG_KERNELS=gpu: the GPU kernel choices on any adapter). */
  kernels: string;
  subgroupMinSize: number;
  subgroupMaxSize: number;
  features: string[];
  limits: Record<string, number>;
}

export interface PrepareReply {
  /** Wall time of the preparation (set-up plus one untimed warm-up run, which compiles). */
  seconds: number;
  /** Train cases: direct-convolution GFLOP of one step per conv direction, as the engine's op scopes declare. */
  convGflop?: Record<string, number>;
  /** FMA case: FLOPs of one run. */
  flop?: number;
  /** Conv cases: the lowering the tuner chose (conv2d.ts' ConvLowering). */
  lowering?: string;
  /** Kernel cases: sampled outputs against a float64 CPU computation, made before anything is timed. */
  check?: CheckResult;
  /** Kernel cases: calls recorded per timed run (one sync per run); RunReply's seconds are per call. */
  callsPerRun?: number;
  /** Train cases: the warm-up step's loss per example; inference: its largest |logit|. */
  value?: number;
}

export interface RunReply {
  seconds: number[];
  /** As PrepareReply.value, for the last timed run (engine train and inference cases). */
  value?: number;
}

export interface RssReply {
  /** Peak resident set size of the worker process so far. */
  maxRssBytes: number;
}

export type Envelope = { id: number; request: Request };
export type ReplyEnvelope = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: string };

/** Runs `once` until both minimums are met (or maxRuns), returning each run's seconds. */
export async function timeRuns(once: () => Promise<void>, r: { minSeconds: number; minRuns: number; maxRuns: number }): Promise<number[]> {
  const seconds: number[] = [];
  let total = 0;
  while (seconds.length < r.maxRuns && (seconds.length < r.minRuns || total < r.minSeconds)) {
    const t0 = performance.now();
    await once();
    const s = (performance.now() - t0) / 1e3;
    seconds.push(s);
    total += s;
  }
  return seconds;
}

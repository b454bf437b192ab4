// Big batches in little memory and several devices in one run, as PyTorch does them (d2l's train_ch13 trains with
// nn.DataParallel on every GPU):
//
// - Micro-batches (`accumulate` K): a batch runs as K shards one after the other on one device, each with its own
//   forward, BatchNorm statistics and backward; the gradients add up in .grad (the loss is a sum), then one optimizer
//   step. Peak memory is that of one shard.
// - Replicas: one model and optimizer per device. A batch is split across them the same way; each runs forward and
//   backward on its shard (micro-batched too when K > 1); each parameter's gradients are summed over the replicas in
//   replica order (0 + 1 + 2 ...) in float32 on the host, written back to every replica, and every replica takes the
//   same SGD step on the same sum, so the replicas stay bit-identical on devices of one adapter. (Devices of
//   different adapters may round an update differently: then only the first replica steps and its parameters are
//   copied to the others.) BatchNorm's running statistics are the first replica's, as in nn.DataParallel.
//
// Gradient exchange overlaps the backward pass: a layer's gradients are final as soon as the last tape entry that
// uses them has run (backward()'s onGradFinal); they are copied into a bucket then, and a full bucket is submitted
// and read back while the GPU still computes the earlier layers' gradients (PyTorch DDP's buckets).
//
// With one replica and K micro-batches the same arithmetic happens in the same order: K devices compute exactly what
// one device computes with `accumulate` K (test/train/data-parallel.test.ts holds the two equal).
import { crossEntropy } from '../autograd/functions.js';
import { noGrad } from '../autograd/grad-mode.js';
import { backward } from '../autograd/tape.js';
import { accuracyCount } from '../kernels/accuracy/accuracy.js';
import { describeAdapter } from '../runtime/device.js';
import type { Runtime } from '../runtime/runtime.js';
import { Tensor } from '../runtime/tensor.js';
import type { Module } from '../nn/module.js';
import type { SGD } from '../nn/sgd.js';
import type { HostBatch } from './batch.js';

/** A model and its optimizer on one device. */
export interface Replica {
  model: Module;
  optimizer: SGD;
}

/**
 * Shard sizes of `n` examples over `parts`: as even as possible, the first shards one larger (numpy's
 * array_split; PyTorch's scatter uses torch.chunk, which gives ceil(n / parts) to each shard but the last: the same
 * for every batch size that divides evenly, as the chapter's 128 over 2 GPUs does). Empty shards are kept (zeros).
 */
export function shardSizes(n: number, parts: number): number[] {
  if (!(Number.isInteger(parts) && parts >= 1)) throw new Error(`shardSizes: ${parts} is not a positive whole number of parts`);
  const base = Math.floor(n / parts);
  const extra = n % parts;
  return Array.from({ length: parts }, (_, i) => base + (i < extra ? 1 : 0));
}

/** The batch's shards (shardSizes), views of its arrays; shards with no example are left out. */
export function splitBatch(batch: HostBatch, parts: number): HostBatch[] {
  const n = batch.labels.length;
  const per = n ? batch.images.length / n : 0;
  const out: HostBatch[] = [];
  let at = 0;
  for (const size of shardSizes(n, parts)) {
    if (size === 0) continue;
    out.push({
      images: batch.images.subarray(at * per, (at + size) * per),
      labels: batch.labels.subarray(at, at + size),
      shape: [size, batch.shape[1], batch.shape[2], batch.shape[3]],
    });
    at += size;
  }
  return out;
}

/** A step's per-shard loss sums and correct counts, still on the GPU. */
interface ShardMetrics {
  loss: Tensor;
  correct: Tensor;
}

/**
 * Forward and backward of each micro-batch, one after the other; gradients add up in .grad (the caller zeroes them
 * first). `onGradFinal` sees each parameter once its gradient is final (in the last micro-batch's backward).
 */
export function forwardBackward(model: Module, micro: readonly HostBatch[], onGradFinal?: (p: Tensor) => void): ShardMetrics[] {
  const rt = model.rt;
  return micro.map((b, i) => {
    const x = Tensor.fromArray(rt, b.images, b.shape, 'images');
    const y = Tensor.fromArray(rt, b.labels, [b.labels.length], 'labels');
    const logits = model.forward(x);
    const correct = noGrad(() => accuracyCount(logits, y));
    const loss = crossEntropy(logits, y, 'sum');
    backward(loss, i === micro.length - 1 && onGradFinal ? { onGradFinal } : {});
    x.release();
    y.release();
    return { loss, correct };
  });
}

/** Reads every shard's loss sum (f32) and correct count (u32) in one readback; sums them in shard order. */
export async function readShardMetrics(rt: Runtime, shards: readonly ShardMetrics[]): Promise<[number, number]> {
  const packed = Tensor.empty(rt, [2 * shards.length], 'u32', 'metrics');
  shards.forEach((s, i) => {
    rt.copy(s.loss.buffer, 0, packed.buffer, 8 * i, 4);
    rt.copy(s.correct.buffer, 0, packed.buffer, 8 * i + 4, 4);
    s.loss.release();
    s.correct.release();
  });
  try {
    const view = new DataView((await packed.read()).buffer);
    let loss = 0;
    let correct = 0;
    for (let i = 0; i < shards.length; i++) {
      loss += view.getFloat32(8 * i, true);
      correct += view.getUint32(8 * i + 4, true);
    }
    return [loss, correct];
  } finally {
    packed.release();
  }
}

/** One batch as `accumulate` micro-batches on one device, then one optimizer step. */
export function accumulatedStep(model: Module, optimizer: SGD, batch: HostBatch, accumulate: number): Promise<[number, number]> {
  optimizer.zeroGrad();
  const shards = forwardBackward(model, splitBatch(batch, accumulate));
  optimizer.step();
  return readShardMetrics(model.rt, shards);
}

/** A device failed during a data-parallel step: names it (which replica, which adapter). */
export class DeviceFailedError extends Error {
  override name = 'DeviceFailedError';
  constructor(
    readonly replica: number,
    readonly replicas: number,
    readonly device: string,
    cause: unknown,
  ) {
    super(`device ${replica + 1} of ${replicas} (${device}) failed: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}

/** The trainable parameters of a replica, in the model's order (the same order on every replica). */
function trainable(model: Module): Tensor[] {
  return model.parameters().filter((p) => p.requiresGrad);
}

/**
 * Collects gradients as they become final into buckets of about `bucketBytes`, and reads each full bucket back at
 * once (one submit, one wait), so the copy overlaps the rest of the backward pass.
 */
class GradientBuckets {
  readonly buckets: { params: number[]; data: Promise<ArrayBuffer> }[] = [];
  private params: number[] = [];
  private parts: { buffer: GPUBuffer; offset: number; size: number }[] = [];
  private bytes = 0;
  private readonly seen = new Set<number>();

  constructor(
    private readonly rt: Runtime,
    private readonly index: ReadonlyMap<Tensor, number>,
    private readonly bucketBytes: number,
    /** Host buffers of this replica's buckets, kept from step to step. */
    private readonly hostBuffers: ArrayBuffer[],
  ) {}

  add(p: Tensor): void {
    const i = this.index.get(p);
    if (i === undefined || this.seen.has(i) || !p.grad) return;
    this.seen.add(i);
    this.params.push(i);
    this.parts.push({ buffer: p.grad.buffer, offset: 0, size: p.grad.byteLength });
    this.bytes += p.grad.byteLength;
    if (this.bytes >= this.bucketBytes) this.submit();
  }

  /** After backward: any parameter not yet seen (none in a plain ResNet), then the last partial bucket. */
  finish(params: readonly Tensor[]): void {
    for (const p of params) this.add(p);
    this.submit();
  }

  private submit(): void {
    if (!this.params.length) return;
    const b = this.buckets.length;
    let host = this.hostBuffers[b];
    if (!host || host.byteLength < this.bytes) host = this.hostBuffers[b] = new ArrayBuffer(this.bytes);
    this.buckets.push({ params: this.params, data: this.rt.readParts(this.parts, host) });
    this.params = [];
    this.parts = [];
    this.bytes = 0;
  }
}

export interface DataParallelOptions {
  /** Micro-batches per replica shard (default 1). */
  accumulate?: number;
  /** Gradient bucket size in bytes (default 8 MiB: ResNet-18's 44.7 MB of gradients in about 6 buckets). */
  bucketBytes?: number;
}

/** How replicas stay identical: the same step everywhere (one adapter), or the first replica's copied (several). */
export type ReplicaSync = 'step-all' | 'broadcast';

export function replicaSync(replicas: readonly Replica[]): ReplicaSync {
  const names = new Set(replicas.map((r) => describeAdapter(r.model.rt.ctx)));
  return names.size <= 1 ? 'step-all' : 'broadcast';
}

/** Each replica's bucket host buffers, reused from step to step. */
const hostBuffers = new WeakMap<Module, ArrayBuffer[]>();

/** Awaits every promise, then throws the first failure (none is left unobserved). */
async function settleAll<T>(promises: readonly Promise<T>[]): Promise<T[]> {
  const results = await Promise.allSettled(promises);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  return results.map((r) => (r as PromiseFulfilledResult<T>).value);
}

/**
 * One data-parallel step over the replicas (the first one's model is the one evaluated and saved): split, forward
 * and backward per replica with bucketed gradient readback, sum in replica order, write back, one step. Resolves to
 * the whole batch's [loss sum, correct]. A failing device rejects with DeviceFailedError naming it.
 */
export async function dataParallelStep(replicas: readonly Replica[], batch: HostBatch, options: DataParallelOptions = {}): Promise<[number, number]> {
  const accumulate = options.accumulate ?? 1;
  const bucketBytes = options.bucketBytes ?? 8 * 1024 * 1024;
  const names = replicas.map((r) => describeAdapter(r.model.rt.ctx));
  const fail = (r: number) => (e: unknown): never => {
    if (e instanceof DeviceFailedError) throw e;
    throw new DeviceFailedError(r, replicas.length, names[r]!, e);
  };
  const guard = <T>(r: number, f: () => T): T => {
    try {
      return f();
    } catch (e) {
      return fail(r)(e);
    }
  };
  const shards = splitBatch(batch, replicas.length);
  const params = replicas.map((r) => trainable(r.model));
  const count = params[0]!.length;
  params.forEach((p, r) => {
    if (p.length !== count) throw new Error(`dataParallelStep: replica ${r + 1} has ${p.length} trainable parameters, replica 1 ${count}`);
  });

  // Each replica encodes its forward and backward; the devices run them side by side.
  const work: { buckets: { params: number[]; data: Promise<ArrayBuffer> }[]; metrics: ShardMetrics[] }[] = [];
  try {
    shards.forEach((shard, r) =>
      work.push(
        guard(r, () => {
          const { model, optimizer } = replicas[r]!;
          optimizer.zeroGrad();
          const index = new Map(params[r]!.map((p, i) => [p, i]));
          let host = hostBuffers.get(model);
          if (!host) hostBuffers.set(model, (host = []));
          const buckets = new GradientBuckets(model.rt, index, bucketBytes, host);
          const metrics = forwardBackward(model, splitBatch(shard, accumulate), (p) => buckets.add(p));
          buckets.finish(params[r]!);
          for (const b of buckets.buckets) {
            b.data = b.data.catch(fail(r));
            // Observed now: a failed device rejects every bucket, and the step reports the first one it awaits.
            b.data.catch(() => undefined);
          }
          return { buckets: buckets.buckets, metrics };
        }),
      ),
    );
  } catch (e) {
    await Promise.allSettled(work.flatMap((w) => w.buckets.map((b) => b.data)));
    throw e;
  }
  let sums: SummedBucket[];
  try {
    sums = await sumGradients(work.map((w) => w.buckets), params);
  } catch (e) {
    // Let every replica's readbacks settle (a failed device's and the others') before reporting.
    await Promise.allSettled(work.flatMap((w) => w.buckets.map((b) => b.data)));
    for (const w of work) for (const m of w.metrics) for (const t of [m.loss, m.correct]) if (!t.released) t.release();
    throw e;
  }

  const sync = replicaSync(replicas);
  const stepping = sync === 'step-all' ? replicas.map((_, r) => r) : [0];
  // The sums go to every stepping replica's .grad, bucket by bucket (each bucket one upload), then the step.
  await settleAll(
    stepping.map(async (r) => {
      const { model } = replicas[r]!;
      const own = params[r]!;
      try {
        for (const bucket of sums) {
          const parts = bucket.params.map((i) => {
            const p = own[i]!;
            if (!p.grad) p.grad = Tensor.empty(model.rt, p.shape, 'f32', 'grad');
            return { buffer: p.grad.buffer, offset: 0, size: p.grad.byteLength };
          });
          await model.rt.writeParts(parts, bucket.data);
        }
      } catch (e) {
        fail(r)(e);
      }
    }),
  );
  for (const r of stepping) guard(r, () => replicas[r]!.optimizer.step());
  const metrics = settleAll(work.map((w, r) => readShardMetrics(replicas[r]!.model.rt, w.metrics).catch(fail(r))));
  if (sync === 'broadcast') await broadcastParameters(replicas, fail);
  const perReplica = await metrics;
  return [perReplica.reduce((s, m) => s + m[0], 0), perReplica.reduce((s, m) => s + m[1], 0)];
}

/** A bucket's parameters (indices) and their gradients summed over the replicas, packed in order. */
interface SummedBucket {
  params: number[];
  data: ArrayBuffer;
}

/**
 * Sums each parameter's gradient over the replicas in replica order, in float32 (as the device's accumulate
 * kernel does when micro-batches add up), in place in the first replica's host buffers. Buckets are taken in the
 * order they were filled; every replica fills the same buckets (the same graph), which is checked. A parameter
 * that no replica gave a gradient gets a bucket of zeros.
 */
async function sumGradients(perReplica: readonly { params: number[]; data: Promise<ArrayBuffer> }[][], params: readonly Tensor[][]): Promise<SummedBucket[]> {
  const out: SummedBucket[] = [];
  const seen = new Set<number>();
  for (const [b, bucket] of perReplica[0]!.entries()) {
    const datas = await settleAll(perReplica.map((buckets) => buckets[b]!.data));
    perReplica.forEach((buckets, r) => {
      const other = buckets[b]?.params.join(',');
      if (other !== bucket.params.join(',')) throw new Error(`dataParallelStep: replica ${r + 1} filled gradient bucket ${b} differently`);
    });
    let at = 0;
    for (const i of bucket.params) {
      const n = params[0]![i]!.size;
      const sum = new Float32Array(datas[0]!, at * 4, n);
      for (let r = 1; r < datas.length; r++) {
        const g = new Float32Array(datas[r]!, at * 4, n);
        for (let j = 0; j < n; j++) sum[j] += g[j]!;
      }
      seen.add(i);
      at += n;
    }
    out.push({ params: bucket.params, data: datas[0]! });
  }
  const missing = params[0]!.map((_, i) => i).filter((i) => !seen.has(i));
  if (missing.length) out.push({ params: missing, data: new ArrayBuffer(missing.reduce((n, i) => n + params[0]![i]!.byteLength, 0)) });
  return out;
}

/** Copies the first replica's parameters to the others (replicas on different adapters). */
async function broadcastParameters(replicas: readonly Replica[], fail: (r: number) => (e: unknown) => never): Promise<void> {
  const source = replicas[0]!.model.parameters();
  const values = await Promise.all(source.map((p) => p.read())).catch(fail(0));
  replicas.slice(1).forEach((rep, k) => {
    try {
      rep.model.parameters().forEach((p, i) => rep.model.rt.write(p.buffer, 0, values[i] as Float32Array));
    } catch (e) {
      fail(k + 1)(e);
    }
  });
}

/**
 * Whether every replica holds the same parameters, bit for bit (the checks after each epoch): null when they do,
 * else the first parameter that differs.
 */
export async function replicaDifference(replicas: readonly Replica[]): Promise<string | null> {
  const named = replicas.map((r) => r.model.namedParameters());
  for (let i = 0; i < named[0]!.length; i++) {
    const [name, p0] = named[0]![i]!;
    const a = new Uint32Array((await p0.read()).buffer);
    for (let r = 1; r < replicas.length; r++) {
      const b = new Uint32Array((await named[r]![i]![1].read()).buffer);
      for (let j = 0; j < a.length; j++) if (a[j] !== b[j]) return `${name} differs between replica 1 and replica ${r + 1} at element ${j}`;
    }
  }
  return null;
}

/**
 * Gives every other replica the first one's state: parameters, buffers (BatchNorm running statistics) and the
 * optimizer's momentum buffers. Used when the replicas are made, fresh or from a checkpoint.
 */
export async function replicateState(replicas: readonly Replica[]): Promise<void> {
  const [first, ...rest] = replicas;
  if (!first || !rest.length) return;
  const dict = await first.model.stateDict();
  const opt = await first.optimizer.stateDict();
  for (const r of rest) {
    r.model.loadStateDict(dict);
    r.optimizer.loadStateDict(opt);
  }
}

/**
 * DataLoader: batches of decoded, augmented, normalised images, prepared ahead of the consumer.
 *
 *   const loader = new DataLoader(new ImageFolder('data/hotdog/train'), { batchSize: 32, shuffle: true, seed: 1, transform: trainTransform() });
 *   for await (const batch of loader.epoch(0)) step(batch.images, batch.labels, batch.shape);
 *
 * - Like torch's DataLoader: every sample once per epoch, the last partial batch kept (unless
 *   dropLast), shuffling (optional) with a permutation drawn from seed + epoch.
 * - Augmentation randomness for sample k in epoch e comes from deriveSeed(seed, e, k), so batches
 *   are identical whatever the concurrency, prefetch depth or number of workers.
 * - Prefetch: while the consumer holds batch b, batches b+1 .. b+prefetch are being prepared;
 *   no more are started until the consumer asks for the next one (back-pressure), so at most
 *   prefetch + 1 batches exist at a time. Per-image work is limited to `concurrency` at once.
 *   Decoding runs on libvips' threads (sharp); with `workers: n` the resampling and
 *   normalisation also leave the main thread, on n worker threads.
 * - A file that cannot be decoded is an error naming it, or with `skipCorrupt` it is left out
 *   of its batch (which is then smaller) and counted in `report`.
 */
import { DecodeError } from './decode.js';
import type { ImageFolder, ImageSample } from './image-folder.js';
import { deriveSeed, Random } from '../util/random.js';
import { loadSample } from './sample.js';
import { isSerializable, type TensorImage, type Transform } from '../image/transforms.js';
import { WorkerPool } from './worker-pool.js';

export interface Batch {
  /** N*C*H*W floats, NCHW. */
  readonly images: Float32Array;
  readonly labels: Int32Array;
  readonly shape: readonly [number, number, number, number];
  /** Dataset index of each image in the batch. */
  readonly indices: Int32Array;
}

export interface DataLoaderOptions {
  readonly batchSize: number;
  readonly transform: Transform;
  readonly shuffle?: boolean;
  /** Base seed for shuffling and augmentation (default 0). */
  readonly seed?: number;
  /** Batches prepared ahead of the one the consumer holds (default 2). */
  readonly prefetch?: number;
  /** Images decoded/transformed at once (default 4, or 4 per worker). */
  readonly concurrency?: number;
  /**
   * Worker threads for decoding + transforms (built-in transforms only); 0 (default) keeps the JS
   * part (resampling, normalisation) on the main thread while sharp decodes on libvips' threads.
   */
  readonly workers?: number;
  /** Skip (and count) images that cannot be decoded instead of failing the epoch. */
  readonly skipCorrupt?: boolean;
  /** Drop the last partial batch (torch's drop_last); default false. */
  readonly dropLast?: boolean;
}

export interface SkippedImage {
  readonly path: string;
  readonly reason: string;
}

export interface RunReport {
  /** Images delivered in batches. */
  loaded: number;
  /** Images skipped because they could not be decoded (only with skipCorrupt). */
  skipped: number;
  readonly skippedFiles: SkippedImage[];
}

/** A FIFO counting semaphore. */
class Limiter {
  private active = 0;
  private readonly queue: (() => void)[] = [];
  constructor(private readonly max: number) {}

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.active >= this.max) await new Promise<void>((r) => this.queue.push(r));
    this.active++;
    try {
      return await task();
    } finally {
      this.active--;
      this.queue.shift()?.();
    }
  }
}

function positiveInt(v: number, what: string, allowZero = false): number {
  if (!Number.isInteger(v) || v < (allowZero ? 0 : 1)) throw new RangeError(`DataLoader: ${what} must be ${allowZero ? 'a non-negative' : 'a positive'} integer, got ${v}`);
  return v;
}

export class DataLoader {
  readonly samples: readonly ImageSample[];
  readonly batchSize: number;
  readonly shuffle: boolean;
  readonly seed: number;
  readonly prefetch: number;
  readonly concurrency: number;
  readonly workers: number;
  readonly skipCorrupt: boolean;
  readonly dropLast: boolean;
  readonly report: RunReport = { loaded: 0, skipped: 0, skippedFiles: [] };
  private readonly transform: Transform;
  private readonly limiter: Limiter;
  private pool: WorkerPool | undefined;

  constructor(data: ImageFolder | readonly ImageSample[], options: DataLoaderOptions) {
    this.samples = Array.isArray(data) ? [...(data as readonly ImageSample[])] : (data as ImageFolder).samples;
    this.batchSize = positiveInt(options.batchSize, 'batchSize');
    this.transform = options.transform;
    this.shuffle = options.shuffle ?? false;
    this.seed = options.seed ?? 0;
    if (!Number.isSafeInteger(this.seed)) throw new RangeError(`DataLoader: seed must be an integer, got ${this.seed}`);
    this.prefetch = positiveInt(options.prefetch ?? 2, 'prefetch', true);
    this.workers = positiveInt(options.workers ?? 0, 'workers', true);
    if (this.workers > 0 && !isSerializable(this.transform)) {
      throw new TypeError('DataLoader: worker threads can only run the built-in transforms (rebuilt from transform.spec); use workers: 0 for a custom transform');
    }
    this.concurrency = positiveInt(options.concurrency ?? (this.workers > 0 ? 4 * this.workers : 4), 'concurrency');
    this.skipCorrupt = options.skipCorrupt ?? false;
    this.dropLast = options.dropLast ?? false;
    this.limiter = new Limiter(this.concurrency);
  }

  /** Number of batches in an epoch. */
  get length(): number {
    const n = this.samples.length;
    return this.dropLast ? Math.floor(n / this.batchSize) : Math.ceil(n / this.batchSize);
  }

  /** Dataset indices in the order epoch `epoch` visits them. */
  order(epoch: number): number[] {
    const idx = Array.from({ length: this.samples.length }, (_, i) => i);
    return this.shuffle ? new Random(deriveSeed(this.seed, 0x5eed, epoch)).shuffle(idx) : idx;
  }

  /** The seed that sample `index` uses for its augmentation in epoch `epoch`. */
  sampleSeed(epoch: number, index: number): number {
    return deriveSeed(this.seed, epoch, index);
  }

  private loadOne(index: number, epoch: number): Promise<TensorImage> {
    const { path } = this.samples[index]!;
    const seed = this.sampleSeed(epoch, index);
    if (this.workers > 0) {
      this.pool ??= new WorkerPool(this.workers);
      return this.pool.run(path, this.transform.spec, seed);
    }
    return loadSample(path, this.transform, seed);
  }

  private async makeBatch(indices: readonly number[], epoch: number, cancelled: () => boolean): Promise<Batch> {
    const results = await Promise.all(
      indices.map((index) =>
        this.limiter.run(async () => {
          if (cancelled()) return null;
          try {
            return await this.loadOne(index, epoch);
          } catch (err) {
            if (this.skipCorrupt && err instanceof DecodeError) {
              this.report.skipped++;
              this.report.skippedFiles.push({ path: err.file, reason: err.message });
              return null;
            }
            throw err;
          }
        }),
      ),
    );
    const kept: number[] = [];
    const tensors: TensorImage[] = [];
    results.forEach((t, k) => {
      if (t) {
        kept.push(indices[k]!);
        tensors.push(t);
      }
    });
    const first = tensors[0];
    const [c, h, w] = first ? [first.channels, first.height, first.width] : [3, 0, 0];
    const size = c * h * w;
    const images = new Float32Array(tensors.length * size);
    tensors.forEach((t, k) => {
      if (t.channels !== c || t.height !== h || t.width !== w) {
        throw new Error(
          `cannot batch ${this.samples[kept[k]!]!.path}: its transform output is ${t.channels}x${t.height}x${t.width}, ` +
            `the batch's first image ${c}x${h}x${w} (use a transform with a fixed output size)`,
        );
      }
      images.set(t.data, k * size);
    });
    const labels = Int32Array.from(kept, (i) => this.samples[i]!.label);
    this.report.loaded += tensors.length;
    return { images, labels, shape: [tensors.length, c, h, w], indices: Int32Array.from(kept) };
  }

  /** The batches of one epoch, in order, prepared `prefetch` batches ahead. */
  async *epoch(epoch: number): AsyncGenerator<Batch, void, undefined> {
    positiveInt(epoch, 'epoch', true);
    const order = this.order(epoch);
    const nBatches = this.length;
    let cancelled = false;
    const isCancelled = (): boolean => cancelled;
    const pending: Promise<Batch>[] = [];
    let next = 0;
    const fill = (ahead: number): void => {
      while (next < nBatches && pending.length < ahead) {
        const p = this.makeBatch(order.slice(next * this.batchSize, (next + 1) * this.batchSize), epoch, isCancelled);
        p.catch(() => undefined); // surfaced when awaited; avoid unhandled rejections if never awaited
        pending.push(p);
        next++;
      }
    };
    try {
      for (;;) {
        fill(this.prefetch + 1);
        const p = pending.shift();
        if (!p) break;
        const batch = await p;
        fill(this.prefetch); // work on the next batches while the consumer has this one
        yield batch;
      }
    } finally {
      cancelled = true;
    }
  }

  /** Stops the worker threads, if any (the loader starts them again if used afterwards). */
  async close(): Promise<void> {
    const pool = this.pool;
    this.pool = undefined;
    await pool?.close();
  }
}

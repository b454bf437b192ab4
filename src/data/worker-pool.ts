/**
 * A fixed pool of worker threads running decode-worker.ts. Each request goes to the worker with
 * the fewest requests in flight. When this module runs from TypeScript source (tsx, vitest), the
 * workers are started with tsx's loader so they can run the .ts worker file too.
 */
import { Worker } from 'node:worker_threads';
import { DecodeError } from './decode.js';
import type { WorkerRequest, WorkerResponse } from './decode-worker.js';
import type { TensorImage, TransformSpec } from '../image/transforms.js';

/**
 * Starts decode-worker. From compiled JavaScript it is a plain worker; from TypeScript source a
 * small .mjs bootstrap registers tsx's loader inside the worker first (tsx's `--import tsx` only
 * covers the main thread on Node 20).
 */
function startWorker(): Worker {
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./decode-worker.js', import.meta.url));
  const entry = new URL('./decode-worker.ts', import.meta.url).href;
  return new Worker(new URL('./ts-worker-boot.mjs', import.meta.url), { workerData: { entry } });
}

interface Pending {
  resolve(t: TensorImage): void;
  reject(err: Error): void;
}

interface Slot {
  worker: Worker;
  inFlight: number;
}

export class WorkerPool {
  private readonly slots: Slot[] = [];
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  private closed = false;

  constructor(size: number) {
    if (!Number.isInteger(size) || size <= 0) throw new RangeError(`worker pool size must be a positive integer, got ${size}`);
    for (let i = 0; i < size; i++) {
      const worker = startWorker();
      const slot: Slot = { worker, inFlight: 0 };
      worker.on('message', (res: WorkerResponse) => {
        slot.inFlight--;
        const p = this.pending.get(res.id);
        if (!p) return;
        this.pending.delete(res.id);
        if (res.ok) p.resolve({ channels: res.channels, height: res.height, width: res.width, data: res.data });
        else p.reject(res.decodeError ? new DecodeError(res.file, new Error(res.message.replace(`cannot decode image ${res.file}: `, ''))) : new Error(res.message));
      });
      worker.on('error', (err) => this.failAll(err));
      worker.on('exit', (code) => {
        if (!this.closed) this.failAll(new Error(`data worker exited with code ${code}`));
      });
      this.slots.push(slot);
    }
  }

  private failAll(err: Error): void {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  run(path: string, spec: TransformSpec, seed: number): Promise<TensorImage> {
    if (this.closed) return Promise.reject(new Error('worker pool is closed'));
    const slot = this.slots.reduce((a, b) => (b.inFlight < a.inFlight ? b : a));
    const id = this.nextId++;
    return new Promise<TensorImage>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      slot.inFlight++;
      const req: WorkerRequest = { id, path, seed, spec };
      slot.worker.postMessage(req);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.failAll(new Error('worker pool closed'));
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }
}

/**
 * Worker-thread body for DataLoader({ workers: n }): decodes and transforms samples off the main
 * thread. Messages in: WorkerRequest; out: WorkerResponse (the tensor's buffer is transferred).
 */
import { parentPort } from 'node:worker_threads';
import { DecodeError } from './decode.js';
import { loadSample } from './sample.js';
import { transformFromSpec, type Transform, type TransformSpec } from '../image/transforms.js';

export interface WorkerRequest {
  readonly id: number;
  readonly path: string;
  readonly seed: number;
  readonly spec: TransformSpec;
}

export type WorkerResponse =
  | { readonly id: number; readonly ok: true; readonly channels: number; readonly height: number; readonly width: number; readonly data: Float32Array }
  | { readonly id: number; readonly ok: false; readonly message: string; readonly decodeError: boolean; readonly file: string };

if (!parentPort) throw new Error('decode-worker.ts must run in a worker thread');
const port = parentPort;
const cache = new Map<string, Transform>();

port.on('message', (req: WorkerRequest) => {
  const key = JSON.stringify(req.spec);
  let transform = cache.get(key);
  if (!transform) {
    transform = transformFromSpec(req.spec);
    cache.set(key, transform);
  }
  loadSample(req.path, transform, req.seed).then(
    (t) => {
      const res: WorkerResponse = { id: req.id, ok: true, channels: t.channels, height: t.height, width: t.width, data: t.data };
      port.postMessage(res, [t.data.buffer as ArrayBuffer]);
    },
    (err: unknown) => {
      const res: WorkerResponse = {
        id: req.id,
        ok: false,
        message: err instanceof Error ? err.message : String(err),
        decodeError: err instanceof DecodeError,
        file: err instanceof DecodeError ? err.file : req.path,
      };
      port.postMessage(res);
    },
  );
});

// Starts a TypeScript worker when the data pipeline runs from source (tsx, vitest): tsx's
// `--import tsx` registers its loader only on the main thread under Node 20, so the worker
// registers it itself, then imports the .ts entry given in workerData.
import { workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
await import(workerData.entry);

// Node-only: creates the WebGPU entry point (navigator.gpu's equivalent) from Dawn's Node bindings, which
// src/node/engine-node.ts hands to acquireGpu() (src/runtime/device.ts); a page uses navigator.gpu.
import { tmpdir } from 'node:os';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

/** Dawn-only settings. */
export interface NodeGpuOptions {
  /** Dawn backend: 'vulkan', 'metal', 'd3d12', 'null'... Default: env HOTDOG_WEBGPU_BACKEND, else Dawn's choice. */
  backend?: string;
  /** Adapter name as Dawn lists it. Default: env HOTDOG_WEBGPU_ADAPTER, else Dawn's choice. */
  adapter?: string;
  /** Extra Dawn toggles/options passed to create(), e.g. 'enable-dawn-features=...'. */
  dawnOptions?: string[];
}

/**
 * llvmpipe (lavapipe) reads LP_NUM_THREADS once, when the driver loads; more threads than cores measured
 * faster here (see docs/performance.md), so unless the user chose, use 8. Harmless for GPU drivers.
 */
export const DEFAULT_LP_NUM_THREADS = '8';

let gpuPromise: Promise<GPU> | null = null;
/** Instances for a named adapter (several devices on several adapters: Dawn picks one adapter per instance). */
const namedGpus = new Map<string, Promise<GPU>>();

/**
 * The process-wide Dawn instance (one per process; created on first call). `adapter` named in the options gets an
 * instance of its own (one per name), which is how one process opens devices on two adapters.
 */
export function nodeGpu(options: NodeGpuOptions = {}): Promise<GPU> {
  if (options.adapter !== undefined) {
    const key = `${options.backend ?? ''}\n${options.adapter}\n${(options.dawnOptions ?? []).join('\n')}`;
    let gpu = namedGpus.get(key);
    if (!gpu) namedGpus.set(key, (gpu = createNodeGpu(options)));
    return gpu;
  }
  gpuPromise ??= createNodeGpu(options);
  return gpuPromise;
}

/** Drops the process-wide instances so the process can exit (Dawn keeps them alive while referenced). */
export function releaseNodeGpu(): void {
  gpuPromise = null;
  namedGpus.clear();
}

async function createNodeGpu(options: NodeGpuOptions): Promise<GPU> {
  if (!process.env.XDG_RUNTIME_DIR) {
    // Mesa's drivers print an error line at start-up without it.
    const dir = join(tmpdir(), `xdg-runtime-${process.getuid?.() ?? 'user'}`);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    process.env.XDG_RUNTIME_DIR = dir;
  }
  process.env.LP_NUM_THREADS ??= DEFAULT_LP_NUM_THREADS;
  const { create, globals } = await import('webgpu');
  // Dawn's node module exposes the WebGPU constants (GPUBufferUsage...) only through `globals`.
  Object.assign(globalThis, globals);
  const dawnOptions = [...(options.dawnOptions ?? [])];
  const backend = options.backend ?? process.env.HOTDOG_WEBGPU_BACKEND;
  const adapter = options.adapter ?? process.env.HOTDOG_WEBGPU_ADAPTER;
  if (backend) dawnOptions.push(`backend=${backend}`);
  if (adapter) dawnOptions.push(`adapter=${adapter}`);
  return create(dawnOptions);
}

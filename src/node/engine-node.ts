// Node entry: Dawn's WebGPU handed to the web-standard engine (src/runtime knows nothing of Node), with Dawn's
// backend/adapter/toggles given flat, as the CLIs pass them.
import { acquireGpu, type DeviceOptions, type GpuContext, type KernelMode } from '../runtime/device.js';
import { createRuntime } from '../runtime/engine.js';
import type { Runtime, RuntimeOptions } from '../runtime/runtime.js';
import { DEFAULT_LP_NUM_THREADS, nodeGpu, releaseNodeGpu, type NodeGpuOptions } from './webgpu-node.js';

export type NodeDeviceOptions = NodeGpuOptions & Omit<DeviceOptions, 'gpu' | 'releaseGpu'>;

async function withDawn(options: NodeDeviceOptions): Promise<DeviceOptions> {
  const { backend, adapter, dawnOptions, ...rest } = options;
  const gpu = await nodeGpu({ backend, adapter, dawnOptions });
  // lavapipe's thread count changes which kernel variant is fastest (webgpu-node.ts applies the default).
  const driverSettings = rest.driverSettings ?? `LP_NUM_THREADS=${process.env.LP_NUM_THREADS ?? DEFAULT_LP_NUM_THREADS}`;
  return { ...rest, gpu, releaseGpu: releaseNodeGpu, driverSettings };
}

/** acquireGpu() on the process's Dawn instance. */
export async function acquireNodeGpu(options: NodeDeviceOptions = {}): Promise<GpuContext> {
  return acquireGpu(await withDawn(options));
}

/** HOTDOG_KERNELS: 'gpu' makes any adapter take the GPU kernel choices (RuntimeOptions.kernels); unset or 'auto': the adapter's own. */
export function kernelModeFromEnv(env: Record<string, string | undefined> = process.env): KernelMode {
  const v = env.HOTDOG_KERNELS;
  if (v === undefined || v === '' || v === 'auto') return 'auto';
  if (v === 'gpu') return 'gpu';
  throw new Error(`HOTDOG_KERNELS: '${v}' is neither 'auto' nor 'gpu'`);
}

/**
 * A runtime on the process's Dawn instance, in the kernel mode `kernels` or else HOTDOG_KERNELS says. Pass `tuningStore: nodeTuningStore()` (src/node/tuning-store.ts) to keep
 * measured kernel choices between runs; without it (tests) every run starts from the built-in defaults.
 */
export async function createNodeRuntime(options: NodeDeviceOptions & RuntimeOptions = {}): Promise<Runtime> {
  const kernels = options.kernels ?? kernelModeFromEnv();
  return createRuntime({ ...(await withDawn(options)), kernels });
}

/** Destroys the runtime's device and drops the Dawn instance so the process can exit. */
export function destroyNodeRuntime(rt: Runtime): void {
  rt.destroy();
}

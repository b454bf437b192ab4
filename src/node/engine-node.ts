// Node entry: the process-wide Dawn instance plus a runtime on its best adapter.
import { createRuntime } from '../kernels/engine.js';
import type { DeviceOptions } from '../kernels/device.js';
import type { Runtime, RuntimeOptions } from '../kernels/runtime.js';
import { nodeGpu, releaseNodeGpu, type NodeGpuOptions } from './webgpu-node.js';

/**
 * A runtime on the process's Dawn instance. Pass `tuningStore: nodeTuningStore()` (src/node/tuning-store.ts) to keep
 * measured kernel choices between runs; without it (tests) every run starts from the built-in defaults.
 */
export async function createNodeRuntime(options: NodeGpuOptions & DeviceOptions & RuntimeOptions = {}): Promise<Runtime> {
  const gpu = await nodeGpu(options);
  // lavapipe's thread count changes which kernel variant is fastest (nodeGpu sets the default before Dawn loads).
  const driverSettings = options.driverSettings ?? `LP_NUM_THREADS=${process.env.LP_NUM_THREADS ?? ''}`;
  return createRuntime(gpu, { ...options, driverSettings });
}

/** Destroys the runtime's device and drops the Dawn instance so the process can exit. */
export function destroyNodeRuntime(rt: Runtime): void {
  rt.destroy();
  releaseNodeGpu();
}

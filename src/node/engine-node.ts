// Node entry: a runtime on Dawn's best adapter (Dawn's backend/adapter/toggles given flat, as the CLIs pass them).
import { createRuntime } from '../kernels/engine.js';
import type { DeviceOptions, NodeGpuOptions } from '../kernels/device.js';
import type { Runtime, RuntimeOptions } from '../kernels/runtime.js';
import { DEFAULT_LP_NUM_THREADS } from './webgpu-node.js';

/**
 * A runtime on the process's Dawn instance. Pass `tuningStore: nodeTuningStore()` (src/node/tuning-store.ts) to keep
 * measured kernel choices between runs; without it (tests) every run starts from the built-in defaults.
 */
export async function createNodeRuntime(options: NodeGpuOptions & DeviceOptions & RuntimeOptions = {}): Promise<Runtime> {
  const { backend, adapter, dawnOptions, ...rest } = options;
  const node = { backend, adapter, dawnOptions, ...rest.node };
  // lavapipe's thread count changes which kernel variant is fastest (webgpu-node.ts applies the default).
  const driverSettings = rest.driverSettings ?? `LP_NUM_THREADS=${process.env.LP_NUM_THREADS ?? DEFAULT_LP_NUM_THREADS}`;
  return createRuntime({ ...rest, node, driverSettings });
}

/** Destroys the runtime's device and drops the Dawn instance so the process can exit. */
export function destroyNodeRuntime(rt: Runtime): void {
  rt.destroy();
}

// Node entry: the process-wide Dawn instance plus a runtime on its best adapter.
import { createRuntime } from '../kernels/engine.js';
import type { DeviceOptions } from '../kernels/device.js';
import type { Runtime, RuntimeOptions } from '../kernels/runtime.js';
import { nodeGpu, releaseNodeGpu, type NodeGpuOptions } from './webgpu-node.js';

export async function createNodeRuntime(options: NodeGpuOptions & DeviceOptions & RuntimeOptions = {}): Promise<Runtime> {
  return createRuntime(await nodeGpu(options), options);
}

/** Destroys the runtime's device and drops the Dawn instance so the process can exit. */
export function destroyNodeRuntime(rt: Runtime): void {
  rt.destroy();
  releaseNodeGpu();
}

// Node entry: a runtime on Dawn's best adapter (Dawn's backend/adapter/toggles given flat, as the CLIs pass them).
import { createRuntime } from '../kernels/engine.js';
import type { DeviceOptions, NodeGpuOptions } from '../kernels/device.js';
import type { Runtime, RuntimeOptions } from '../kernels/runtime.js';

export async function createNodeRuntime(options: NodeGpuOptions & DeviceOptions & RuntimeOptions = {}): Promise<Runtime> {
  const { backend, adapter, dawnOptions, ...rest } = options;
  return createRuntime({ ...rest, node: { backend, adapter, dawnOptions, ...rest.node } });
}

/** Destroys the runtime's device and drops the Dawn instance so the process can exit. */
export function destroyNodeRuntime(rt: Runtime): void {
  rt.destroy();
}

// Engine construction from a `GPU` object (web-standard). Under Node, see src/node/engine-node.ts.
import { createGpuContext, type DeviceOptions } from './device.js';
import { Runtime, type RuntimeOptions } from './runtime.js';

export async function createRuntime(gpu: GPU | undefined | null, options: DeviceOptions & RuntimeOptions = {}): Promise<Runtime> {
  const ctx = await createGpuContext(gpu, options);
  const rt = new Runtime(ctx, options);
  await rt.tuner.load();
  return rt;
}

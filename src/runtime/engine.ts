// Engine construction: a runtime on the device acquireGpu() finds (navigator.gpu in a page, Dawn under Node).
import { acquireGpu, type DeviceOptions } from './device.js';
import { Runtime, type RuntimeOptions } from './runtime.js';

export async function createRuntime(options: DeviceOptions & RuntimeOptions = {}): Promise<Runtime> {
  const rt = new Runtime(await acquireGpu(options), options);
  await rt.tuner.load();
  return rt;
}

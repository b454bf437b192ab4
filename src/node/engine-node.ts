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

/** What --devices asks for: a number of devices, or 'all' (one device per adapter found). */
export type DeviceCount = number | 'all';

export interface NodeDevicesOptions extends NodeDeviceOptions, RuntimeOptions {
  /**
   * Names of the adapters (Dawn's `adapter=` name match) to open the devices on, in turn: device i goes on adapter
   * i mod length. Default: env HOTDOG_WEBGPU_ADAPTERS (comma-separated), else Dawn's default adapter.
   */
  adapters?: readonly string[];
}

function adapterList(options: NodeDevicesOptions): readonly string[] | null {
  if (options.adapters?.length) return options.adapters;
  const env = process.env.HOTDOG_WEBGPU_ADAPTERS?.split(',').map((s) => s.trim()).filter((s) => s);
  return env?.length ? env : null;
}

const adapterName = (rt: Runtime): string => {
  const i = rt.ctx.adapterInfo;
  return `${i.vendor}/${i.architecture}/${i.device}/${i.description}`;
};

/**
 * Runtimes on `count` devices (data parallelism, src/train/data-parallel.ts). WebGPU has no call that lists
 * adapters: a number opens that many devices on the named adapters in turn (on Dawn's default adapter when none are
 * named); 'all' opens one device per named adapter, or, when none are named, one per distinct adapter that the
 * high-performance and low-power requests find. Every runtime gets the same tuning store.
 */
export async function createNodeRuntimes(count: DeviceCount, options: NodeDevicesOptions = {}): Promise<Runtime[]> {
  if (count !== 'all' && !(Number.isInteger(count) && count >= 1)) throw new Error(`devices: ${count} is not a positive whole number or 'all'`);
  const { adapters: _ignored, ...single } = options;
  const names = adapterList(options);
  const out: Runtime[] = [];
  try {
    if (count === 'all' && !names) {
      out.push(await createNodeRuntime({ ...single, powerPreference: 'high-performance' }));
      const other = await createNodeRuntime({ ...single, powerPreference: 'low-power' });
      if (adapterName(other) === adapterName(out[0]!)) other.destroy();
      else out.push(other);
      return out;
    }
    const n = count === 'all' ? names!.length : count;
    for (let i = 0; i < n; i++) out.push(await createNodeRuntime({ ...single, adapter: names ? names[i % names.length] : single.adapter }));
    return out;
  } catch (e) {
    for (const rt of out) rt.destroy();
    throw e;
  }
}

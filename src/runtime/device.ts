// GPU acquisition: the one function that finds a WebGPU adapter and opens a device on it. In a page or worker it
// takes navigator.gpu; under Node the caller hands in Dawn's entry point (src/node/engine-node.ts does), so this
// module never loads Node code. Everything else takes the GpuContext this returns, so kernels can pick variants from
// what the device really has.

export type FeatureLevel = 'core' | 'compatibility';

/**
 * Which kernel variants ops choose among. 'auto': every variant this adapter runs (on CPU drivers the ones shaped
 * for them: the texture GEMM, Winograd, im2col). 'gpu': only those a GPU adapter would use, on any adapter: how
 * the GPU choices are tested on lavapipe (RuntimeOptions.kernels; under Node also the environment variable
 * HOTDOG_KERNELS=gpu).
 */
export type KernelMode = 'auto' | 'gpu';

export interface DeviceOptions {
  /**
   * The WebGPU entry point. Default: navigator.gpu in a page or worker. Under Node there is none: pass Dawn's
   * (src/node/engine-node.ts: `acquireNodeGpu`, `createNodeRuntime`).
   */
  gpu?: GPU | null;
  /** Called when the context is disposed or no adapter is found: lets go of a `gpu` the caller created. */
  releaseGpu?: () => void;
  powerPreference?: GPUPowerPreference;
  /**
   * 'auto' (default): a core adapter, else a compatibility-mode one (OpenGL ES / D3D11 class hardware, or Chromium's
   * ANGLE path). 'core' or 'compatibility': that level only ('compatibility' also opens a compatibility device on an
   * adapter that could do core, which is how the compatibility path is tested).
   */
  featureLevel?: 'auto' | FeatureLevel;
  /** Ask for these optional features when the adapter offers them (default: shader-f16, subgroups, timestamp-query). */
  wantFeatures?: GPUFeatureName[];
  /**
   * 'adapter' (default): request the adapter's own limits. 'defaults': keep the spec's default limits (compatibility
   * mode's when the device is one), the weakest device kernels must still run on; for tests.
   */
  limits?: 'adapter' | 'defaults';
  /** Driver settings that change performance but not results (lavapipe's LP_NUM_THREADS), for tuning keys. */
  driverSettings?: string;
}

export interface GpuContext {
  device: GPUDevice;
  adapterInfo: GPUAdapterInfo;
  /** The limits the device actually got (the adapter's own values, requested explicitly; see REQUESTED_LIMITS). */
  limits: GPUSupportedLimits;
  features: ReadonlySet<string>;
  /**
   * 'compatibility': the device validates WebGPU's compatibility-mode restrictions and usually lacks subgroups,
   * shader-f16 and timestamp queries, and its default limits are lower (Dawn: 128 invocations per workgroup, 128 per
   * workgroup dimension). Kernels must read `limits` and the flags below rather than assume.
   */
  featureLevel: FeatureLevel;
  /** The device has the `subgroups` feature (WGSL `enable subgroups;`). */
  subgroups: boolean;
  /** Subgroup sizes the adapter reports (lavapipe 8, SwiftShader 4); 0 when it does not say. */
  subgroupMinSize: number;
  subgroupMaxSize: number;
  /**
   * The subgroup size when the device has subgroups and the adapter reports one fixed size (min == max: 8 on lavapipe
   * at 256 bits, 4 on SwiftShader); null otherwise. Kernels that exchange values across a subgroup with constant lane
   * indices (the texture GEMM) are only used when it is known.
   */
  subgroupSize: number | null;
  /** DeviceOptions.driverSettings: part of the identity under which measured kernel choices are saved. */
  driverSettings: string;
  /** The device has `shader-f16` (WGSL `enable f16;`). */
  shaderF16: boolean;
  /** The device has `timestamp-query`. */
  timestampQuery: boolean;
  /** True for CPU drivers (lavapipe/llvmpipe, SwiftShader): kernels pick variants shaped for them. */
  isCpuDriver: boolean;
  /** The kernel mode this context presents (gpuKernelView makes the 'gpu' one). */
  kernels: KernelMode;
  /** Destroys the device and lets go of the WebGPU instance (under Node the process cannot exit while it lives). */
  dispose(): void;
}

export const LAVAPIPE_RECIPE = [
  'No WebGPU adapter was found.',
  'On a Linux machine without a GPU, install Mesa\'s lavapipe CPU Vulkan driver (Mesa >= 24) and the Vulkan loader:',
  '  npm run setup:cpu-driver',
  'which on Debian bookworm adds the bookworm-backports suite and runs',
  '  apt-get install -y -t bookworm-backports mesa-vulkan-drivers libvulkan1',
  '(Debian bookworm\'s own Mesa 22.3 is too old for Dawn). On a machine with a GPU, install its Vulkan/Metal/D3D12 driver.',
  'To choose a backend or adapter, set HOTDOG_WEBGPU_BACKEND (vulkan, metal, d3d12...) or HOTDOG_WEBGPU_ADAPTER.',
].join('\n');

/** What a page tells its user when the browser has no WebGPU or no adapter. */
export const BROWSER_RECIPE = [
  'This browser offers no WebGPU adapter.',
  'Use a browser with WebGPU: Chrome or Edge 113+ (Windows, macOS, ChromeOS, Android; on Linux start it with ' +
    '--enable-unsafe-webgpu, plus --enable-features=Vulkan on a GPU), Firefox 141+ on Windows (elsewhere Nightly with ' +
    'dom.webgpu.enabled), or Safari 26+.',
  'The page must be served over https or from localhost/127.0.0.1.',
].join('\n');

/**
 * The spec's defaults (and compatibility mode's, lower still) are far below what adapters offer; these are requested
 * at the adapter's value. Texture limits are here for kernels that read operands through textures.
 */
const REQUESTED_LIMITS = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupStorageSize',
  'maxStorageBuffersPerShaderStage',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupSizeZ',
  'maxComputeWorkgroupsPerDimension',
  'maxUniformBufferBindingSize',
  'maxStorageTexturesPerShaderStage',
  'maxSampledTexturesPerShaderStage',
  'maxTextureDimension2D',
  'maxTextureArrayLayers',
] as const;

const DEFAULT_FEATURES: GPUFeatureName[] = ['shader-f16', 'subgroups', 'timestamp-query'];
const CORE_FEATURE = 'core-features-and-limits';

function isNode(): boolean {
  const p = (globalThis as { process?: { versions?: { node?: string } } }).process;
  return typeof p?.versions?.node === 'string';
}

/** The given entry point, else navigator.gpu in a page or worker; null where neither exists. */
function webgpuEntry(options: DeviceOptions): { gpu: GPU | null; release: () => void } {
  const release = options.releaseGpu ?? (() => {});
  if (options.gpu !== undefined) return { gpu: options.gpu, release };
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  return { gpu: nav?.gpu ?? null, release };
}

async function requestAdapter(gpu: GPU, options: DeviceOptions): Promise<{ adapter: GPUAdapter; level: FeatureLevel } | null> {
  const wanted = options.featureLevel ?? 'auto';
  const powerPreference = options.powerPreference ?? 'high-performance';
  if (wanted !== 'compatibility') {
    const adapter = await gpu.requestAdapter({ powerPreference });
    if (adapter) return { adapter, level: 'core' };
    if (wanted === 'core') return null;
  }
  // Browsers without compatibility mode ignore featureLevel and answer as for a core request (null here).
  const adapter = await gpu.requestAdapter({ powerPreference, featureLevel: 'compatibility' } as GPURequestAdapterOptions);
  if (!adapter) return null;
  // A compatibility request may still return an adapter that can do core: use it as core unless asked not to.
  const canCore = adapter.features.has(CORE_FEATURE);
  return { adapter, level: canCore && wanted === 'auto' ? 'core' : 'compatibility' };
}

/** Finds an adapter (core, else compatibility mode) and opens a device with its real limits and useful features. */
export async function acquireGpu(options: DeviceOptions = {}): Promise<GpuContext> {
  const entry = webgpuEntry(options);
  const gpu = entry.gpu;
  const inPage = !isNode();
  if (!gpu) {
    const hint = inPage ? BROWSER_RECIPE : 'Under Node, pass Dawn\'s entry point as `gpu` (createNodeRuntime and acquireNodeGpu in src/node do).';
    throw new Error(`WebGPU is not available in this environment.\n${hint}`);
  }
  const found = await requestAdapter(gpu, options);
  if (!found) {
    entry.release();
    throw new Error(inPage ? BROWSER_RECIPE : LAVAPIPE_RECIPE);
  }
  const { adapter, level } = found;

  const requiredLimits: Record<string, number> = {};
  if (options.limits !== 'defaults') for (const name of REQUESTED_LIMITS) {
    const v = adapter.limits[name];
    if (typeof v === 'number') requiredLimits[name] = v;
  }
  const requiredFeatures = (options.wantFeatures ?? DEFAULT_FEATURES).filter((f) => adapter.features.has(f));
  // On a compatibility adapter that can do core, asking for this feature is what makes the device core.
  if (level === 'core' && adapter.features.has(CORE_FEATURE)) requiredFeatures.push(CORE_FEATURE as GPUFeatureName);
  const device = await adapter.requestDevice({ requiredLimits, requiredFeatures, label: 'hotdog-webgpu' });
  const info = adapter.info;
  const description = `${info.vendor} ${info.architecture} ${info.device} ${info.description}`.toLowerCase();
  const features = new Set<string>(device.features);
  const sizes = info as GPUAdapterInfo & { subgroupMinSize?: number; subgroupMaxSize?: number };
  return {
    device,
    adapterInfo: info,
    limits: device.limits,
    features,
    featureLevel: level === 'core' || features.has(CORE_FEATURE) ? 'core' : 'compatibility',
    subgroups: features.has('subgroups'),
    subgroupMinSize: sizes.subgroupMinSize ?? 0,
    subgroupMaxSize: sizes.subgroupMaxSize ?? 0,
    subgroupSize: features.has('subgroups') && sizes.subgroupMinSize && sizes.subgroupMinSize === sizes.subgroupMaxSize ? sizes.subgroupMinSize : null,
    driverSettings: options.driverSettings ?? '',
    shaderF16: features.has('shader-f16'),
    timestampQuery: features.has('timestamp-query'),
    isCpuDriver: /llvmpipe|lavapipe|swiftshader/.test(description),
    kernels: 'auto',
    dispose() {
      device.destroy();
      entry.release();
    },
  };
}

/**
 * The one place the 'gpu' kernel mode is made: the context as a GPU adapter with subgroups of unknown or varying
 * size would present it to kernels. Not a CPU driver and no fixed subgroup size, so the variants that need one
 * (the texture GEMM, and Winograd and im2col on it) do not apply and every op takes its GPU choices. The device,
 * limits and features are the real ones; the tuner keys its measurements by `kernels` too (autotune.ts).
 */
export function kernelView(ctx: GpuContext, mode: KernelMode): GpuContext {
  if (mode === 'auto' || ctx.kernels === mode) return ctx;
  return { ...ctx, isCpuDriver: false, subgroupSize: null, kernels: mode };
}

/** The adapter and device in one line: names, feature level, and the features kernels care about. */
export function describeAdapter(ctx: GpuContext): string {
  const i = ctx.adapterInfo;
  const name = [i.vendor, i.architecture, i.device, i.description].filter((s) => s).join(' / ');
  const extras = [
    ctx.featureLevel,
    ctx.subgroups ? `subgroups ${ctx.subgroupMinSize}-${ctx.subgroupMaxSize}` : 'no subgroups',
    ctx.shaderF16 ? 'f16' : 'no f16',
    ...(ctx.kernels === 'gpu' ? ['GPU kernel choices'] : []),
  ];
  return `${name} (${extras.join(', ')})`;
}

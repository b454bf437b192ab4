// Adapter and device selection. Web-standard only: the caller passes the `GPU` object
// (navigator.gpu in a browser, src/node/webgpu-node.ts under Node).

export interface DeviceOptions {
  powerPreference?: GPUPowerPreference;
  /** Ask for these optional features when the adapter offers them (default: shader-f16, subgroups, timestamp-query). */
  wantFeatures?: GPUFeatureName[];
  /** Driver settings that change performance but not results (lavapipe's LP_NUM_THREADS), for tuning keys. */
  driverSettings?: string;
}

export interface GpuContext {
  device: GPUDevice;
  adapterInfo: GPUAdapterInfo;
  /** The limits the device actually got (the adapter's real ones for the few that matter, see below). */
  limits: GPUSupportedLimits;
  features: ReadonlySet<string>;
  /** True for CPU drivers (lavapipe/llvmpipe, SwiftShader): kernels pick variants shaped for them. */
  isCpuDriver: boolean;
  /**
   * The subgroup size when the device has the 'subgroups' feature and the adapter reports one fixed size
   * (subgroupMinSize == subgroupMaxSize: 8 on lavapipe at 256 bits, 4 on SwiftShader); null otherwise. Kernels that
   * exchange values across a subgroup with constant lane indices are only used when it is known.
   */
  subgroupSize: number | null;
  /** DeviceOptions.driverSettings: part of the identity under which measured kernel choices are saved. */
  driverSettings: string;
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

/** The spec's defaults are far below what real adapters offer; these are requested at the adapter's value. */
const RAISED_LIMITS = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupStorageSize',
  'maxStorageBuffersPerShaderStage',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupsPerDimension',
  'maxTextureDimension2D',
  'maxTextureArrayLayers',
] as const;

const DEFAULT_FEATURES: GPUFeatureName[] = ['shader-f16', 'subgroups', 'timestamp-query'];

export async function createGpuContext(gpu: GPU | undefined | null, options: DeviceOptions = {}): Promise<GpuContext> {
  if (!gpu) throw new Error(`WebGPU is not available in this environment.\n${LAVAPIPE_RECIPE}`);
  const adapter = await gpu.requestAdapter({ powerPreference: options.powerPreference ?? 'high-performance' });
  if (!adapter) throw new Error(LAVAPIPE_RECIPE);

  const requiredLimits: Record<string, number> = {};
  for (const name of RAISED_LIMITS) requiredLimits[name] = adapter.limits[name];
  const requiredFeatures = (options.wantFeatures ?? DEFAULT_FEATURES).filter((f) => adapter.features.has(f));
  const device = await adapter.requestDevice({ requiredLimits, requiredFeatures, label: 'hotdog-webgpu' });
  const info = adapter.info;
  const sgMin = (info as { subgroupMinSize?: number }).subgroupMinSize;
  const sgMax = (info as { subgroupMaxSize?: number }).subgroupMaxSize;
  const description = `${info.vendor} ${info.architecture} ${info.device} ${info.description}`.toLowerCase();
  return {
    device,
    adapterInfo: info,
    limits: device.limits,
    features: new Set(device.features),
    isCpuDriver: /llvmpipe|lavapipe|swiftshader/.test(description),
    subgroupSize: device.features.has('subgroups') && sgMin && sgMin === sgMax ? sgMin : null,
    driverSettings: options.driverSettings ?? '',
  };
}

export function describeAdapter(ctx: GpuContext): string {
  const i = ctx.adapterInfo;
  return [i.vendor, i.architecture, i.device, i.description].filter((s) => s).join(' / ');
}

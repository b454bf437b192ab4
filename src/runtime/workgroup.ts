/**
 * Invocations per workgroup of the flat kernels (one invocation per element) and of the single-workgroup reductions:
 * 128, the least any WebGPU device allows (compatibility mode's default maxComputeInvocationsPerWorkgroup and
 * maxComputeWorkgroupSizeX), so they run on every adapter, OpenGL ES class ones included.
 */
export const FLAT_WG = 128;

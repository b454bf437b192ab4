// Splitting work whose tensors exceed the storage binding limit (lavapipe binds at most 128 MiB at once, and a
// batch of 128 at 224x224 makes a 411 MB conv1 output). Tensors stay one GPUBuffer; an op binds sub-ranges of it,
// batch slice by batch slice, so the math (including BatchNorm statistics over the whole batch) is unchanged.
import type { Runtime } from './runtime.js';

export interface BatchChunk {
  /** First sample of the slice. */
  start: number;
  /** Samples in the slice. */
  count: number;
}

/**
 * Slices [0, batch) so that `count * perSample[i] * 4` bytes fit the binding limit for every tensor i, and every
 * slice starts at an offset the device can bind (minStorageBufferOffsetAlignment).
 * `perSample` lists the elements per sample of each batch-major tensor the op binds.
 */
export function batchChunks(rt: Runtime, batch: number, perSample: readonly number[]): BatchChunk[] {
  const largest = Math.max(1, ...perSample);
  let count = Math.floor(rt.bindingLimit / (largest * 4));
  if (count >= batch) return [{ start: 0, count: batch }];
  const step = sliceAlignment(rt, perSample);
  count = Math.floor(count / step) * step;
  if (count === 0) {
    throw new Error(
      `one sample needs ${largest * 4} bytes (x${step} for offset alignment), more than the ${rt.bindingLimit}-byte storage binding limit`,
    );
  }
  const chunks: BatchChunk[] = [];
  for (let start = 0; start < batch; start += count) chunks.push({ start, count: Math.min(count, batch - start) });
  return chunks;
}

/**
 * The sample count every slice start must be a multiple of, so that it starts at an aligned byte offset in every
 * tensor: start * p * 4 ≡ 0 (mod minStorageBufferOffsetAlignment) for each per-sample element count p.
 */
export function sliceAlignment(rt: Runtime, perSample: readonly number[]): number {
  let step = 1;
  for (const p of perSample) {
    if (p === 0) continue;
    step = lcm(step, rt.storageAlign / gcd(p * 4, rt.storageAlign));
  }
  return step;
}

/**
 * Slices [0, batch) into the largest slices for which `fits(count)` holds, each starting at an aligned offset for
 * tensors with `perSample` elements per sample (see sliceAlignment). `fits` must be monotone in count.
 * `within(count)`, also monotone, is a budget rather than a limit (the bytes of a slice's operand textures): slices
 * keep to it where a slice of the smallest aligned size does, else they are that smallest size.
 */
export function fittingChunks(
  rt: Runtime,
  batch: number,
  perSample: readonly number[],
  fits: (count: number) => boolean,
  what: string,
  within: (count: number) => boolean = () => true,
): BatchChunk[] {
  if (fits(batch) && within(batch)) return [{ start: 0, count: batch }];
  const step = sliceAlignment(rt, perSample);
  let count = Math.floor(batch / step) * step;
  while (count > 0 && !(fits(count) && within(count))) count -= step;
  // Over budget at every size: the smallest slice within the limits.
  if (count === 0) count = step <= batch && fits(step) ? step : fits(batch) ? batch : 0;
  if (count === 0) throw new Error(`${what}: even ${step} sample(s) exceed the storage binding or texture size limits`);
  const chunks: BatchChunk[] = [];
  for (let start = 0; start < batch; start += count) chunks.push({ start, count: Math.min(count, batch - start) });
  return chunks;
}

/** Slices a flat range of `n` elements into bindable, aligned pieces (for elementwise kernels). */
export function flatChunks(rt: Runtime, n: number): BatchChunk[] {
  return batchChunks(rt, n, [1]);
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

function lcm(a: number, b: number): number {
  return (a / gcd(a, b)) * b;
}

import type { Runtime } from '../../src/runtime/runtime.js';

/**
 * Runs fn with rt.bindingLimit set to `limit` (so ops bind their tensors in slices, as over lavapipe's 128 MiB),
 * restoring the previous limit afterwards, also when fn throws.
 */
export async function withBindingLimit<T>(rt: Runtime, limit: number, fn: () => Promise<T>): Promise<T> {
  const saved = rt.bindingLimit;
  rt.bindingLimit = limit;
  try {
    return await fn();
  } finally {
    rt.bindingLimit = saved;
  }
}

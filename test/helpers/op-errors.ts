import { expect } from 'vitest';
import type { Runtime } from '../../src/runtime/runtime.js';

/** fn throws an Error whose message matches `message`, having recorded no GPU work before it did. */
export function expectOpError(rt: Runtime, fn: () => unknown, message: RegExp): void {
  const before = rt.stats.dispatches;
  expect(fn).toThrow(message);
  expect(rt.stats.dispatches, `dispatches recorded before the error ${message}`).toBe(before);
}

// The buffer and texture pools' reuse rules (a free buffer or texture of up to twice a request's size serves it) and
// the soft texture budget of fittingChunks.
import { describe, expect, it } from 'vitest';
import { BufferPool, MAX_FIT_RATIO, sizeClass } from '../../src/runtime/buffer-pool.js';
import { fittingChunks, sliceAlignment } from '../../src/runtime/chunks.js';
import { TexturePool, TEXEL_BYTES, TEXTURE_FIT_RATIO } from '../../src/runtime/texture-pool.js';
import { testRuntime } from '../helpers/gpu.js';

describe('BufferPool', () => {
  it('serves a request from a free buffer of up to MAX_FIT_RATIO times its class, and counts the buffer it gave', async () => {
    const rt = await testRuntime();
    const pool = new BufferPool(rt.device, rt.ctx.limits.maxBufferSize);
    try {
      const big = pool.acquire(64 * 1024, 'big');
      expect(big.size).toBe(64 * 1024);
      pool.release(big);
      // 40 KiB (class 40 KiB) fits the free 64 KiB buffer: 64 <= 2 x 40.
      const fit = pool.acquire(40 * 1024, 'fit');
      expect(fit).toBe(big);
      expect(pool.stats().bytesInUse).toBe(64 * 1024);
      expect(pool.stats().allocations).toBe(1);
      pool.release(fit);
      // 24 KiB: the 64 KiB buffer is more than twice its class, so a new buffer.
      const small = pool.acquire(24 * 1024, 'small');
      expect(small).not.toBe(big);
      expect(small.size).toBe(sizeClass(24 * 1024));
      expect(64 * 1024).toBeGreaterThan(MAX_FIT_RATIO * small.size);
      expect(pool.stats()).toMatchObject({ allocations: 2, bytesInUse: small.size, peakBytesInUse: 64 * 1024, bytesHeld: 64 * 1024 + small.size });
      // resetPeak starts the peak over from what is in use (one step's peak).
      pool.resetPeak();
      expect(pool.stats().peakBytesInUse).toBe(small.size);
      pool.release(small);
    } finally {
      pool.destroy();
    }
  });

  it('takes the smallest of the free buffers that fit', async () => {
    const rt = await testRuntime();
    const pool = new BufferPool(rt.device, rt.ctx.limits.maxBufferSize);
    try {
      const large = pool.acquire(64 * 1024, 'large');
      const medium = pool.acquire(40 * 1024, 'medium');
      pool.release(large);
      pool.release(medium);
      // Both fit a 36 KiB class (at most 72 KiB): the 40 KiB one first, then the 64 KiB one, then a new buffer.
      expect(pool.acquire(36 * 1024, 'first')).toBe(medium);
      expect(pool.acquire(36 * 1024, 'second')).toBe(large);
      expect(pool.stats().allocations).toBe(2);
      pool.acquire(36 * 1024, 'third');
      expect(pool.stats().allocations).toBe(3);
    } finally {
      pool.destroy();
    }
  });
});

describe('TexturePool', () => {
  it('serves a request from a free texture at least as large in every dimension and at most TEXTURE_FIT_RATIO times its bytes', async () => {
    const rt = await testRuntime();
    const pool = new TexturePool(rt.device);
    const bytes = (w: number, h: number, l: number): number => w * h * l * TEXEL_BYTES;
    try {
      const t = pool.acquire({ width: 16, height: 32, layers: 4 }, 'first');
      pool.release(t);
      // Smaller in every dimension, more than half the bytes: reused.
      const fit = pool.acquire({ width: 16, height: 24, layers: 3 }, 'fit');
      expect(fit).toBe(t);
      expect(pool.stats().bytesInUse).toBe(bytes(16, 32, 4));
      pool.release(fit);
      // Fewer bytes but wider: the free texture cannot hold it.
      const wide = pool.acquire({ width: 32, height: 8, layers: 1 }, 'wide');
      expect(wide).not.toBe(t);
      // Within every dimension but under half the bytes: a new texture rather than that much slack.
      const small = pool.acquire({ width: 8, height: 16, layers: 2 }, 'small');
      expect(small).not.toBe(t);
      expect(bytes(16, 32, 4)).toBeGreaterThan(TEXTURE_FIT_RATIO * bytes(8, 16, 2));
      expect(pool.stats()).toMatchObject({ allocations: 3, texturesHeld: 3, liveTextures: 2, peakBytesInUse: bytes(16, 32, 4) });
      pool.release(wide);
      pool.release(small);
    } finally {
      pool.destroy();
    }
  });
});

describe('fittingChunks', () => {
  it('keeps slices within the soft budget where one aligned slice does, else slices of the smallest aligned size', async () => {
    const rt = await testRuntime();
    // 64 floats a sample: every start is aligned at 256-byte (or smaller) offset alignment.
    const per = [64];
    expect(sliceAlignment(rt, per)).toBe(1);
    const fits = (count: number): boolean => count <= 32;
    expect(fittingChunks(rt, 32, per, fits, 'test')).toEqual([{ start: 0, count: 32 }]);
    // Budget of 10 samples: slices of 10, 10, 10, 2.
    expect(fittingChunks(rt, 32, per, fits, 'test', (c) => c <= 10).map((c) => c.count)).toEqual([10, 10, 10, 2]);
    // No size keeps to the budget: one sample a slice rather than an error.
    expect(fittingChunks(rt, 3, per, fits, 'test', () => false)).toEqual([
      { start: 0, count: 1 },
      { start: 1, count: 1 },
      { start: 2, count: 1 },
    ]);
    // The hard limit still throws.
    expect(() => fittingChunks(rt, 3, per, () => false, 'test op', () => false)).toThrow(/test op/);
  });
});

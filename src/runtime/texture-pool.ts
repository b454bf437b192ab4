// A pool of rgba32float 2d-array textures, keyed by size: the texture GEMM reads its operands through textureLoad
// (on lavapipe a branch-free fetch of 4 floats, where a storage-buffer load is a per-lane, bounds-checked branch;
// see docs/kernels-performance.md), so operands are copied or written into textures of a few recurring sizes.

// The spec's GPUTextureUsage bit values (the global exists only once an implementation is loaded).
export const TextureUsage = { COPY_SRC: 0x1, COPY_DST: 0x2, TEXTURE_BINDING: 0x4, STORAGE_BINDING: 0x8 } as const;
const USAGE = TextureUsage.COPY_SRC | TextureUsage.COPY_DST | TextureUsage.TEXTURE_BINDING | TextureUsage.STORAGE_BINDING;

/** Bytes of one rgba32float texel. */
export const TEXEL_BYTES = 16;

export interface TextureSize {
  /** Texels per row (4 floats each). */
  width: number;
  height: number;
  layers: number;
}

export interface TexturePoolStats {
  liveTextures: number;
  /** Bytes of the live textures, and the most they have been since the pool was made. */
  bytesInUse: number;
  peakBytesInUse: number;
  /** Bytes of the free textures the pool keeps for reuse (at most maxFreeBytes after each submit). */
  freeBytes: number;
  /** Free textures destroyed for being idle too long or past maxFreeBytes. */
  evictions: number;
  /** Textures the pool owns, live or free. */
  texturesHeld: number;
  bytesHeld: number;
  allocations: number;
}

/**
 * Operand textures are sized per convolution shape, so a pool that kept every free texture would hold a texture set
 * per shape of the model (530 MB at 224 px batch 32 on lavapipe, 57 MB of it in use at once: shapes of different
 * convolutions do not nest). A free texture not reused within this many submits is destroyed: what tuning, an eval
 * pass's batch size or a finished model left behind does not stay.
 */
export const TEXTURE_POOL_MAX_IDLE_SUBMITS = 64;

/**
 * A request with no free texture of its size takes the smallest free one it fits in of up to this many times its
 * bytes. Replaying a tuned 224 px batch-32 step's 143 requests: the pool then holds 796 MB instead of 1045 MB, with no
 * texture made after the first step (at 1.5: 905 MB; at 4 and 8: 776 and 762 MB, more slack per use).
 */
export const TEXTURE_FIT_RATIO = 2;

/**
 * Bytes of operand textures one batch slice of a convolution may hold (im2col.ts, winograd.ts): a pool with no
 * free-texture budget keeps a texture set per shape, so this bounds what each shape adds. Measured with no budget
 * (2026-12-07): a tuned 224 px batch-32 step uses at most 57 MB of textures at once; with im2col's former 128 MiB
 * budget (none for Winograd) and exact-size reuse the pool held 1125 MB, with 32 MiB slices and TEXTURE_FIT_RATIO
 * 530 MB, for steps 6% slower by the median of ten (14.0 against 13.2 s; single steps ranged over 11.1-17.0 s on a
 * 2-core Zen 3). 64 MiB slices held 765 MB and were no faster in ten steps; 16 MiB held 334 MB but took 15.6-16.8 s
 * a step, 8 MiB 209 MB at 27-32 s (slices of one or two samples).
 */
export const SLICE_TEXTURE_BYTES = 32 * 1024 * 1024;

/**
 * The default budget of free textures (RuntimeOptions.textureFreeBytes): one batch slice's worth. Past twice this the
 * pool asks for a submit and then destroys the least recently released free textures, so a step makes most of its
 * textures again. Tuned ResNet-18 steps at batch 32 (2-core Zen 3, lavapipe, 2026-12-08; median of steps 2-6 or 2-8
 * of one process, three processes per setting, interleaved), no budget / 32 MiB: 64 px 1.61, 1.58, 1.50 / 1.39, 1.36,
 * 1.56 s; 112 px 3.78, 4.12 / 3.74, 3.75 s (two); 224 px 12.21, 12.36, 12.53 / 10.86, 9.91, 9.55 s. Peak RSS (MB)
 * 725-728 / 692-693, 1018-1019 / 907-912, 2092-2115 / 1763-1784. A budget of 0 (a submit per release, every free
 * texture destroyed) peaked at 639-645, 847-873 and 1714-1726 MB, but one of its two 64 px runs took 2.63 s a step.
 * Why 224 px got faster is not established: more submits alone (maxDispatchesPerSubmit 64, no budget) were not
 * faster (224 px 12.70 s, 64 px 2.08 s).
 */
export const TEXTURE_FREE_BYTES = SLICE_TEXTURE_BYTES;

export class TexturePool {
  /** Free textures by size key; a Map keeps keys in order of their last release (least recent first). */
  private readonly free = new Map<string, GPUTexture[]>();
  private readonly live = new Set<GPUTexture>();
  /** Submit count when each free texture was released. */
  private readonly releasedAt = new Map<GPUTexture, number>();
  private submits = 0;
  private held = 0;
  private freeHeld = 0;
  private inUse = 0;
  private peakInUse = 0;
  private allocations = 0;
  private evictions = 0;

  /**
   * `requestSubmit` is called when the free textures pass twice `maxFreeBytes`: free textures may only be destroyed
   * once the work recorded with them is submitted, so the owner submits and then calls `afterSubmit()`.
   */
  constructor(
    private readonly device: GPUDevice,
    readonly maxFreeBytes: number = Infinity,
    private readonly requestSubmit: () => void = () => {},
    readonly maxIdleSubmits: number = TEXTURE_POOL_MAX_IDLE_SUBMITS,
  ) {}

  acquire(size: TextureSize, label = 'texture'): GPUTexture {
    let t = this.takeFree(size);
    if (t) {
      this.freeHeld -= bytesOf(t);
      this.releasedAt.delete(t);
    } else {
      t = this.device.createTexture({
        size: [size.width, size.height, size.layers],
        format: 'rgba32float',
        usage: USAGE,
        label,
        // A 1-layer texture would otherwise default to a '2d' view; kernels bind every texture as 2d-array.
        textureBindingViewDimension: '2d-array',
      } as GPUTextureDescriptor);
      this.allocations++;
      this.held += size.width * size.height * size.layers * TEXEL_BYTES;
    }
    this.live.add(t);
    this.inUse += bytesOf(t);
    this.peakInUse = Math.max(this.peakInUse, this.inUse);
    return t;
  }

  /**
   * A free texture of exactly `size`, else the smallest free one at least as wide, as tall and with as many layers
   * whose bytes are at most TEXTURE_FIT_RATIO times the request's: the kernels read and write only the region they
   * are given, never the texture's own size.
   */
  private takeFree(size: TextureSize): GPUTexture | undefined {
    const exact = `${size.width}x${size.height}x${size.layers}`;
    let key: string | undefined = this.free.has(exact) ? exact : undefined;
    if (!key) {
      const limit = TEXTURE_FIT_RATIO * size.width * size.height * size.layers * TEXEL_BYTES;
      let best = Infinity;
      for (const [k, list] of this.free) {
        const t = list[0]!;
        const b = bytesOf(t);
        if (t.width >= size.width && t.height >= size.height && t.depthOrArrayLayers >= size.layers && b <= limit && b < best) {
          best = b;
          key = k;
        }
      }
    }
    if (!key) return undefined;
    const list = this.free.get(key)!;
    const t = list.pop()!;
    if (!list.length) this.free.delete(key);
    return t;
  }

  release(t: GPUTexture): void {
    if (!this.live.delete(t)) throw new Error(`texture "${t.label}" released twice or not from this pool`);
    this.inUse -= bytesOf(t);
    const key = `${t.width}x${t.height}x${t.depthOrArrayLayers}`;
    const list = this.free.get(key) ?? [];
    // Re-inserted last: most recently released.
    this.free.delete(key);
    this.free.set(key, list);
    list.push(t);
    this.releasedAt.set(t, this.submits);
    this.freeHeld += bytesOf(t);
    if (this.freeHeld > 2 * this.maxFreeBytes) this.requestSubmit();
  }

  /**
   * Call right after each submit: every command recorded with a free texture has then been submitted, and WebGPU
   * keeps a destroyed texture's memory until the submitted work that uses it has run. Destroys the free textures
   * idle for more than maxIdleSubmits submits, then the least recently released ones until at most maxFreeBytes
   * are free.
   */
  afterSubmit(): void {
    this.submits++;
    for (const [key, list] of this.free) {
      while (list.length && (this.submits - this.releasedAt.get(list[0]!)! > this.maxIdleSubmits || this.freeHeld > this.maxFreeBytes)) {
        this.destroyFree(list.shift()!);
      }
      if (!list.length) this.free.delete(key);
    }
  }

  private destroyFree(t: GPUTexture): void {
    this.freeHeld -= bytesOf(t);
    this.held -= bytesOf(t);
    this.releasedAt.delete(t);
    this.evictions++;
    t.destroy();
  }

  /**
   * Destroys the free textures (live ones stay). Call with no recorded work pending on them (after a sync): the
   * tuner's runs leave textures of every variant it measured, which a run never needs again.
   */
  trim(): void {
    for (const list of this.free.values()) {
      for (const t of list) {
        this.held -= bytesOf(t);
        t.destroy();
      }
    }
    this.free.clear();
    this.releasedAt.clear();
    this.freeHeld = 0;
  }

  /** Starts the peak of bytes in use over from what is in use now (to measure one step's). */
  resetPeak(): void {
    this.peakInUse = this.inUse;
  }

  stats(): TexturePoolStats {
    let free = 0;
    for (const list of this.free.values()) free += list.length;
    return {
      liveTextures: this.live.size,
      bytesInUse: this.inUse,
      peakBytesInUse: this.peakInUse,
      freeBytes: this.freeHeld,
      evictions: this.evictions,
      texturesHeld: this.live.size + free,
      bytesHeld: this.held,
      allocations: this.allocations,
    };
  }

  destroy(): void {
    for (const list of this.free.values()) for (const t of list) t.destroy();
    for (const t of this.live) t.destroy();
    this.free.clear();
    this.live.clear();
    this.releasedAt.clear();
    this.held = 0;
    this.freeHeld = 0;
    this.inUse = 0;
  }
}

function bytesOf(t: GPUTexture): number {
  return t.width * t.height * t.depthOrArrayLayers * TEXEL_BYTES;
}

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
 * Operand textures are sized per convolution shape, so the pool holds a texture set per shape of the model (on
 * lavapipe 1019 MB at 224 px batch 32, 2567 MB at batch 128) and reuses it every step. A free texture not reused
 * within this many submits (a training step is 2-3) is destroyed: what tuning, an eval pass's batch size or a
 * finished model left behind does not stay. A byte budget for free textures (RuntimeOptions.textureFreeBytes) trades
 * speed for memory: textures made again every step are slow on lavapipe (a 224 px batch-32 step with a 256 MiB budget
 * took 10.8-11.9 s against 6.9-9.6 s unbounded, RSS 2.22 against 2.77 GB), so by default there is none.
 */
export const TEXTURE_POOL_MAX_IDLE_SUBMITS = 64;

export class TexturePool {
  /** Free textures by size key; a Map keeps keys in order of their last release (least recent first). */
  private readonly free = new Map<string, GPUTexture[]>();
  private readonly live = new Set<GPUTexture>();
  /** Submit count when each free texture was released. */
  private readonly releasedAt = new Map<GPUTexture, number>();
  private submits = 0;
  private held = 0;
  private freeHeld = 0;
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
    const key = `${size.width}x${size.height}x${size.layers}`;
    const list = this.free.get(key);
    let t = list?.pop();
    if (t) {
      this.freeHeld -= bytesOf(t);
      this.releasedAt.delete(t);
      if (!list!.length) this.free.delete(key);
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
    return t;
  }

  release(t: GPUTexture): void {
    if (!this.live.delete(t)) throw new Error(`texture "${t.label}" released twice or not from this pool`);
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

  stats(): TexturePoolStats {
    let free = 0;
    for (const list of this.free.values()) free += list.length;
    return {
      liveTextures: this.live.size,
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
  }
}

function bytesOf(t: GPUTexture): number {
  return t.width * t.height * t.depthOrArrayLayers * TEXEL_BYTES;
}

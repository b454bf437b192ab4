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
  /** Textures the pool owns, live or free. */
  texturesHeld: number;
  bytesHeld: number;
  allocations: number;
}

export class TexturePool {
  private readonly free = new Map<string, GPUTexture[]>();
  private readonly live = new Set<GPUTexture>();
  private held = 0;
  private allocations = 0;

  constructor(private readonly device: GPUDevice) {}

  acquire(size: TextureSize, label = 'texture'): GPUTexture {
    const key = `${size.width}x${size.height}x${size.layers}`;
    let t = this.free.get(key)?.pop();
    if (!t) {
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
    let list = this.free.get(key);
    if (!list) this.free.set(key, (list = []));
    list.push(t);
  }

  /**
   * Destroys the free textures (live ones stay). Call with no recorded work pending on them (after a sync): the
   * tuner's runs leave textures of every variant it measured, which a run never needs again.
   */
  trim(): void {
    for (const list of this.free.values()) {
      for (const t of list) {
        this.held -= t.width * t.height * t.depthOrArrayLayers * TEXEL_BYTES;
        t.destroy();
      }
    }
    this.free.clear();
  }

  stats(): TexturePoolStats {
    let free = 0;
    for (const list of this.free.values()) free += list.length;
    return { liveTextures: this.live.size, texturesHeld: this.live.size + free, bytesHeld: this.held, allocations: this.allocations };
  }

  destroy(): void {
    for (const list of this.free.values()) for (const t of list) t.destroy();
    for (const t of this.live) t.destroy();
    this.free.clear();
    this.live.clear();
    this.held = 0;
  }
}

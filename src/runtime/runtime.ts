// The kernel runtime: pipeline cache, explicit bind group layouts, dispatches batched into one command encoder,
// and a single wait mechanism.
//
// Synchronisation: dawn.node 0.6.2 on lavapipe has killed processes that mix many queue.onSubmittedWorkDone()
// waits with many mapAsync waits. This runtime never calls onSubmittedWorkDone: every wait is a mapAsync, either
// of a readback buffer or of a 4-byte fence that is copied after the work to wait for.
import { BufferPool, BufferUsage, type PoolStats } from './buffer-pool.js';
import { kernelView, type GpuContext, type KernelMode } from './device.js';
import { packParams, reflectKernel, type BindingInfo, type KernelDef, type KernelLayout } from './kernel.js';
import type { OpKind } from './profiling/op-kinds.js';
import { TEXTURE_FREE_BYTES, TexturePool, type TexturePoolStats, type TextureSize } from './texture-pool.js';
import { Tuner, type TuningStore } from './autotune.js';

/** Anything that can be bound as a storage buffer: a raw binding or an object (a Tensor) that makes one. */
export type BufferSource = GPUBufferBinding | { gpuBinding(): GPUBufferBinding };
/** A kernel binding: a storage buffer, or (for texture bindings) a whole rgba32float texture from the pool. */
export type BindingSource = BufferSource | GPUTexture;

function isTexture(src: BindingSource): src is GPUTexture {
  return typeof (src as GPUTexture).createView === 'function';
}

export type Workgroups = number | [number, number?, number?];

export interface RuntimeOptions {
  /** Dispatches recorded before the runtime submits on its own (a few hundred per submit is measured safe). */
  maxDispatchesPerSubmit?: number;
  /** Where measured kernel choices persist between runs (autotune.ts); none: they are measured in every process. */
  tuningStore?: TuningStore;
  /**
   * 'auto' (default): kernels choose among every variant the adapter runs. 'gpu': only among those a GPU adapter
   * would use, whatever the adapter (device.ts kernelView); lavapipe then runs the GPU choices, which is how they
   * are tested. Under Node, createNodeRuntime takes it from HOTDOG_KERNELS when not given.
   */
  kernels?: KernelMode;
  /** Bytes of free operand textures kept for reuse (texture-pool.ts; default TEXTURE_FREE_BYTES, 32 MiB; Infinity keeps every one not idle). */
  textureFreeBytes?: number;
}

/** A command as a profiler sees it (src/runtime/profiling/profiler.ts), with everything needed to record it again. */
export type RecordedCommand =
  | {
      op: 'dispatch';
      def: KernelDef;
      workgroups: [number, number, number];
      buffers: Record<string, GPUBufferBinding | GPUTexture>;
      params: Record<string, number>;
    }
  | { op: 'copy'; src: GPUBuffer; srcOffset: number; dst: GPUBuffer; dstOffset: number; size: number }
  | { op: 'copyToTexture'; src: GPUBuffer; srcOffset: number; bytesPerRow: number; dst: GPUTexture; size: TextureSize }
  | { op: 'clear'; buffer: GPUBuffer; offset: number; size: number };

/** Two timestamp query slots around one command. */
export interface CommandTimestamps {
  querySet: GPUQuerySet;
  begin: number;
  end: number;
}

/**
 * What a profiler attaches to `rt.profiler`. Ops call begin/end around their dispatches (an op scope: the dispatches
 * recorded meanwhile belong to that op call); the runtime calls record/beforeSubmit. Unset (null) in normal runs,
 * where all of this costs one null check per op call and per command.
 */
export interface ProfilerHooks {
  /** Opens an op scope: `kind` says what the op is, `label` which call (shapes), `flop` its direct FLOP count. */
  begin(kind: OpKind, label: string, flop?: number): void;
  /** Closes the innermost open scope. */
  end(): void;
  /**
   * Sees every command before it is recorded. Returned timestamps put it between two timestamp writes: a dispatch
   * alone in a compute pass of its own, a copy or clear between two empty passes.
   */
  record(cmd: RecordedCommand): CommandTimestamps | undefined;
  /** The encoder about to be finished and submitted (to resolve its queries). */
  beforeSubmit(encoder: GPUCommandEncoder): void;
}

interface CompiledKernel {
  layout: KernelLayout;
  pipeline: GPUComputePipeline;
  bindGroupLayout: GPUBindGroupLayout;
}

const UNIFORM_CHUNK = 64 * 1024;

export class GpuError extends Error {
  override name = 'GpuError';
}

/** A runtime used after destroy(). */
export class RuntimeDestroyedError extends Error {
  override name = 'RuntimeDestroyedError';
  constructor() {
    super('this runtime was destroyed (runtime.destroy()): its device, tensors and modules cannot be used any more; create a new runtime and load the weights onto it');
  }
}

/** A tensor (or buffer) of one runtime handed to another. */
export class ForeignTensorError extends Error {
  override name = 'ForeignTensorError';
}

function isTensorLike(src: BindingSource): src is BindingSource & { label: string; id: number; shape: readonly number[] } {
  const t = src as { label?: unknown; id?: unknown; shape?: unknown };
  return typeof t.label === 'string' && typeof t.id === 'number' && Array.isArray(t.shape);
}

export class Runtime {
  readonly device: GPUDevice;
  readonly pool: BufferPool;
  readonly textures: TexturePool;
  readonly maxBindingSize: number;
  readonly uniformAlign: number;
  readonly storageAlign: number;

  private readonly pipelines = new Map<string, CompiledKernel>();
  private readonly layouts = new Map<string, GPUBindGroupLayout>();
  private readonly pendingCompiles: Promise<void>[] = [];
  private readonly errors: string[] = [];
  private lost: string | null = null;
  private destroyed = false;

  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private dispatchesInBatch = 0;
  private kernelsInBatch = new Set<string>();
  private readonly maxDispatches: number;

  // Params of every dispatch in the batch are packed into CPU memory and written to GPU uniform chunks at flush.
  private uniformCpu = new ArrayBuffer(UNIFORM_CHUNK);
  private uniformView = new DataView(this.uniformCpu);
  private uniformChunks: GPUBuffer[] = [];
  private uniformOffset = 0; // bytes used in the whole batch (chunk index = floor(offset / UNIFORM_CHUNK))

  private readonly fenceSource: GPUBuffer;
  private readonly fence: GPUBuffer;
  private readonly staging = new Map<number, GPUBuffer[]>();
  private readonly uploads = new Map<number, GPUBuffer[]>();
  private submits = 0;
  private dispatches = 0;

  /** Overridable for tests that force a small binding limit. */
  bindingLimit: number;

  /** Set while a profiler is attached (src/runtime/profiling/profiler.ts); null otherwise. */
  profiler: ProfilerHooks | null = null;
  /** Measured choices between kernel variants (autotune.ts). */
  readonly tuner: Tuner;

  /** The device as kernels see it: the adapter's own context, or its GPU view in the 'gpu' kernel mode. */
  readonly ctx: GpuContext;

  constructor(
    /** The device as it is (run records say what it really was). */
    readonly deviceCtx: GpuContext,
    options: RuntimeOptions = {},
  ) {
    const ctx = kernelView(deviceCtx, options.kernels ?? 'auto');
    this.ctx = ctx;
    this.device = ctx.device;
    this.maxBindingSize = ctx.limits.maxStorageBufferBindingSize;
    this.bindingLimit = this.maxBindingSize;
    this.uniformAlign = ctx.limits.minUniformBufferOffsetAlignment;
    this.storageAlign = ctx.limits.minStorageBufferOffsetAlignment;
    this.maxDispatches = options.maxDispatchesPerSubmit ?? 256;
    this.pool = new BufferPool(this.device, ctx.limits.maxBufferSize);
    this.textures = new TexturePool(this.device, options.textureFreeBytes ?? TEXTURE_FREE_BYTES, () => this.flush());
    this.tuner = new Tuner(this, options.tuningStore ?? null);
    this.fenceSource = this.device.createBuffer({ size: 4, usage: BufferUsage.COPY_SRC, label: 'fenceSource' });
    this.fence = this.device.createBuffer({ size: 4, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST, label: 'fence' });
    this.device.addEventListener('uncapturederror', (ev) => {
      this.errors.push((ev as GPUUncapturedErrorEvent).error.message);
    });
    void this.device.lost.then((info) => {
      // destroy() ends the device on purpose; anyone else destroying it (or the driver losing it) is a failure.
      if (info.reason !== 'destroyed' || !this.destroyed) this.lost = `GPU device lost (${info.reason}): ${info.message}`;
    });
  }

  get stats(): { submits: number; dispatches: number; pool: PoolStats; textures: TexturePoolStats; pipelines: number } {
    return { submits: this.submits, dispatches: this.dispatches, pool: this.pool.stats(), textures: this.textures.stats(), pipelines: this.pipelines.size };
  }

  /**
   * Waits for the GPU, then destroys the free buffers and textures of both pools (live tensors and textures stay).
   * The training loop calls it after tuning, whose measuring runs leave operands of every variant behind.
   */
  async trimPools(): Promise<void> {
    await this.sync();
    this.pool.trim();
    this.textures.trim();
  }

  // ---- pipelines ----------------------------------------------------------------------------------------------

  /** Compiles (or fetches from the cache) a kernel's pipeline. Compile errors surface at the next sync/read. */
  kernel(def: KernelDef): CompiledKernel {
    const key = pipelineKey(def);
    const cached = this.pipelines.get(key);
    if (cached) return cached;
    const layout = reflectKernel(def);
    checkFitsDevice(def, layout, this.ctx);
    const bindGroupLayout = this.bindGroupLayout(layout);
    this.device.pushErrorScope('validation');
    const module = this.device.createShaderModule({ code: def.wgsl, label: def.name });
    const pipeline = this.device.createComputePipeline({
      label: def.name,
      layout: this.device.createPipelineLayout({ bindGroupLayouts: [bindGroupLayout], label: def.name }),
      compute: { module, entryPoint: layout.entryPoint, constants: def.constants },
    });
    const scope = this.device.popErrorScope();
    this.pendingCompiles.push(
      scope.then(async (err) => {
        if (!err) return;
        const info = await module.getCompilationInfo();
        const messages = info.messages
          .filter((m) => m.type === 'error')
          .map((m) => `  line ${m.lineNum}:${m.linePos}: ${m.message}`);
        throw new GpuError(`kernel ${def.name} failed to compile:\n${messages.length ? messages.join('\n') : err.message}`);
      }),
    );
    const compiled = { layout, pipeline, bindGroupLayout };
    this.pipelines.set(key, compiled);
    return compiled;
  }

  /** Compiles a kernel and waits for the compiler's verdict (throws a GpuError naming the kernel). */
  async compile(def: KernelDef): Promise<void> {
    this.kernel(def);
    await this.checkErrors();
  }

  // Layouts are keyed by their binding signature, so kernels with the same shape of bindings share one.
  private bindGroupLayout(layout: KernelLayout): GPUBindGroupLayout {
    const entries: GPUBindGroupLayoutEntry[] = layout.buffers.map(layoutEntry);
    if (layout.params) {
      entries.push({ binding: layout.params.binding, visibility: 4, buffer: { type: 'uniform' } });
    }
    entries.sort((a, b) => a.binding - b.binding);
    const key = entries
      .map((e) => `${e.binding}:${e.buffer?.type ?? (e.texture ? `tex.${e.texture.viewDimension}` : `stex.${e.storageTexture?.viewDimension}`)}`)
      .join(',');
    let bgl = this.layouts.get(key);
    if (!bgl) {
      bgl = this.device.createBindGroupLayout({ entries, label: `layout(${key})` });
      this.layouts.set(key, bgl);
    }
    return bgl;
  }

  // ---- recording ----------------------------------------------------------------------------------------------

  /**
   * Records one dispatch. `buffers` must name exactly the storage bindings the entry point uses; `params` exactly
   * the members of its `params` uniform struct.
   */
  dispatch(def: KernelDef, workgroups: Workgroups, buffers: Record<string, BindingSource>, params: Record<string, number> = {}): void {
    this.throwIfLost();
    const k = this.kernel(def);
    const entries: GPUBindGroupEntry[] = [];
    const resources: (GPUBuffer | GPUTexture)[] = [];
    for (const b of k.layout.buffers) {
      const src = buffers[b.name];
      if (!src) throw new Error(`kernel ${def.name}: binding "${b.name}" was not given (it binds: ${k.layout.buffers.map((x) => x.name).join(', ')})`);
      const texture = b.kind === 'texture' || b.kind === 'storage-texture';
      if (texture !== isTexture(src)) throw new Error(`kernel ${def.name}: binding "${b.name}" needs a ${texture ? 'texture' : 'buffer'}`);
      if (isTexture(src)) {
        entries.push({ binding: b.binding, resource: textureView(src) });
        resources.push(src);
        continue;
      }
      const resource = 'gpuBinding' in src ? src.gpuBinding() : src;
      this.checkOwnBuffer(resource.buffer, `kernel ${def.name}: binding "${b.name}"`, src);
      const size = resource.size ?? resource.buffer.size - (resource.offset ?? 0);
      if (size > this.bindingLimit) {
        throw new Error(`kernel ${def.name}: binding "${b.name}" is ${size} bytes, over the ${this.bindingLimit}-byte storage binding limit`);
      }
      entries.push({ binding: b.binding, resource });
      resources.push(resource.buffer);
    }
    for (const name of Object.keys(buffers)) {
      if (!k.layout.buffers.some((b) => b.name === name)) {
        throw new Error(`kernel ${def.name}: it has no binding "${name}" (it binds: ${k.layout.buffers.map((x) => x.name).join(', ')})`);
      }
    }
    // WebGPU forbids a buffer that one binding writes from being bound again in the same dispatch (Dawn would only
    // report it at submit time, without saying which kernel); catch it here by name.
    const writes = (x: BindingInfo): boolean => x.kind === 'storage' || x.kind === 'storage-texture';
    k.layout.buffers.forEach((b, i) => {
      k.layout.buffers.forEach((other, j) => {
        if (j <= i || (!writes(b) && !writes(other))) return;
        if (resources[i] === resources[j]) {
          throw new Error(`kernel ${def.name}: "${b.name}" and "${other.name}" are the same buffer, and one of them is written`);
        }
      });
    });
    if (k.layout.params) entries.push({ binding: k.layout.params.binding, resource: this.packUniform(def.name, k.layout, params) });
    else if (Object.keys(params).length) throw new Error(`kernel ${def.name}: has no params struct but params were given`);

    // An empty grid (a 0-element tensor) has nothing to run; its bindings and params were still checked above.
    const [x, y = 1, z = 1] = typeof workgroups === 'number' ? [workgroups] : workgroups;
    if (x === 0 || y === 0 || z === 0) return;
    const bindGroup = this.device.createBindGroup({ layout: k.bindGroupLayout, entries, label: def.name });
    const stamps = this.profiler ? this.profiler.record(recordedDispatch(def, [x, y, z], k.layout, entries, buffers, params)) : undefined;
    if (stamps) this.endPass();
    const pass = stamps
      ? (this.pass = this.commandEncoder().beginComputePass({
          timestampWrites: { querySet: stamps.querySet, beginningOfPassWriteIndex: stamps.begin, endOfPassWriteIndex: stamps.end },
        }))
      : this.computePass();
    pass.setPipeline(k.pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(x, y, z);
    if (stamps) this.endPass();
    this.dispatchesInBatch++;
    this.dispatches++;
    this.kernelsInBatch.add(def.name);
    if (this.dispatchesInBatch >= this.maxDispatches) this.flush();
  }

  /** Splits `count` workgroups over x and y so neither exceeds the per-dimension limit (kernels fold y back in). */
  grid(count: number): [number, number] {
    const max = this.ctx.limits.maxComputeWorkgroupsPerDimension;
    if (count <= max) return [count, 1];
    const y = Math.ceil(count / max);
    return [Math.ceil(count / y), y];
  }

  /** Records a buffer-to-buffer copy (ends the open compute pass). */
  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, size: number): void {
    this.throwIfLost();
    this.checkOwnBuffer(src, 'copy: its source');
    this.checkOwnBuffer(dst, 'copy: its destination');
    this.endPass();
    const stamps = this.profiler?.record({ op: 'copy', src, srcOffset, dst, dstOffset, size });
    if (stamps) this.timestampPass(stamps.querySet, undefined, stamps.begin);
    this.commandEncoder().copyBufferToBuffer(src, srcOffset, dst, dstOffset, size);
    if (stamps) this.timestampPass(stamps.querySet, stamps.end, undefined);
  }

  /**
   * Records a copy of rows of 4-float texels from a buffer into a pooled texture: `bytesPerRow` (a multiple of 256)
   * apart, `size.height` rows per layer, `size.layers` layers from `srcOffset` (a multiple of 16).
   */
  copyToTexture(src: GPUBuffer, srcOffset: number, bytesPerRow: number, dst: GPUTexture, size: TextureSize): void {
    this.endPass();
    const stamps = this.profiler?.record({ op: 'copyToTexture', src, srcOffset, bytesPerRow, dst, size });
    if (stamps) this.timestampPass(stamps.querySet, undefined, stamps.begin);
    this.commandEncoder().copyBufferToTexture(
      { buffer: src, offset: srcOffset, bytesPerRow, rowsPerImage: size.height },
      { texture: dst },
      [size.width, size.height, size.layers],
    );
    if (stamps) this.timestampPass(stamps.querySet, stamps.end, undefined);
  }

  /** Records a zero fill (size a multiple of 4). */
  clear(buffer: GPUBuffer, offset: number, size: number): void {
    if (size === 0) return;
    this.endPass();
    const stamps = this.profiler?.record({ op: 'clear', buffer, offset, size });
    if (stamps) this.timestampPass(stamps.querySet, undefined, stamps.begin);
    this.commandEncoder().clearBuffer(buffer, offset, size);
    if (stamps) this.timestampPass(stamps.querySet, stamps.end, undefined);
  }

  /** An empty compute pass that only writes timestamps (around a copy or clear, which have no timestampWrites). */
  private timestampPass(querySet: GPUQuerySet, beginningOfPassWriteIndex: number | undefined, endOfPassWriteIndex: number | undefined): void {
    this.commandEncoder().beginComputePass({ timestampWrites: { querySet, beginningOfPassWriteIndex, endOfPassWriteIndex } }).end();
  }

  /**
   * Writes host data into a buffer. The write happens in queue order, so recorded-but-unsubmitted work that may
   * still read this (possibly recycled) buffer is submitted first.
   */
  write(buffer: GPUBuffer, offset: number, data: ArrayBufferView): void {
    this.throwIfLost();
    this.checkOwnBuffer(buffer, 'write: its destination');
    if (data.byteLength === 0) return;
    if (this.encoder) this.flush();
    this.device.queue.writeBuffer(buffer, offset, data.buffer, data.byteOffset, data.byteLength);
  }

  private commandEncoder(): GPUCommandEncoder {
    this.encoder ??= this.device.createCommandEncoder({ label: 'batch' });
    return this.encoder;
  }

  private computePass(): GPUComputePassEncoder {
    this.pass ??= this.commandEncoder().beginComputePass();
    return this.pass;
  }

  private endPass(): void {
    this.pass?.end();
    this.pass = null;
  }

  private packUniform(kernel: string, layout: KernelLayout, params: Record<string, number>): GPUBufferBinding {
    const p = layout.params!;
    let offset = Math.ceil(this.uniformOffset / this.uniformAlign) * this.uniformAlign;
    // A struct never straddles two chunks.
    if (Math.floor(offset / UNIFORM_CHUNK) !== Math.floor((offset + p.size - 1) / UNIFORM_CHUNK)) {
      offset = Math.ceil(offset / UNIFORM_CHUNK) * UNIFORM_CHUNK;
    }
    if (offset + p.size > this.uniformCpu.byteLength) {
      const grown = new ArrayBuffer(this.uniformCpu.byteLength * 2);
      new Uint8Array(grown).set(new Uint8Array(this.uniformCpu));
      this.uniformCpu = grown;
      this.uniformView = new DataView(grown);
    }
    new Uint8Array(this.uniformCpu, offset, p.size).fill(0);
    packParams(p, kernel, params, this.uniformView, offset);
    this.uniformOffset = offset + p.size;
    const chunk = Math.floor(offset / UNIFORM_CHUNK);
    while (this.uniformChunks.length <= chunk) {
      this.uniformChunks.push(
        this.device.createBuffer({ size: UNIFORM_CHUNK, usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST, label: 'params' }),
      );
    }
    return { buffer: this.uniformChunks[chunk]!, offset: offset % UNIFORM_CHUNK, size: p.size };
  }

  // ---- submission and waiting ---------------------------------------------------------------------------------

  /** Submits everything recorded so far (one submit). Does not wait. */
  flush(): void {
    this.throwIfLost();
    if (!this.encoder) return;
    this.endPass();
    this.profiler?.beforeSubmit(this.encoder);
    // Uniform chunks are rewritten per batch; queue order puts this write after the previous batch's reads.
    for (let c = 0; c * UNIFORM_CHUNK < this.uniformOffset; c++) {
      const len = Math.min(UNIFORM_CHUNK, this.uniformOffset - c * UNIFORM_CHUNK);
      this.device.queue.writeBuffer(this.uniformChunks[c]!, 0, this.uniformCpu, c * UNIFORM_CHUNK, Math.ceil(len / 4) * 4);
    }
    this.device.queue.submit([this.encoder.finish()]);
    this.submits++;
    // Everything recorded with the pool's free textures is submitted now: idle or over budget, they may be destroyed.
    this.textures.afterSubmit();
    this.encoder = null;
    this.dispatchesInBatch = 0;
    this.uniformOffset = 0;
  }

  /** Submits and waits until the GPU has finished all work so far; throws any GPU error seen meanwhile. */
  async sync(): Promise<void> {
    this.copy(this.fenceSource, 0, this.fence, 0, 4);
    this.flush();
    await this.mapAndCheck(this.fence);
    this.fence.unmap();
  }

  /** Copies `size` bytes of a buffer back to the host (one submit, one wait). */
  async read(src: GPUBuffer, offset: number, size: number): Promise<ArrayBuffer> {
    if (size === 0) {
      await this.checkErrors();
      return new ArrayBuffer(0);
    }
    const padded = Math.ceil(size / 4) * 4;
    const staging = this.acquireStaging(padded);
    this.copy(src, offset, staging, 0, padded);
    this.flush();
    try {
      await this.mapAndCheck(staging);
      const out = staging.getMappedRange(0, padded).slice(0, size);
      staging.unmap();
      return out;
    } finally {
      this.releaseStaging(staging);
    }
  }

  /**
   * Copies several buffer ranges back to the host in one submit and one wait, packed in order (each range's size a
   * multiple of 4): a bucket of gradients. `into`: a host buffer to copy into (reused step after step: a fresh
   * allocation of tens of MB costs more in page faults than the copy).
   */
  async readParts(parts: readonly { buffer: GPUBuffer; offset: number; size: number }[], into?: ArrayBuffer): Promise<ArrayBuffer> {
    const total = parts.reduce((n, p) => n + p.size, 0);
    if (total === 0) return this.read(this.fence, 0, 0);
    if (into && into.byteLength < total) throw new Error(`readParts: ${total} bytes do not fit the ${into.byteLength}-byte target`);
    const staging = this.acquireStaging(total);
    let at = 0;
    for (const p of parts) {
      if (p.size % 4) throw new Error(`readParts: a range of ${p.size} bytes (not a multiple of 4)`);
      this.copy(p.buffer, p.offset, staging, at, p.size);
      at += p.size;
    }
    this.flush();
    try {
      await this.mapAndCheck(staging);
      const mapped = staging.getMappedRange(0, total);
      let out: ArrayBuffer;
      if (into) {
        new Uint8Array(into, 0, total).set(new Uint8Array(mapped));
        out = into;
      } else out = mapped.slice(0);
      staging.unmap();
      return out;
    } finally {
      this.releaseStaging(staging);
    }
  }

  /**
   * Writes host data (packed in order) into several buffer ranges through a reused upload buffer, mapped for
   * writing: queue.writeBuffer takes fresh upload memory on every call, which for tens of MB costs more in page
   * faults than the copy (about 0.4 s for 2 x 45 MB on lavapipe here). Submits the copies.
   */
  async writeParts(parts: readonly { buffer: GPUBuffer; offset: number; size: number }[], data: ArrayBuffer): Promise<void> {
    const total = parts.reduce((n, p) => n + p.size, 0);
    if (total === 0) return;
    if (data.byteLength < total) throw new Error(`writeParts: ${data.byteLength} bytes of data for ${total} bytes of ranges`);
    const size = Math.max(256, 2 ** Math.ceil(Math.log2(total)));
    let upload = this.uploads.get(size)?.pop();
    if (upload) {
      try {
        await upload.mapAsync(2 /* GPUMapMode.WRITE */);
      } catch (e) {
        upload.destroy();
        this.throwIfLost();
        throw new GpuError(`mapping an upload buffer failed (${(e as Error).message})`);
      }
    } else upload = this.device.createBuffer({ size, usage: BufferUsage.MAP_WRITE | BufferUsage.COPY_SRC, mappedAtCreation: true, label: 'upload' });
    new Uint8Array(upload.getMappedRange(0, total)).set(new Uint8Array(data, 0, total));
    upload.unmap();
    let at = 0;
    for (const p of parts) {
      if (p.size % 4) throw new Error(`writeParts: a range of ${p.size} bytes (not a multiple of 4)`);
      this.copy(upload, at, p.buffer, p.offset, p.size);
      at += p.size;
    }
    // Submitted before the buffer goes back to the pool: mapping it again then waits for these copies.
    this.flush();
    let list = this.uploads.get(size);
    if (!list) this.uploads.set(size, (list = []));
    list.push(upload);
  }

  private async mapAndCheck(buffer: GPUBuffer): Promise<void> {
    const kernels = [...this.kernelsInBatch];
    this.kernelsInBatch.clear();
    try {
      await buffer.mapAsync(1 /* GPUMapMode.READ */);
    } catch (e) {
      this.throwIfLost();
      throw new GpuError(`waiting for the GPU failed (${(e as Error).message}); kernels in flight: ${kernels.join(', ')}`);
    }
    try {
      await this.checkErrors(kernels);
    } catch (e) {
      buffer.unmap();
      throw e;
    }
  }

  private async checkErrors(kernels: string[] = []): Promise<void> {
    const compiles = this.pendingCompiles.splice(0);
    const results = await Promise.allSettled(compiles);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      this.errors.length = 0;
      throw failed.reason;
    }
    this.throwIfLost();
    if (this.errors.length) {
      const msgs = this.errors.splice(0);
      throw new GpuError(`GPU error${kernels.length ? ` (kernels in this batch: ${kernels.join(', ')})` : ''}:\n${msgs.join('\n')}`);
    }
  }

  private throwIfLost(): void {
    if (this.destroyed) throw new RuntimeDestroyedError();
    if (this.lost) throw new GpuError(this.lost);
  }

  /** True after destroy(): every later use of this runtime (or of its tensors and modules) throws RuntimeDestroyedError. */
  get isDestroyed(): boolean {
    return this.destroyed;
  }

  /**
   * Refuses a buffer that another runtime's pool made: a tensor lives on the device of the runtime that made it,
   * and WebGPU would only report the mix-up later, without naming the tensor.
   */
  private checkOwnBuffer(buffer: GPUBuffer, what: string, src?: BindingSource): void {
    const owner = BufferPool.ownerOf(buffer);
    if (owner === undefined || owner === this.pool) return;
    const tensor = src !== undefined && isTensorLike(src) ? `tensor "${src.label}"#${src.id} [${src.shape.join(', ')}]` : `tensor "${BufferPool.holderOf(buffer)}"`;
    throw new ForeignTensorError(
      `${what} is ${tensor}, which belongs to another runtime: tensors and modules cannot be shared between runtimes ` +
        '(read it back with `await t.read()` and make it again with Tensor.fromArray on this runtime, or load the state dict into a model made on this runtime)',
    );
  }

  private acquireStaging(size: number): GPUBuffer {
    const s = Math.max(256, 2 ** Math.ceil(Math.log2(size)));
    return (
      this.staging.get(s)?.pop() ??
      this.device.createBuffer({ size: s, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST, label: 'readback' })
    );
  }

  private releaseStaging(b: GPUBuffer): void {
    let list = this.staging.get(b.size);
    if (!list) this.staging.set(b.size, (list = []));
    list.push(b);
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.encoder = null;
    this.pass = null;
    this.pool.destroy();
    this.textures.destroy();
    for (const list of this.staging.values()) for (const b of list) b.destroy();
    this.staging.clear();
    for (const list of this.uploads.values()) for (const b of list) b.destroy();
    this.uploads.clear();
    for (const b of this.uniformChunks) b.destroy();
    this.ctx.dispose();
  }
}

const FEATURE_DIRECTIVES: [string, RegExp][] = [
  ['shader-f16', /\benable\s+f16\s*;/],
  ['subgroups', /\benable\s+subgroups\s*;/],
];

/**
 * Refuses, by name, a kernel this device cannot run: more storage buffers or a bigger workgroup than its limits allow
 * (compatibility-mode devices often allow 4 storage buffers and 128 invocations), or a WGSL extension it lacks.
 * Without this, Dawn or the browser reports a pipeline error that does not say which limit or kernel.
 */
export function checkFitsDevice(def: KernelDef, layout: KernelLayout, ctx: GpuContext): void {
  const where = `this ${ctx.featureLevel}-mode device`;
  const counts: [BindingInfo['kind'][], string, number][] = [
    [['storage', 'read-only-storage'], 'storage buffers', ctx.limits.maxStorageBuffersPerShaderStage],
    [['storage-texture'], 'storage textures', ctx.limits.maxStorageTexturesPerShaderStage],
    [['texture'], 'sampled textures', ctx.limits.maxSampledTexturesPerShaderStage],
  ];
  for (const [kinds, what, max] of counts) {
    const n = layout.buffers.filter((b) => kinds.includes(b.kind)).length;
    if (n > max) throw new GpuError(`kernel ${def.name} binds ${n} ${what}; ${where} allows ${max} per shader stage`);
  }
  const [x, y, z] = workgroupSize(def, layout);
  const l = ctx.limits;
  if (x * y * z > l.maxComputeInvocationsPerWorkgroup || x > l.maxComputeWorkgroupSizeX || y > l.maxComputeWorkgroupSizeY || z > l.maxComputeWorkgroupSizeZ) {
    throw new GpuError(
      `kernel ${def.name} has workgroups of ${x}x${y}x${z}; ${where} allows ${l.maxComputeInvocationsPerWorkgroup} invocations ` +
        `(at most ${l.maxComputeWorkgroupSizeX}x${l.maxComputeWorkgroupSizeY}x${l.maxComputeWorkgroupSizeZ})`,
    );
  }
  for (const [feature, directive] of FEATURE_DIRECTIVES) {
    if (directive.test(def.wgsl) && !ctx.features.has(feature)) {
      throw new GpuError(`kernel ${def.name} needs the ${feature} feature, which this adapter does not offer: choose a variant without it`);
    }
  }
}

/** The entry point's workgroup size with override constants applied (reflection only knows their defaults). */
function workgroupSize(def: KernelDef, layout: KernelLayout): [number, number, number] {
  const size = [...layout.workgroupSize] as [number, number, number];
  const attr = new RegExp(`@workgroup_size\\(([^)]*)\\)[^;{]*?fn\\s+${layout.entryPoint}\\b`).exec(def.wgsl);
  if (!attr || !def.constants) return size;
  attr[1]!.split(',').forEach((dim, i) => {
    const name = dim.trim();
    const value = def.constants?.[name];
    if (i < 3 && value !== undefined) size[i] = value;
  });
  return size;
}

function layoutEntry(b: BindingInfo): GPUBindGroupLayoutEntry {
  const visibility = 4; /* GPUShaderStage.COMPUTE */
  if (b.kind === 'texture') return { binding: b.binding, visibility, texture: { sampleType: 'unfilterable-float', viewDimension: b.viewDimension } };
  if (b.kind === 'storage-texture') {
    return { binding: b.binding, visibility, storageTexture: { access: 'write-only', format: b.format!, viewDimension: b.viewDimension } };
  }
  return { binding: b.binding, visibility, buffer: { type: b.kind as GPUBufferBindingType } };
}

// Every pooled texture is bound whole as a 2d-array view; one view per texture is made and kept.
const views = new WeakMap<GPUTexture, GPUTextureView>();
function textureView(t: GPUTexture): GPUTextureView {
  let v = views.get(t);
  if (!v) views.set(t, (v = t.createView({ dimension: '2d-array' })));
  return v;
}

function recordedDispatch(
  def: KernelDef,
  workgroups: [number, number, number],
  layout: KernelLayout,
  entries: GPUBindGroupEntry[],
  sources: Record<string, BindingSource>,
  params: Record<string, number>,
): RecordedCommand {
  // Raw bindings, not the tensors the op passed (those may be released before a replay).
  const buffers: Record<string, GPUBufferBinding | GPUTexture> = {};
  layout.buffers.forEach((b, i) => {
    const src = sources[b.name]!;
    buffers[b.name] = isTexture(src) ? src : (entries[i]!.resource as GPUBufferBinding);
  });
  return { op: 'dispatch', def, workgroups, buffers, params: { ...params } };
}

function pipelineKey(def: KernelDef): string {
  const constants = def.constants
    ? Object.entries(def.constants)
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([k, v]) => `${k}=${v}`)
        .join(',')
    : '';
  return `${def.entryPoint ?? 'main'}\u0000${constants}\u0000${def.wgsl}`;
}

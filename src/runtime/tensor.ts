// GPU tensors: contiguous row-major storage in a pooled GPUBuffer, f32 for data and i32/u32 for labels and indices.
// Views (reshape/flatten) share the storage; the buffer goes back to the pool when the last holder releases it.
import type { Runtime } from './runtime.js';
import { flatChunks } from './chunks.js';
import { fillWgsl } from './fill.wgsl.js';
import { FLAT_WG } from './workgroup.js';

export type DType = 'f32' | 'i32' | 'u32';
export type TypedArrayOf<D extends DType> = D extends 'f32' ? Float32Array : D extends 'i32' ? Int32Array : Uint32Array;

/** What autograd hangs on a tensor it produced (defined here so the runtime layer needs no autograd import). */
export interface GradFn {
  readonly name: string;
  readonly inputs: readonly Tensor[];
  /**
   * Returns the gradient for each input, computing only those with needs[i] (null elsewhere). Must not release
   * gradOutput or the inputs: backward() owns them.
   */
  backward(gradOutput: Tensor<'f32'>, needs: readonly boolean[]): (Tensor<'f32'> | null)[];
  /** Frees what the forward made only for backward (indices, batch statistics); never the inputs. */
  release(): void;
}

class Storage {
  refs = 1;
  constructor(
    readonly buffer: GPUBuffer,
    readonly byteLength: number,
  ) {}
}

let nextId = 1;

export class Tensor<D extends DType = DType> {
  readonly id = nextId++;
  readonly shape: readonly number[];
  readonly size: number;
  requiresGrad = false;
  grad: Tensor<'f32'> | null = null;
  gradFn: GradFn | null = null;
  /** Keep this intermediate alive through backward() (which otherwise frees the graph's intermediates). */
  retain = false;
  /** How many tape entries hold this tensor as an input (autograd bookkeeping). */
  tapeUses = 0;
  /** An untaped intermediate that tape entries still hold: backward() frees it after the last of them. */
  releaseWithGraph = false;
  private storage: Storage | null;

  private constructor(
    readonly rt: Runtime,
    storage: Storage,
    shape: readonly number[],
    readonly dtype: D,
    readonly label: string,
  ) {
    this.storage = storage;
    this.shape = Object.freeze([...shape]);
    this.size = numel(shape);
  }

  /** Uninitialised storage (contents are whatever the pooled buffer held). */
  static empty<D extends DType = 'f32'>(rt: Runtime, shape: readonly number[], dtype?: D, label = 'tensor'): Tensor<D> {
    checkShape(shape);
    const byteLength = numel(shape) * 4;
    const buffer = rt.pool.acquire(Math.max(4, byteLength), label);
    return new Tensor(rt, new Storage(buffer, byteLength), shape, (dtype ?? 'f32') as D, label);
  }

  static zeros<D extends DType = 'f32'>(rt: Runtime, shape: readonly number[], dtype?: D, label = 'zeros'): Tensor<D> {
    const t = Tensor.empty(rt, shape, dtype, label);
    rt.clear(t.buffer, 0, t.byteLength);
    return t;
  }

  static full(rt: Runtime, shape: readonly number[], value: number, label = 'full'): Tensor<'f32'> {
    const t = Tensor.empty(rt, shape, 'f32', label);
    t.fill(value);
    return t;
  }

  static fromArray(rt: Runtime, data: Float32Array | number[], shape?: readonly number[], label?: string): Tensor<'f32'>;
  static fromArray(rt: Runtime, data: Int32Array, shape?: readonly number[], label?: string): Tensor<'i32'>;
  static fromArray(rt: Runtime, data: Uint32Array, shape?: readonly number[], label?: string): Tensor<'u32'>;
  static fromArray(
    rt: Runtime,
    data: Float32Array | Int32Array | Uint32Array | number[],
    shape?: readonly number[],
    label = 'fromArray',
  ): Tensor {
    const arr = Array.isArray(data) ? Float32Array.from(data) : data;
    const s = shape ?? [arr.length];
    if (numel(s) !== arr.length) throw new Error(`fromArray: ${arr.length} values do not fill shape [${s.join(', ')}]`);
    const dtype: DType = arr instanceof Float32Array ? 'f32' : arr instanceof Int32Array ? 'i32' : 'u32';
    const t = Tensor.empty(rt, s, dtype, label);
    rt.write(t.buffer, 0, arr);
    return t;
  }

  get buffer(): GPUBuffer {
    if (!this.storage) throw new Error(`tensor ${this.label}#${this.id} [${this.shape.join(', ')}] was released and cannot be used`);
    return this.storage.buffer;
  }

  get byteLength(): number {
    return this.size * 4;
  }

  get released(): boolean {
    return this.storage === null;
  }

  /** Another tensor (a view, or the tensor this one views) holds the same storage: writing in place shows there too. */
  get sharesStorage(): boolean {
    return (this.storage?.refs ?? 1) > 1;
  }

  /** The binding of the whole tensor (a 0-element tensor binds 4 bytes: bindings may not be empty). */
  gpuBinding(): GPUBufferBinding {
    return { buffer: this.buffer, offset: 0, size: Math.max(4, this.byteLength) };
  }

  /** Binds elements [start, start + count) (used to split a tensor that exceeds the binding limit). */
  gpuBindingRange(startElement: number, count: number): GPUBufferBinding {
    return { buffer: this.buffer, offset: startElement * 4, size: Math.max(4, count * 4) };
  }

  /** Sets every element to `value` (interpreted in this tensor's dtype). */
  fill(value: number): this {
    const bits = new DataView(new ArrayBuffer(4));
    if (this.dtype === 'f32') bits.setFloat32(0, value, true);
    else if (this.dtype === 'i32') bits.setInt32(0, value, true);
    else bits.setUint32(0, value, true);
    for (const c of flatChunks(this.rt, this.size)) {
      this.rt.dispatch(fillWgsl, this.rt.grid(Math.ceil(c.count / FLAT_WG)), { out: this.gpuBindingRange(c.start, c.count) }, {
        n: c.count,
        bits: bits.getUint32(0, true),
      });
    }
    return this;
  }

  /** A tensor of another shape over the same storage (the caller keeps its own handle; both must be released). */
  view(shape: readonly number[]): Tensor<D> {
    const storage = this.storage;
    if (!storage) throw new Error(`tensor ${this.label}#${this.id} was released and cannot be viewed`);
    const resolved = resolveShape(shape, this.size);
    storage.refs++;
    return new Tensor(this.rt, storage, resolved, this.dtype, `${this.label}.view`);
  }

  async read(): Promise<TypedArrayOf<D>> {
    const bytes = await this.rt.read(this.buffer, 0, this.byteLength);
    return (this.dtype === 'f32' ? new Float32Array(bytes) : this.dtype === 'i32' ? new Int32Array(bytes) : new Uint32Array(bytes)) as TypedArrayOf<D>;
  }

  /** Reads a one-element tensor. */
  async item(): Promise<number> {
    if (this.size !== 1) throw new Error(`item() needs a one-element tensor, got shape [${this.shape.join(', ')}]`);
    return (await this.read())[0]!;
  }

  /** Gives the storage back to the pool once no view holds it. Releasing twice is a no-op. */
  release(): void {
    const s = this.storage;
    if (!s) return;
    this.storage = null;
    if (--s.refs === 0) this.rt.pool.release(s.buffer);
  }
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function checkShape(shape: readonly number[]): void {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new Error(`invalid tensor shape [${shape.join(', ')}]`);
  }
}

function resolveShape(shape: readonly number[], size: number): number[] {
  const inferred = shape.indexOf(-1);
  const out = [...shape];
  if (inferred >= 0) {
    const known = numel(shape.filter((_, i) => i !== inferred));
    if (known === 0 || size % known !== 0) throw new Error(`cannot view ${size} elements as [${shape.join(', ')}]`);
    out[inferred] = size / known;
  }
  checkShape(out);
  if (numel(out) !== size) throw new Error(`cannot view ${size} elements as [${shape.join(', ')}]`);
  return out;
}

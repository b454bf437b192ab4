// Reader for PyTorch checkpoints written by torch.save (zip format, PyTorch >= 1.6):
//   <archive>/data.pkl     pickled state dict; tensors refer to storages by persistent id
//   <archive>/data/<key>   raw storage bytes, one file per storage
//   <archive>/version, <archive>/byteorder (optional, "little" | "big")
// Web-standard APIs only: takes the file's bytes, runs in browsers.

import { unzipSync } from 'fflate';

import {
  PickleCallable,
  PickleDict,
  PickleError,
  PickleExtension,
  type PickleValue,
  describePickleValue,
  isTuple,
  unpickle,
} from './pickle.js';
import {
  DTYPE_BYTES,
  type DType,
  type StateDict,
  type TensorData,
  WeightFormatError,
  copyBytes,
  numElements,
  toFloat32,
  typedArrayFromBytes,
} from './state-dict.js';

export interface ReadPthOptions {
  /** Convert float16/bfloat16/float64 tensors to float32 (default true). Integer tensors are kept. */
  convertToFloat32?: boolean;
}

const STORAGE_DTYPES: Readonly<Record<string, DType>> = {
  FloatStorage: 'float32',
  DoubleStorage: 'float64',
  HalfStorage: 'float16',
  BFloat16Storage: 'bfloat16',
  LongStorage: 'int64',
  IntStorage: 'int32',
  ShortStorage: 'int16',
  CharStorage: 'int8',
  ByteStorage: 'uint8',
  BoolStorage: 'bool',
};

/** The storage class global, e.g. torch.FloatStorage (only used as a dtype tag in persistent ids). */
class StorageType extends PickleExtension {
  constructor(
    readonly name: string,
    readonly dtype: DType,
  ) {
    super();
  }
  get description(): string {
    return `torch.${this.name}`;
  }
}

/** One storage of the archive (data/<key>); several tensors may view the same storage. */
class StorageRef extends PickleExtension {
  readonly description = 'storage';
  constructor(
    readonly key: string,
    readonly dtype: DType,
    readonly numel: number,
    readonly bytes: Uint8Array,
  ) {
    super();
  }
}

/** A tensor as _rebuild_tensor_v2 describes it: a strided view into a storage. */
class TensorRef extends PickleExtension {
  readonly description = 'tensor';
  constructor(
    readonly storage: StorageRef,
    readonly offset: number,
    readonly size: number[],
    readonly stride: number[],
  ) {
    super();
  }
}

const LEGACY_MAGIC = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]; // 0x1950a86a20f9469cfc6c, LE

function startsWith(bytes: ArrayLike<number>, prefix: readonly number[], at = 0): boolean {
  if (bytes.length < at + prefix.length) return false;
  return prefix.every((b, i) => bytes[at + i] === b);
}

export function looksLikeZip(bytes: Uint8Array): boolean {
  return startsWith(bytes, [0x50, 0x4b, 0x03, 0x04]) || startsWith(bytes, [0x50, 0x4b, 0x05, 0x06]);
}

/** Legacy torch.save files start with a pickled magic number: PROTO 2, LONG1 10 bytes. */
export function looksLikeLegacyTorch(bytes: Uint8Array): boolean {
  return startsWith(bytes, [0x80, 0x02, 0x8a, 0x0a]) && startsWith(bytes, LEGACY_MAGIC, 4);
}

function hexPrefix(bytes: Uint8Array): string {
  return Array.from(bytes.subarray(0, 8), (b) => b.toString(16).padStart(2, '0')).join(' ');
}

/** Reads a torch.save zip checkpoint holding a state dict (a dict / OrderedDict of tensors). */
export function readPth(bytes: Uint8Array, options: ReadPthOptions = {}): StateDict {
  const convert = options.convertToFloat32 ?? true;
  const files = unzipCheckpoint(bytes);

  const pklNames = [...files.keys()].filter((n) => n === 'data.pkl' || n.endsWith('/data.pkl'));
  if (pklNames.length !== 1) {
    throw new WeightFormatError(
      pklNames.length === 0
        ? 'zip archive has no <archive>/data.pkl: not a PyTorch checkpoint'
        : `zip archive has several data.pkl entries (${pklNames.join(', ')})`,
    );
  }
  const pklName = pklNames[0]!;
  const prefix = pklName.slice(0, pklName.length - 'data.pkl'.length);

  const byteorderFile = files.get(`${prefix}byteorder`);
  const byteorder = byteorderFile ? new TextDecoder().decode(byteorderFile).trim() : 'little';
  if (byteorder !== 'little' && byteorder !== 'big') {
    throw new WeightFormatError(`unknown byteorder "${byteorder}" in ${prefix}byteorder`);
  }

  const storages = new Map<string, StorageRef>();
  const persistentLoad = (pid: PickleValue): PickleValue => {
    // ('storage', storage_type, key, location, numel)
    if (!isTuple(pid) || pid.length !== 5 || pid[0] !== 'storage') {
      throw new WeightFormatError(`unsupported persistent id in data.pkl (a ${describePickleValue(pid)})`);
    }
    const [, type, key, , numel] = pid;
    if (!(type instanceof StorageType) || typeof key !== 'string' || typeof numel !== 'number') {
      throw new WeightFormatError('malformed storage reference in data.pkl');
    }
    const cached = storages.get(key);
    if (cached) return cached;
    const name = `${prefix}data/${key}`;
    const data = files.get(name);
    if (!data) throw new WeightFormatError(`storage ${name} referenced by data.pkl is missing from the archive`);
    const needed = numel * DTYPE_BYTES[type.dtype];
    if (data.length < needed) {
      throw new WeightFormatError(
        `storage ${name} has ${data.length} bytes but holds ${numel} ${type.dtype} elements (${needed} bytes): truncated`,
      );
    }
    const ref = new StorageRef(key, type.dtype, numel, data);
    storages.set(key, ref);
    return ref;
  };

  let root: PickleValue;
  try {
    root = unpickle(files.get(pklName)!, { resolveGlobal, persistentLoad });
  } catch (e) {
    if (e instanceof PickleError) throw new WeightFormatError(`${pklName}: ${e.message}`);
    throw e;
  }

  const dict = asStateDict(root);
  const out: StateDict = new Map();
  for (const [key, ref] of dict) {
    let t = materialize(key, ref, byteorder === 'big');
    if (convert && (t.dtype === 'float16' || t.dtype === 'bfloat16' || t.dtype === 'float64')) {
      t = { dtype: 'float32', shape: t.shape, data: toFloat32(t) };
    }
    out.set(key, t);
  }
  return out;
}

function unzipCheckpoint(bytes: Uint8Array): Map<string, Uint8Array> {
  if (bytes.length === 0) throw new WeightFormatError('file is empty');
  if (looksLikeLegacyTorch(bytes)) {
    throw new WeightFormatError(
      'legacy torch.save format (pre-1.6); re-save with torch.save(..., _use_new_zipfile_serialization=True)',
    );
  }
  if (bytes.length < 4 && startsWith([0x50, 0x4b, 0x03, 0x04], Array.from(bytes))) {
    throw new WeightFormatError(`truncated file: only ${bytes.length} bytes, the start of a zip header`);
  }
  if (!looksLikeZip(bytes)) {
    const pickled = bytes[0] === 0x80 ? ' (it looks like a bare pickle)' : '';
    throw new WeightFormatError(
      `not a zip archive / not a PyTorch checkpoint${pickled}: starts with bytes ${hexPrefix(bytes)}`,
    );
  }
  if (!hasEndOfCentralDirectory(bytes)) {
    throw new WeightFormatError(
      `truncated file: zip archive of ${bytes.length} bytes has no end-of-central-directory record`,
    );
  }

  const sizes = new Map<string, number>();
  let entries: Record<string, Uint8Array>;
  try {
    entries = unzipSync(bytes, {
      filter: (f) => {
        // torch.save stores entries uncompressed; refuse a deflated entry claiming an absurd size.
        if (f.compression !== 0 && f.originalSize > 1024 * f.size + (1 << 20)) {
          throw new WeightFormatError(`zip entry ${f.name} claims to inflate ${f.size} bytes to ${f.originalSize}`);
        }
        sizes.set(f.name, f.originalSize);
        return true;
      },
    });
  } catch (e) {
    if (e instanceof WeightFormatError) throw e;
    throw new WeightFormatError(`corrupt zip archive: ${e instanceof Error ? e.message : String(e)}`);
  }
  const files = new Map<string, Uint8Array>();
  for (const [name, data] of Object.entries(entries)) {
    // fflate silently returns short data when an entry runs past the end of the file.
    if (data.length !== sizes.get(name)) {
      throw new WeightFormatError(
        `truncated file: zip entry ${name} has ${data.length} of its ${sizes.get(name)} bytes`,
      );
    }
    files.set(name, data);
  }
  return files;
}

function hasEndOfCentralDirectory(bytes: Uint8Array): boolean {
  // The 22-byte record sits at the end, followed by a comment of at most 65535 bytes.
  const last = bytes.length - 22;
  const first = Math.max(0, last - 0xffff);
  for (let i = last; i >= first; i--) {
    if (bytes[i] === 0x50 && bytes[i + 1] === 0x4b && bytes[i + 2] === 0x05 && bytes[i + 3] === 0x06) return true;
  }
  return false;
}

function resolveGlobal(module: string, name: string): PickleValue | undefined {
  if (module === 'collections' && name === 'OrderedDict') {
    return new PickleCallable('collections.OrderedDict', (args) => {
      const d = new PickleDict();
      if (args.length === 0) return d;
      const items = args[0];
      if (args.length === 1 && Array.isArray(items)) {
        for (const pair of items) {
          if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== 'string') {
            throw new WeightFormatError('collections.OrderedDict(...) with unsupported items');
          }
          d.set(pair[0], pair[1]!);
        }
        return d;
      }
      throw new WeightFormatError('collections.OrderedDict(...) with unsupported arguments');
    });
  }
  if (module === 'torch' && Object.prototype.hasOwnProperty.call(STORAGE_DTYPES, name)) {
    return new StorageType(name, STORAGE_DTYPES[name]!);
  }
  if (module === 'torch._utils') {
    switch (name) {
      case '_rebuild_tensor':
      case '_rebuild_tensor_v2':
        // (storage, storage_offset, size, stride[, requires_grad, backward_hooks[, metadata]])
        return new PickleCallable(`torch._utils.${name}`, (args) => rebuildTensor(args));
      case '_rebuild_parameter':
      case '_rebuild_parameter_with_state': {
        // (data, requires_grad, backward_hooks[, state]): a Parameter is just its tensor here.
        return new PickleCallable(`torch._utils.${name}`, (args) => {
          const data = args[0];
          if (!(data instanceof TensorRef)) throw new WeightFormatError(`${name} of a non-tensor`);
          return data;
        });
      }
    }
  }
  return undefined;
}

function intList(v: PickleValue | undefined, what: string): number[] {
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0)) {
    throw new WeightFormatError(`_rebuild_tensor_v2: ${what} is not a tuple of non-negative ints`);
  }
  return v as number[];
}

function rebuildTensor(args: readonly PickleValue[]): TensorRef {
  const [storage, offset, size, stride] = args;
  if (!(storage instanceof StorageRef)) throw new WeightFormatError('_rebuild_tensor_v2: first argument is not a storage');
  if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0) {
    throw new WeightFormatError('_rebuild_tensor_v2: bad storage offset');
  }
  const shape = intList(size, 'size');
  const strides = intList(stride, 'stride');
  if (shape.length !== strides.length) throw new WeightFormatError('_rebuild_tensor_v2: size and stride differ in rank');
  return new TensorRef(storage, offset, [...shape], [...strides]);
}

function asStateDict(root: PickleValue): Map<string, TensorRef> {
  if (!(root instanceof PickleDict)) {
    throw new WeightFormatError(`data.pkl does not hold a state dict (found a ${describePickleValue(root)})`);
  }
  const out = new Map<string, TensorRef>();
  const nonTensors: string[] = [];
  for (const [k, v] of root) {
    if (typeof k === 'string' && v instanceof TensorRef) out.set(k, v);
    else nonTensors.push(`${String(k)} (${describePickleValue(v)})`);
  }
  if (nonTensors.length === 0) return out;

  // A training checkpoint wrapping the state dict: refuse, but say which key to extract.
  const wrapped = [...root].find(([k, v]) => typeof k === 'string' && v instanceof PickleDict && v.size > 0);
  if (wrapped) {
    const k = String(wrapped[0]);
    throw new WeightFormatError(
      `data.pkl holds a checkpoint dict (keys: ${[...root.keys()].map(String).join(', ')}), not a plain state dict; ` +
        `re-save the state dict alone, e.g. torch.save(ckpt['${k}'], path)`,
    );
  }
  throw new WeightFormatError(
    `data.pkl is a dict but not a state dict: entries that are not tensors: ${nonTensors.slice(0, 5).join(', ')}`,
  );
}

/**
 * Copies a strided view of a storage into a contiguous row-major tensor. Strides are in elements;
 * a stride of 0 (expand) or a non-row-major order (transpose) is gathered element by element.
 */
function materialize(name: string, ref: TensorRef, bigEndian: boolean): TensorData {
  const { storage, offset, size, stride } = ref;
  const esize = DTYPE_BYTES[storage.dtype];
  const n = numElements(size);
  if (n > 0) {
    let last = offset;
    for (let i = 0; i < size.length; i++) last += (size[i]! - 1) * stride[i]!;
    if (last >= storage.numel) {
      throw new WeightFormatError(
        `tensor ${name}: view (offset ${offset}, size [${size.join(', ')}], stride [${stride.join(', ')}]) ` +
          `reaches element ${last} of a storage of ${storage.numel} elements`,
      );
    }
  }

  let contiguous = true;
  for (let i = size.length - 1, expect = 1; i >= 0; i--) {
    if (size[i] !== 1 && stride[i] !== expect) contiguous = false;
    expect *= size[i]!;
  }

  let bytes: Uint8Array;
  const src = storage.bytes;
  if (contiguous) {
    bytes = src.subarray(offset * esize, (offset + n) * esize);
  } else {
    bytes = new Uint8Array(n * esize);
    const rank = size.length;
    const index = new Array<number>(rank).fill(0);
    let srcElem = offset;
    for (let k = 0; k < n; k++) {
      const s = srcElem * esize;
      for (let b = 0; b < esize; b++) bytes[k * esize + b] = src[s + b]!;
      // Advance the multi-index odometer, last dimension fastest.
      for (let d = rank - 1; d >= 0; d--) {
        index[d]!++;
        srcElem += stride[d]!;
        if (index[d]! < size[d]!) break;
        srcElem -= stride[d]! * size[d]!;
        index[d] = 0;
      }
    }
  }
  if (bigEndian && esize > 1) {
    bytes = copyBytes(bytes);
    for (let i = 0; i < bytes.length; i += esize) bytes.subarray(i, i + esize).reverse();
  }
  return { dtype: storage.dtype, shape: [...size], data: typedArrayFromBytes(storage.dtype, bytes) };
}

// In-memory form of a model's weights, shared by the .pth and safetensors readers/writers.
// Web-standard APIs only (typed arrays): this module also runs in browsers.

export type DType =
  | 'float32'
  | 'float16'
  | 'bfloat16'
  | 'float64'
  | 'int64'
  | 'int32'
  | 'int16'
  | 'int8'
  | 'uint8'
  | 'bool';

/**
 * Element storage per dtype. float16/bfloat16 keep their raw bit patterns in a Uint16Array;
 * bool is one byte per element (0 or 1) in a Uint8Array.
 */
export type TensorArray =
  | Float32Array
  | Float64Array
  | BigInt64Array
  | Int32Array
  | Int16Array
  | Int8Array
  | Uint16Array
  | Uint8Array;

export interface TensorData {
  dtype: DType;
  shape: number[];
  /** Contiguous row-major elements (strides already applied), host byte order (little-endian). */
  data: TensorArray;
}

/** Tensor name → tensor. Map insertion order is the order of the source file. */
export type StateDict = Map<string, TensorData>;

/** Thrown by the pure parsers/serializers for malformed or unsupported weight data. */
export class WeightFormatError extends Error {
  override name = 'WeightFormatError';
}

export const DTYPE_BYTES: Readonly<Record<DType, number>> = {
  float32: 4,
  float16: 2,
  bfloat16: 2,
  float64: 8,
  int64: 8,
  int32: 4,
  int16: 2,
  int8: 1,
  uint8: 1,
  bool: 1,
};

export function isDType(s: string): s is DType {
  return Object.prototype.hasOwnProperty.call(DTYPE_BYTES, s);
}

export function numElements(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Typed arrays are host-endian; every supported platform is little-endian, but check once. */
export const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function assertLittleEndianHost(): void {
  if (!HOST_IS_LITTLE_ENDIAN) throw new WeightFormatError('big-endian hosts are not supported');
}

/** A fresh copy (Uint8Array.prototype.slice is not a copy on a Node Buffer, which subclasses it). */
export function copyBytes(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(bytes.byteLength);
  out.set(bytes);
  return out;
}

/**
 * Wraps little-endian element bytes in the typed array for `dtype`. Copies, so the result
 * is aligned and does not alias `bytes`.
 */
export function typedArrayFromBytes(dtype: DType, bytes: Uint8Array): TensorArray {
  assertLittleEndianHost();
  const size = DTYPE_BYTES[dtype];
  if (bytes.byteLength % size !== 0) {
    throw new WeightFormatError(`${bytes.byteLength} bytes is not a whole number of ${dtype} elements`);
  }
  const buf = copyBytes(bytes).buffer;
  switch (dtype) {
    case 'float32':
      return new Float32Array(buf);
    case 'float64':
      return new Float64Array(buf);
    case 'int64':
      return new BigInt64Array(buf);
    case 'int32':
      return new Int32Array(buf);
    case 'int16':
      return new Int16Array(buf);
    case 'int8':
      return new Int8Array(buf);
    case 'float16':
    case 'bfloat16':
      return new Uint16Array(buf);
    case 'uint8':
    case 'bool':
      return new Uint8Array(buf);
  }
}

/** The element bytes of `t` (little-endian), as a view: no copy. */
export function tensorBytes(t: TensorData): Uint8Array {
  assertLittleEndianHost();
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

/** Checks that `t.data` is the array type its dtype calls for and holds numElements(shape) elements. */
export function checkTensor(name: string, t: TensorData): void {
  const ok =
    (t.dtype === 'float32' && t.data instanceof Float32Array) ||
    (t.dtype === 'float64' && t.data instanceof Float64Array) ||
    (t.dtype === 'int64' && t.data instanceof BigInt64Array) ||
    (t.dtype === 'int32' && t.data instanceof Int32Array) ||
    (t.dtype === 'int16' && t.data instanceof Int16Array) ||
    (t.dtype === 'int8' && t.data instanceof Int8Array) ||
    ((t.dtype === 'float16' || t.dtype === 'bfloat16') && t.data instanceof Uint16Array) ||
    ((t.dtype === 'uint8' || t.dtype === 'bool') && t.data instanceof Uint8Array);
  if (!ok) throw new WeightFormatError(`tensor ${name}: dtype ${t.dtype} does not match its ${t.data.constructor.name}`);
  for (const d of t.shape) {
    if (!Number.isSafeInteger(d) || d < 0) throw new WeightFormatError(`tensor ${name}: bad shape [${t.shape.join(', ')}]`);
  }
  const n = numElements(t.shape);
  if (t.data.length !== n) {
    throw new WeightFormatError(
      `tensor ${name}: shape [${t.shape.join(', ')}] needs ${n} elements but data has ${t.data.length}`,
    );
  }
}

// IEEE half: 1 sign, 5 exponent, 10 mantissa bits.
export function float16BitsToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24; // zero or subnormal
  if (exp === 0x1f) return frac === 0 ? sign * Infinity : NaN;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** Element values as float32. Returns `t.data` itself (no copy) when it already is float32. */
export function toFloat32(t: TensorData): Float32Array {
  const d = t.data;
  switch (t.dtype) {
    case 'float32':
      return d as Float32Array;
    case 'float16': {
      const src = d as Uint16Array;
      const out = new Float32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = float16BitsToNumber(src[i]!);
      return out;
    }
    case 'bfloat16': {
      // bfloat16 is the top half of a float32.
      const src = d as Uint16Array;
      const bits = new Uint32Array(src.length);
      for (let i = 0; i < src.length; i++) bits[i] = src[i]! << 16;
      return new Float32Array(bits.buffer);
    }
    case 'int64': {
      const src = d as BigInt64Array;
      const out = new Float32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = Number(src[i]!);
      return out;
    }
    default:
      // Float64Array and the small integer arrays: assignment rounds to nearest float32.
      return Float32Array.from(d as ArrayLike<number>);
  }
}

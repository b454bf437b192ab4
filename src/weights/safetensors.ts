// safetensors: 8-byte little-endian header length N, N bytes of JSON header, then the data section.
// Header: { "<name>": { "dtype": "F32", "shape": [..], "data_offsets": [begin, end] }, ...,
//           "__metadata__"?: { "<key>": "<string>" } }, offsets relative to the data section.
// The spec requires the tensors to tile the data section exactly: no gaps, no overlaps.
// Web-standard APIs only: runs in browsers.

import {
  DTYPE_BYTES,
  type DType,
  type StateDict,
  WeightFormatError,
  checkTensor,
  numElements,
  tensorBytes,
  typedArrayFromBytes,
} from './state-dict.js';

export interface Safetensors {
  tensors: StateDict;
  metadata?: Record<string, string>;
}

const TO_ST: Readonly<Record<DType, string>> = {
  float32: 'F32',
  float16: 'F16',
  bfloat16: 'BF16',
  float64: 'F64',
  int64: 'I64',
  int32: 'I32',
  int16: 'I16',
  int8: 'I8',
  uint8: 'U8',
  bool: 'BOOL',
};
const FROM_ST: ReadonlyMap<string, DType> = new Map(Object.entries(TO_ST).map(([d, s]) => [s, d as DType]));

/** Same limit as the reference implementation: refuse absurd headers before decoding them. */
const MAX_HEADER_BYTES = 100_000_000;

export function looksLikeSafetensors(bytes: Uint8Array): boolean {
  if (bytes.length < 9) return false;
  const n = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  return n > 0n && n <= BigInt(bytes.length - 8) && bytes[8] === 0x7b; // '{'
}

interface Entry {
  name: string;
  dtype: DType;
  shape: number[];
  begin: number;
  end: number;
}

function isSafeNonNegInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

export function parseSafetensors(bytes: Uint8Array): Safetensors {
  if (bytes.length < 8) {
    throw new WeightFormatError(`truncated file: ${bytes.length} bytes is too short for a safetensors header length`);
  }
  const headerLen64 = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (headerLen64 > BigInt(bytes.length - 8)) {
    throw new WeightFormatError(
      `safetensors header length ${headerLen64} exceeds the ${bytes.length - 8} bytes after it (truncated or not a safetensors file)`,
    );
  }
  const headerLen = Number(headerLen64);
  if (headerLen > MAX_HEADER_BYTES) throw new WeightFormatError(`safetensors header of ${headerLen} bytes is too large`);

  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + headerLen)));
  } catch (e) {
    throw new WeightFormatError(`safetensors header is not valid UTF-8 JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw new WeightFormatError('safetensors header is not a JSON object');
  }

  const dataStart = 8 + headerLen;
  const dataLen = bytes.length - dataStart;
  let metadata: Record<string, string> | undefined;
  const entries: Entry[] = [];
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      metadata = parseMetadata(raw);
      continue;
    }
    entries.push(parseEntry(name, raw, dataLen));
  }

  // Tensors must tile [0, dataLen) exactly, in offset order.
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  let prev: Entry | undefined;
  for (const e of entries) {
    if (prev && e.begin < cursor) {
      throw new WeightFormatError(
        `tensors ${prev.name} and ${e.name} overlap (data_offsets [${prev.begin}, ${prev.end}] and [${e.begin}, ${e.end}])`,
      );
    }
    if (e.begin > cursor) {
      throw new WeightFormatError(
        `data section has a gap: bytes [${cursor}, ${e.begin}) before tensor ${e.name} belong to no tensor`,
      );
    }
    cursor = e.end;
    prev = e;
  }
  if (cursor !== dataLen) {
    throw new WeightFormatError(
      `data section has ${dataLen - cursor} trailing bytes (from ${cursor} to ${dataLen}) that belong to no tensor`,
    );
  }

  const tensors: StateDict = new Map();
  for (const e of entries) {
    const data = typedArrayFromBytes(e.dtype, bytes.subarray(dataStart + e.begin, dataStart + e.end));
    tensors.set(e.name, { dtype: e.dtype, shape: e.shape, data });
  }
  return metadata ? { tensors, metadata } : { tensors };
}

function parseMetadata(raw: unknown): Record<string, string> {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new WeightFormatError('safetensors __metadata__ is not an object');
  }
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
    if (typeof v !== 'string') throw new WeightFormatError(`safetensors __metadata__ value for ${k} is not a string`);
    out[k] = v;
  }
  return out;
}

function parseEntry(name: string, raw: unknown, dataLen: number): Entry {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new WeightFormatError(`tensor ${name}: header entry is not an object`);
  }
  const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
  if (typeof dtype !== 'string' || !FROM_ST.has(dtype)) {
    throw new WeightFormatError(`tensor ${name}: unsupported dtype ${JSON.stringify(dtype)}`);
  }
  if (!Array.isArray(shape) || !shape.every(isSafeNonNegInt)) {
    throw new WeightFormatError(`tensor ${name}: shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isSafeNonNegInt)) {
    throw new WeightFormatError(`tensor ${name}: data_offsets ${JSON.stringify(offsets)} is not a pair of non-negative integers`);
  }
  const [begin, end] = offsets as [number, number];
  if (begin > end) throw new WeightFormatError(`tensor ${name}: data_offsets [${begin}, ${end}] end before they begin`);
  if (end > dataLen) {
    throw new WeightFormatError(`tensor ${name} data_offsets [${begin}, ${end}] exceed the data section of ${dataLen} bytes`);
  }
  const dt = FROM_ST.get(dtype)!;
  const needed = numElements(shape) * DTYPE_BYTES[dt];
  if (needed !== end - begin) {
    throw new WeightFormatError(
      `tensor ${name}: dtype ${dtype} with shape [${shape.join(', ')}] needs ${needed} bytes ` +
        `but data_offsets [${begin}, ${end}] span ${end - begin}`,
    );
  }
  return { name, dtype: dt, shape: [...shape], begin, end };
}

/**
 * Serializes tensors in map order. The header is padded with spaces to a multiple of 8 bytes so
 * the data section starts 8-aligned.
 */
export function serializeSafetensors(tensors: StateDict, metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata) header['__metadata__'] = metadata;
  let offset = 0;
  const parts: Uint8Array[] = [];
  for (const [name, t] of tensors) {
    if (name === '__metadata__') throw new WeightFormatError('a tensor cannot be named __metadata__');
    checkTensor(name, t);
    const b = tensorBytes(t);
    header[name] = { dtype: TO_ST[t.dtype], shape: t.shape, data_offsets: [offset, offset + b.byteLength] };
    offset += b.byteLength;
    parts.push(b);
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) {
    const p = new Uint8Array(padded).fill(0x20);
    p.set(json);
    json = p;
  }
  const out = new Uint8Array(8 + json.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  let at = 8 + json.length;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

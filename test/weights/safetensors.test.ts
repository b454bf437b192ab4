import { describe, expect, it } from 'vitest';

import { readPth } from '../../src/weights/pth.js';
import { parseSafetensors, serializeSafetensors } from '../../src/weights/safetensors.js';
import { WeightFormatError, type StateDict, type TensorData } from '../../src/weights/state-dict.js';
import { describeDiff, fixture } from './helpers.js';

function sampleDict(): StateDict {
  const entries: [string, TensorData][] = [
    ['conv.weight', { dtype: 'float32', shape: [2, 1, 2], data: new Float32Array([1, -2.5, 3e-8, 1e30]) }],
    ['bn.num_batches_tracked', { dtype: 'int64', shape: [], data: new BigInt64Array([7n]) }],
    ['half', { dtype: 'float16', shape: [3], data: new Uint16Array([0x3c00, 0xc000, 0x7c00]) }],
    ['mask', { dtype: 'bool', shape: [2], data: new Uint8Array([1, 0]) }],
    ['0', { dtype: 'int32', shape: [1], data: new Int32Array([-5]) }], // integer-like key: order must still hold
    ['empty', { dtype: 'float64', shape: [0], data: new Float64Array(0) }],
  ];
  return new Map(entries);
}

/** A safetensors file from a literal header and a data section of `dataLen` bytes. */
function craft(header: unknown, dataLen: number, headerLenOverride?: number): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + dataLen);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLenOverride ?? json.length), true);
  out.set(json, 8);
  return out;
}

function err(b: Uint8Array): string {
  try {
    parseSafetensors(b);
  } catch (e) {
    expect(e).toBeInstanceOf(WeightFormatError);
    return (e as Error).message;
  }
  throw new Error('expected parseSafetensors to throw');
}

describe('safetensors', () => {
  it('round-trips: write, read, write again gives identical values and bytes', () => {
    const dict = sampleDict();
    const bytes = serializeSafetensors(dict, { format: 'pt' });
    const back = parseSafetensors(bytes);
    expect(back.metadata).toEqual({ format: 'pt' });
    expect(describeDiff(back.tensors, dict)).toEqual([]);
    expect(serializeSafetensors(back.tensors, back.metadata)).toEqual(bytes);
    const headerLen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect(headerLen % 8).toBe(0);
  });

  it('reads the file written by the fixture script and round-trips it byte for byte', () => {
    const file = fixture('small.expected.safetensors');
    const parsed = parseSafetensors(file);
    expect(parsed.metadata).toEqual({ source: 'make_weight_fixtures.py' });
    expect(parsed.tensors.get('1.num_batches_tracked')!.data[0]).toBe(12345678901234n);
    expect(describeDiff(parsed.tensors, readPth(fixture('small.pth'), { convertToFloat32: false }))).toEqual([]);
    // Same layout conventions (header padded to 8 with spaces, tensors in order) but different
    // JSON spacing, so compare the data sections.
    const again = serializeSafetensors(parsed.tensors, parsed.metadata);
    const dataOf = (b: Uint8Array): Uint8Array => b.subarray(8 + Number(new DataView(b.buffer, b.byteOffset).getBigUint64(0, true)));
    expect(dataOf(again)).toEqual(dataOf(file));
  });

  it('refuses a header length beyond the file', () => {
    expect(err(craft({}, 0, 1000))).toMatch(/header length 1000 exceeds the \d+ bytes after it/);
    expect(err(new Uint8Array(5))).toMatch(/truncated file/);
  });

  it('refuses data_offsets outside the data section', () => {
    const b = craft({ w: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, 8);
    expect(err(b)).toContain('tensor w data_offsets [0, 16] exceed the data section of 8 bytes');
  });

  it('refuses overlapping tensors', () => {
    const b = craft(
      {
        a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
        b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] },
      },
      12,
    );
    expect(err(b)).toMatch(/tensors a and b overlap \(data_offsets \[0, 8\] and \[4, 12\]\)/);
  });

  it('refuses a dtype/shape that does not match the byte length', () => {
    const b = craft({ w: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, 8);
    expect(err(b)).toMatch(/tensor w: dtype F32 with shape \[3\] needs 12 bytes but data_offsets \[0, 8\] span 8/);
  });

  it('refuses gaps and uncovered trailing bytes', () => {
    expect(err(craft({ w: { dtype: 'U8', shape: [2], data_offsets: [2, 4] } }, 4))).toMatch(/gap: bytes \[0, 2\)/);
    expect(err(craft({ w: { dtype: 'U8', shape: [2], data_offsets: [0, 2] } }, 4))).toMatch(/2 trailing bytes/);
  });

  it('refuses malformed headers', () => {
    expect(err(craft({ w: { dtype: 'F7', shape: [0], data_offsets: [0, 0] } }, 0))).toMatch(/unsupported dtype "F7"/);
    expect(err(craft({ w: { dtype: 'F32', shape: [-1], data_offsets: [0, 0] } }, 0))).toMatch(/shape \[-1\]/);
    expect(err(craft({ __metadata__: { a: 1 } }, 0))).toMatch(/__metadata__ value for a is not a string/);
    const notJson = craft({}, 0);
    notJson[8] = 0x5b; // '['
    expect(err(notJson)).toMatch(/not valid UTF-8 JSON|not a JSON object/);
  });

  it('refuses to serialize inconsistent tensors', () => {
    const bad: StateDict = new Map([['w', { dtype: 'float32', shape: [3], data: new Float32Array(2) }]]);
    expect(() => serializeSafetensors(bad)).toThrow(/tensor w: shape \[3\] needs 3 elements but data has 2/);
    const wrongType: StateDict = new Map([['w', { dtype: 'int64', shape: [1], data: new Float32Array(1) }]]);
    expect(() => serializeSafetensors(wrongType)).toThrow(/dtype int64 does not match its Float32Array/);
  });
});

import { describe, expect, it } from 'vitest';
import { CLASSES_METADATA_KEY, classNamesMetadata, readClassNames } from '../../src/weights/classes.js';
import { detectWeightFormat, readWeightBytes } from '../../src/weights/format.js';
import { parseSafetensors, serializeSafetensors } from '../../src/weights/safetensors.js';

describe('class names in weight-file metadata', () => {
  it('round-trips through a safetensors file under the key "classes"', () => {
    const meta = classNamesMetadata(['hotdog', 'not-hotdog']);
    expect(meta).toEqual({ [CLASSES_METADATA_KEY]: '["hotdog","not-hotdog"]' });
    const bytes = serializeSafetensors(new Map([['w', { dtype: 'float32', shape: [1], data: Float32Array.of(1) }]]), meta);
    expect(readClassNames(parseSafetensors(bytes).metadata)).toEqual(['hotdog', 'not-hotdog']);
  });

  it('absent: null; malformed: an error saying what is wrong', () => {
    expect(readClassNames(undefined)).toBeNull();
    expect(readClassNames({ other: 'x' })).toBeNull();
    expect(() => readClassNames({ classes: 'hotdog,not-hotdog' })).toThrow(/"classes" is not JSON/);
    expect(() => readClassNames({ classes: '[1,2]' })).toThrow(/JSON array of strings/);
    expect(() => readClassNames({ classes: '["a","a"]' })).toThrow(/repeat/);
    expect(() => readClassNames({ classes: '["a"]' })).toThrow(/at least 2 classes/);
    expect(() => classNamesMetadata(['a', ' '])).toThrow(/empty/);
  });

  it('weight bytes are recognised by content, then by name', () => {
    const st = serializeSafetensors(new Map([['w', { dtype: 'float32', shape: [1], data: Float32Array.of(1) }]]));
    expect(detectWeightFormat('anything', st)).toBe('safetensors');
    expect(detectWeightFormat('model.pth', new Uint8Array([1, 2, 3]))).toBe('pth');
    expect(detectWeightFormat('notes.txt', new TextEncoder().encode('hello'))).toBeUndefined();
    expect(() => readWeightBytes('notes.txt', new TextEncoder().encode('hello'))).toThrow(/neither a PyTorch checkpoint/);
    expect(() => readWeightBytes('empty.bin', new Uint8Array(0))).toThrow(/file is empty/);
    expect(readWeightBytes('x', st).tensors.get('w')!.shape).toEqual([1]);
  });
});

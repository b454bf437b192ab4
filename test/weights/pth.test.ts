import { zipSync } from 'fflate';
import { describe, expect, it } from 'vitest';

import { readPth } from '../../src/weights/pth.js';
import { parseSafetensors } from '../../src/weights/safetensors.js';
import { WeightFormatError, float16BitsToNumber, toFloat32 } from '../../src/weights/state-dict.js';
import { describeDiff, fixture } from './helpers.js';

describe('readPth on a torch.save state dict', () => {
  const pth = fixture('small.pth');

  it('matches the expected values exactly, dtypes as stored', () => {
    const got = readPth(pth, { convertToFloat32: false });
    const want = parseSafetensors(fixture('small.expected.safetensors')).tensors;
    expect(describeDiff(got, want)).toEqual([]);
  });

  it('converts float16/bfloat16/float64 to float32 like torch .float() does', () => {
    const got = readPth(pth);
    const want = parseSafetensors(fixture('small.expected-f32.safetensors')).tensors;
    expect(describeDiff(got, want)).toEqual([]);
    expect(got.get('half')!.dtype).toBe('float32');
    expect(got.get('double')!.dtype).toBe('float32');
  });

  it('keeps int64 as BigInt64Array, including 0-d num_batches_tracked', () => {
    const got = readPth(pth);
    const nbt = got.get('1.num_batches_tracked')!;
    expect(nbt.dtype).toBe('int64');
    expect(nbt.shape).toEqual([]);
    expect(nbt.data).toBeInstanceOf(BigInt64Array);
    expect(nbt.data[0]).toBe(12345678901234n);
    expect([...got.get('int64.neg')!.data]).toEqual([-1n, -(2n ** 62n)]);
  });

  it('honours strides, storage offsets, expand and shared storages', () => {
    const got = readPth(pth);
    // base = arange(40).reshape(5, 8) * 0.5 - 3.25
    const base = (r: number, c: number): number => (r * 8 + c) * 0.5 - 3.25;
    const tr = got.get('view.transposed')!;
    expect(tr.shape).toEqual([8, 5]);
    expect(tr.data[1 * 5 + 3]).toBe(base(3, 1));
    const st = got.get('view.strided')!; // base[1::2, 1::3]
    expect(st.shape).toEqual([2, 3]);
    expect([...st.data]).toEqual([base(1, 1), base(1, 4), base(1, 7), base(3, 1), base(3, 4), base(3, 7)]);
    expect([...got.get('view.expanded')!.data]).toEqual([1.5, -2, 7.25, 1.5, -2, 7.25]);
    const a = got.get('shared.a')!.data;
    const b = got.get('shared.b')!.data;
    expect(a[10 - 2]).toBe(b[0]); // both views of the same storage element 10
    expect(got.get('scalar')!.shape).toEqual([]);
    expect(got.get('empty')!.shape).toEqual([0, 3]);
  });

  it('reads an nn.Parameter as its tensor and keeps file order', () => {
    const got = readPth(pth);
    expect([...got.get('param')!.data]).toEqual([0.25, -0.5]);
    expect([...got.keys()].slice(0, 3)).toEqual(['0.weight', '0.bias', '1.weight']);
  });

  it('float16 special values decode as torch does', () => {
    const raw = readPth(pth, { convertToFloat32: false }).get('half')!;
    const vals = [...(raw.data as Uint16Array)].map(float16BitsToNumber);
    expect(vals.slice(0, 3)).toEqual([1.5, -2.25, 65504]);
    expect(vals[4]).toBe(Infinity);
    expect(Object.is(vals[5], -0)).toBe(true);
    expect(toFloat32(raw)[3]).toBeCloseTo(5.96e-8, 9); // subnormal
  });

  it('reads a big-endian archive (byteorder file) by swapping bytes', () => {
    const z = zipSync({
      'be/data.pkl': oneTensorPickle('FloatStorage', [2]),
      'be/byteorder': new TextEncoder().encode('big'),
      'be/data/0': new Uint8Array([0x3f, 0xc0, 0, 0, 0xc0, 0x10, 0, 0]), // 1.5, -2.25 big-endian
    });
    expect([...readPth(z).get('w')!.data]).toEqual([1.5, -2.25]);
  });
});

describe('readPth refuses bad input with a clear message', () => {
  const err = (bytes: Uint8Array): string => {
    try {
      readPth(bytes);
    } catch (e) {
      expect(e).toBeInstanceOf(WeightFormatError);
      return (e as Error).message;
    }
    throw new Error('expected readPth to throw');
  };

  it('truncated files, cut anywhere', () => {
    const pth = fixture('small.pth');
    for (const cut of [0, 3, 100, pth.length >> 1, pth.length - 30, pth.length - 1]) {
      expect(err(pth.subarray(0, cut))).toMatch(/truncated|empty/);
    }
  });

  it('random bytes', () => {
    let x = 12345;
    const rnd = Uint8Array.from({ length: 4096 }, () => ((x = (x * 1103515245 + 12345) >>> 0) >>> 24));
    expect(err(rnd)).toMatch(/not a zip archive \/ not a PyTorch checkpoint/);
  });

  it('a forbidden global, without executing it', () => {
    expect(err(fixture('malicious.pth'))).toMatch(/pickle global os\.system is not allowed/);
  });

  it('the legacy (pre-1.6) format', () => {
    expect(err(fixture('legacy.pth'))).toContain(
      'legacy torch.save format (pre-1.6); re-save with torch.save(..., _use_new_zipfile_serialization=True)',
    );
  });

  it('a checkpoint wrapping the state dict', () => {
    expect(err(fixture('checkpoint.pth'))).toMatch(/checkpoint dict \(keys: state_dict, epoch\).*ckpt\['state_dict'\]/);
  });

  it('a pickle that is not a state dict', () => {
    expect(err(fixture('list.pth'))).toMatch(/does not hold a state dict \(found a list\)/);
  });

  it('a zip without data.pkl', () => {
    expect(err(zipSync({ 'a/readme.txt': new Uint8Array([1]) }))).toMatch(/no <archive>\/data.pkl/);
  });

  it('a storage shorter than the tensor needs', () => {
    const z = zipSync({ 'a/data.pkl': oneTensorPickle('FloatStorage', [4]), 'a/data/0': new Uint8Array(8) });
    expect(err(z)).toMatch(/storage a\/data\/0 has 8 bytes but holds 4 float32 elements/);
  });

  it('a view reaching past its storage', () => {
    const z = zipSync({ 'a/data.pkl': oneTensorPickle('FloatStorage', [2], 3), 'a/data/0': new Uint8Array(8) });
    expect(err(z)).toMatch(/tensor w: view .* reaches element 4 of a storage of 2 elements/);
  });

  it('a data.pkl cut short inside a valid zip', () => {
    const pkl = oneTensorPickle('FloatStorage', [2]);
    const z = zipSync({ 'a/data.pkl': pkl.subarray(0, pkl.length - 10), 'a/data/0': new Uint8Array(8) });
    expect(err(z)).toMatch(/a\/data\.pkl: pickle data truncated/);
  });
});

/** Protocol-2 pickle of {'w': _rebuild_tensor_v2(storage '0' of numel elements, offset, (numel,), (1,), False, OrderedDict())}. */
function oneTensorPickle(storage: string, [numel]: [number], offset = 0): Uint8Array {
  const enc = new TextEncoder();
  const parts: number[] = [];
  const op = (...b: number[]): void => void parts.push(...b);
  const str = (s: string): void => {
    const b = enc.encode(s);
    op(0x58, b.length, 0, 0, 0, ...b); // BINUNICODE
  };
  const glob = (m: string, n: string): void => op(0x63, ...enc.encode(`${m}\n${n}\n`));
  op(0x80, 2); // PROTO 2
  op(0x7d); // EMPTY_DICT
  str('w');
  glob('torch._utils', '_rebuild_tensor_v2');
  op(0x28); // MARK
  op(0x28); // MARK
  str('storage');
  glob('torch', storage);
  str('0');
  str('cpu');
  op(0x4b, numel); // BININT1
  op(0x74); // TUPLE
  op(0x51); // BINPERSID
  op(0x4b, offset);
  op(0x4b, numel, 0x85); // (numel,)
  op(0x4b, 1, 0x85); // (1,)
  op(0x89); // NEWFALSE
  glob('collections', 'OrderedDict');
  op(0x29, 0x52); // EMPTY_TUPLE, REDUCE
  op(0x74); // TUPLE
  op(0x52); // REDUCE
  op(0x73); // SETITEM
  op(0x2e); // STOP
  return new Uint8Array(parts);
}

describe('readPth and parseSafetensors on corrupted bytes', () => {
  it('only ever throw WeightFormatError (never crash) when random bytes are overwritten', () => {
    let seed = 7;
    const rnd = (n: number): number => Math.floor(((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32) * n);
    const targets: [Uint8Array, (b: Uint8Array) => unknown][] = [
      [fixture('small.pth'), (b) => readPth(b)],
      [fixture('small.expected.safetensors'), (b) => parseSafetensors(b)],
    ];
    for (const [orig, parse] of targets) {
      for (let i = 0; i < 1500; i++) {
        const b = orig.slice();
        for (let j = 1 + rnd(4); j > 0; j--) b[rnd(b.length)] = rnd(256);
        try {
          parse(b);
        } catch (e) {
          if (!(e instanceof WeightFormatError)) throw e;
        }
      }
    }
  });
});

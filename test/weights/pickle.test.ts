import { describe, expect, it } from 'vitest';

import { PickleDict, PickleError, isTuple, unpickle, type PickleValue } from '../../src/weights/pickle.js';

const noGlobals = { resolveGlobal: (): PickleValue | undefined => undefined };
const enc = new TextEncoder();
const bytes = (...parts: (number | string)[]): Uint8Array =>
  new Uint8Array(parts.flatMap((p) => (typeof p === 'string' ? [...enc.encode(p)] : [p])));

function err(b: Uint8Array): string {
  try {
    unpickle(b, noGlobals);
  } catch (e) {
    expect(e).toBeInstanceOf(PickleError);
    return (e as Error).message;
  }
  throw new Error('expected unpickle to throw');
}

describe('restricted unpickler', () => {
  it('decodes the scalar, string and container opcodes', () => {
    // [None, True, False, -2 (BININT), 255 (BININT1), 65535 (BININT2), LONG1 -129, LONG1 2**64, 1.5, 'hé', (), (1,), {'k': [1, 2]}]
    const b = bytes(
      0x80, 2, 0x5d, 0x28,
      0x4e, 0x88, 0x89,
      0x4a, 0xfe, 0xff, 0xff, 0xff,
      0x4b, 255,
      0x4d, 0xff, 0xff,
      0x8a, 2, 0x7f, 0xff,
      0x8a, 9, 0, 0, 0, 0, 0, 0, 0, 0, 1,
      0x47, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0,
      0x8c, 3, 'h', 0xc3, 0xa9,
      0x29,
      0x4b, 1, 0x85,
      0x7d, 0x71, 0, 0x58, 1, 0, 0, 0, 'k', 0x5d, 0x4b, 1, 0x61, 0x4b, 2, 0x61, 0x73,
      0x65, 0x2e,
    );
    const v = unpickle(b, noGlobals) as PickleValue[];
    expect(v.slice(0, 10)).toEqual([null, true, false, -2, 255, 65535, -129, 2n ** 64n, 1.5, 'hé']);
    expect(isTuple(v[10]!)).toBe(true);
    expect(v[11]).toEqual([1]);
    const d = v[12] as PickleDict;
    expect(d).toBeInstanceOf(PickleDict);
    expect(d.get('k')).toEqual([1, 2]);
  });

  it('memo BINPUT/BINGET shares one object', () => {
    // ([] as memo 0, memo 0)
    const v = unpickle(bytes(0x80, 2, 0x5d, 0x71, 0, 0x68, 0, 0x86, 0x2e), noGlobals) as PickleValue[];
    expect(v[0]).toBe(v[1]);
  });

  it('refuses every global it was not given, naming it', () => {
    expect(err(bytes(0x80, 2, 'c', 'os\nsystem\n', 0x2e))).toMatch(/pickle global os\.system is not allowed/);
    // STACK_GLOBAL (protocol 4) route
    expect(err(bytes(0x80, 4, 0x8c, 8, 'builtins', 0x8c, 4, 'eval', 0x93, 0x2e))).toMatch(
      /pickle global builtins\.eval is not allowed/,
    );
  });

  it('refuses object-building opcodes', () => {
    expect(err(bytes(0x80, 2, 0x81, 0x2e))).toMatch(/unsupported pickle opcode NEWOBJ/);
    expect(err(bytes(0x80, 2, 0xff))).toMatch(/unknown pickle opcode 0xff/);
    expect(err(bytes(0x80, 2, 0x4b, 1, 0x29, 0x52, 0x2e))).toMatch(/REDUCE on a int, which is not callable/);
    expect(err(bytes(0x80, 2, 0x5d, 0x7d, 0x62, 0x2e))).toMatch(/BUILD on a list is not supported/);
  });

  it('refuses BINPERSID unless persistent ids are allowed', () => {
    expect(err(bytes(0x80, 2, 0x4b, 1, 0x51, 0x2e))).toMatch(/persistent ids are not allowed/);
  });

  it('reports truncation and malformed streams', () => {
    expect(err(bytes(0x80, 2, 0x58, 10, 0, 0, 0, 'ab'))).toMatch(/truncated: needed 10 more bytes/);
    expect(err(bytes(0x80, 2, 0x4e))).toMatch(/ended without a STOP/);
    expect(err(bytes(0x80, 2, 0x68, 7, 0x2e))).toMatch(/memo key 7 is undefined/);
    expect(err(bytes(0x80, 2, 0x74, 0x2e))).toMatch(/MARK missing/);
    expect(err(bytes(0x80, 2, 0x30, 0x2e))).toMatch(/stack underflow/);
    expect(err(bytes(0x80, 2, 0x4e, 0x4e, 0x2e))).toMatch(/non-singleton stack/);
    expect(err(bytes(0x80, 2, 0x8b, 0, 0, 1, 0))).toMatch(/integer of 65536 bytes is too large/);
  });
});

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { tensorBytes, type StateDict } from '../../src/weights/state-dict.js';

export function fixturePath(name: string): string {
  return fileURLToPath(new URL(`../../fixtures/weights/${name}`, import.meta.url));
}

export function fixture(name: string): Uint8Array {
  return new Uint8Array(readFileSync(fixturePath(name)));
}

/** Exact comparison: same names in the same order, same dtype, shape and element bytes. */
export function describeDiff(actual: StateDict, expected: StateDict): string[] {
  const diffs: string[] = [];
  const a = [...actual.keys()];
  const e = [...expected.keys()];
  if (a.join('\n') !== e.join('\n')) diffs.push(`keys differ:\n  actual   ${a.join(', ')}\n  expected ${e.join(', ')}`);
  for (const [name, want] of expected) {
    const got = actual.get(name);
    if (!got) continue;
    if (got.dtype !== want.dtype) diffs.push(`${name}: dtype ${got.dtype} != ${want.dtype}`);
    if (got.shape.join(',') !== want.shape.join(',')) diffs.push(`${name}: shape [${got.shape}] != [${want.shape}]`);
    if (got.data.constructor !== want.data.constructor) diffs.push(`${name}: ${got.data.constructor.name} != ${want.data.constructor.name}`);
    const gb = tensorBytes(got);
    const wb = tensorBytes(want);
    if (gb.length !== wb.length || gb.some((b, i) => b !== wb[i])) diffs.push(`${name}: element bytes differ`);
  }
  return diffs;
}

// Loads the ResNet-18 parity fixtures written by scripts/fixtures/make_resnet_fixtures.py.
import { readFileSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { parseSafetensors } from '../../src/nn/weights/safetensors.js';
import { toFloat32, type StateDict } from '../../src/nn/weights/state-dict.js';
import { readStateDictFile } from '../../src/node/weights-file.js';

const DIR = new URL('../../fixtures/resnet18/', import.meta.url);

/** The checkpoint as torch.save wrote it, read through the engine's .pth reader from a real file. */
export async function loadFixtureCheckpoint(): Promise<StateDict> {
  const dir = mkdtempSync(join(tmpdir(), 'resnet18-fixture-'));
  try {
    const path = join(dir, 'resnet18-seed0.pth');
    writeFileSync(path, gunzipSync(readFileSync(new URL('resnet18-seed0.pth.gz', DIR))));
    return await readStateDictFile(path);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export class Expected {
  private readonly dict: StateDict;
  constructor() {
    this.dict = parseSafetensors(new Uint8Array(readFileSync(new URL('expected.safetensors', DIR)))).tensors;
  }
  has(name: string): boolean {
    return this.dict.has(name);
  }
  f32(name: string): Float32Array {
    const t = this.dict.get(name);
    if (!t) throw new Error(`fixture has no ${name}`);
    return toFloat32(t);
  }
  shape(name: string): number[] {
    return this.dict.get(name)!.shape;
  }
  labels(): Int32Array {
    const t = this.dict.get('labels')!;
    return Int32Array.from(t.data as BigInt64Array, (v) => Number(v));
  }
}

/** The fixture's deterministic projection vectors: r_k[i] = ((i * 2654435761 + (k + 1) * 40503) mod 2^32) / 2^32 - 0.5. */
export function projections(values: ArrayLike<number>, before?: ArrayLike<number>, count = 4): number[] {
  const out: number[] = [];
  for (let k = 0; k < count; k++) {
    let s = 0;
    for (let i = 0; i < values.length; i++) {
      const r = ((i * 2654435761 + (k + 1) * 40503) % 4294967296) / 4294967296 - 0.5;
      s += (values[i]! - (before ? before[i]! : 0)) * r;
    }
    out.push(s);
  }
  return out;
}

/**
 * Compares an engine tensor with the fixture entry `${prefix}/${name}`: element by element where the fixture
 * holds it in full (max |a - b| / max |b|), else through the projections (max_k |Δproj_k| / max_k |proj_k|) and
 * the max magnitude. Returns the larger error.
 */
export function compareToFixture(exp: Expected, prefix: string, name: string, actual: Float32Array, before?: Float32Array): number {
  const full = `${prefix}/${name}`;
  if (exp.has(full)) {
    const ref = exp.f32(full);
    let maxDiff = 0;
    let maxRef = 0;
    for (let i = 0; i < ref.length; i++) {
      maxDiff = Math.max(maxDiff, Math.abs(actual[i]! - ref[i]!));
      maxRef = Math.max(maxRef, Math.abs(ref[i]!));
    }
    return maxRef === 0 ? maxDiff : maxDiff / maxRef;
  }
  const refProj = exp.f32(`proj/${full}`);
  const refMax = exp.f32(`absmax/${full}`)[0]!;
  const got = projections(actual, before, refProj.length);
  let maxDiff = 0;
  let maxRef = 0;
  got.forEach((v, k) => {
    maxDiff = Math.max(maxDiff, Math.abs(v - refProj[k]!));
    maxRef = Math.max(maxRef, Math.abs(refProj[k]!));
  });
  let absmax = 0;
  for (let i = 0; i < actual.length; i++) absmax = Math.max(absmax, Math.abs(actual[i]! - (before ? before[i]! : 0)));
  return Math.max(maxDiff / maxRef, Math.abs(absmax - refMax) / refMax);
}

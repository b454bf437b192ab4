// Loads the ResNet-18 parity fixtures written by scripts/fixtures/make_resnet_fixtures.py.
import { readFileSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { parseSafetensors } from '../../src/weights/safetensors.js';
import { toFloat32, type StateDict } from '../../src/weights/state-dict.js';
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

/** Whether every element is finite (pooled buffers can hold NaN: an element no kernel wrote shows up as one). */
function allFinite(values: ArrayLike<number>): boolean {
  for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i]!)) return false;
  return true;
}

/** max |a - b| / max |b|; Infinity when `actual` holds a NaN or an infinity, so no comparison can pass on one. */
export function relError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) throw new Error(`length ${actual.length} vs ${expected.length}`);
  if (!allFinite(actual)) return Infinity;
  let maxDiff = 0;
  let maxRef = 0;
  for (let i = 0; i < expected.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(actual[i]! - expected[i]!));
    maxRef = Math.max(maxRef, Math.abs(expected[i]!));
  }
  return maxRef === 0 ? maxDiff : maxDiff / maxRef;
}

/**
 * The entry with the largest error; a NaN error counts as the largest (a plain `b > a` comparison is false for NaN,
 * so a NaN would never be the worst and would pass unseen).
 */
export function worstOf(errors: Iterable<[string, number]>): [string, number] {
  let worst: [string, number] = ['', 0];
  for (const [name, err] of errors) {
    const e = Number.isNaN(err) ? Infinity : err;
    if (e > worst[1]) worst = [name, e];
  }
  return worst;
}

/**
 * Compares an engine gradient with the fixture entry `grad/${name}`: element by element where the fixture holds it
 * in full (max |a - b| / max |b|), else through the projections (max_k |Δproj_k| / max_k |proj_k|) and the max
 * magnitude. Returns the larger error; Infinity when `actual` holds a NaN or an infinity.
 */
export function compareGradient(exp: Expected, name: string, actual: Float32Array): number {
  const full = `grad/${name}`;
  if (!allFinite(actual)) return Infinity;
  if (exp.has(full)) return relError(actual, exp.f32(full));
  const ref = exp.f32(`proj/${full}`);
  const refMax = exp.f32(`absmax/${full}`)[0]!;
  let absmax = 0;
  for (let i = 0; i < actual.length; i++) absmax = Math.max(absmax, Math.abs(actual[i]!));
  return Math.max(relError(projections(actual), ref), Math.abs(absmax - refMax) / refMax);
}

/**
 * Compares a parameter after the SGD steps with the fixture entry `${prefix}/${name}`, two ways:
 * - param: the error relative to the parameter's scale, max |p - p_ref| / max |p_ref| (for projected tensors
 *   max_k |Δproj_k| / max_k |proj_k(p_ref)|, with proj(p_ref) = proj(before) + the fixture's proj(update));
 * - update: the same error relative to the size of the update (p_ref - before), a far stricter scale.
 */
export function compareParameter(exp: Expected, prefix: string, name: string, actual: Float32Array, before: Float32Array): { param: number; update: number } {
  const full = `${prefix}/${name}`;
  if (!allFinite(actual)) return { param: Infinity, update: Infinity };
  const update = (p: ArrayLike<number>): Float64Array => Float64Array.from({ length: before.length }, (_, i) => p[i]! - before[i]!);
  if (exp.has(full)) {
    const ref = exp.f32(full);
    return { param: relError(actual, ref), update: relError(update(actual), update(ref)) };
  }
  const refUpdateProj = exp.f32(`proj/${full}`);
  const gotUpdateProj = projections(actual, before);
  const beforeProj = projections(before);
  const refParamProj = beforeProj.map((v, k) => v + refUpdateProj[k]!);
  const gotParamProj = beforeProj.map((v, k) => v + gotUpdateProj[k]!);
  return { param: relError(gotParamProj, refParamProj), update: relError(gotUpdateProj, refUpdateProj) };
}

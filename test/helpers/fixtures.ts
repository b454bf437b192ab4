// PyTorch fixtures of the op tests (fixtures/ops/*.json, written by scripts/fixtures/): reading them and turning
// their tensors into GPU tensors.
import { expect } from 'vitest';
import type { Runtime } from '../../src/runtime/runtime.js';
import { Tensor } from '../../src/runtime/tensor.js';
import { maxRelError } from './gradcheck.js';
import { readRepoText } from './repo-file.js';

/** A tensor as the fixture scripts write it: the shape and the values in row-major order. */
export interface FixtureTensor {
  shape: number[];
  data: number[];
}

/** Parses fixtures/ops/<file> (relative to the repository, not the working directory). */
export function loadOpFixture<T>(file: string): T {
  return JSON.parse(readRepoText(`fixtures/ops/${file}`)) as T;
}

/** The fixture tensor as an f32 GPU tensor of the same shape. */
export function toTensor(rt: Runtime, f: FixtureTensor): Tensor<'f32'> {
  return Tensor.fromArray(rt, Float32Array.from(f.data), f.shape);
}

/** The fixture tensor (class labels) as an i32 GPU tensor of the same shape. */
export function toLabels(rt: Runtime, f: FixtureTensor): Tensor<'i32'> {
  return Tensor.fromArray(rt, Int32Array.from(f.data), f.shape);
}

/** A case of scripts/fixtures/make_conv_linear_fixtures.py: a layer's inputs, output and gradients (b, gb null without bias). */
export interface LayerFixture {
  name: string;
  x: FixtureTensor;
  w: FixtureTensor;
  b: FixtureTensor | null;
  y: FixtureTensor;
  gy: FixtureTensor;
  gx: FixtureTensor;
  gw: FixtureTensor;
  gb: FixtureTensor | null;
}

/**
 * Each GPU result has its fixture tensor's shape and a maxRelError against it below `bound`; releases the results
 * and returns the worst error (which the tests print, for the record).
 */
export async function expectFixtureOutputs(outs: [Tensor, FixtureTensor][], bound: number): Promise<number> {
  let worst = 0;
  for (const [got, want] of outs) {
    expect(got.shape).toEqual(want.shape);
    const err = maxRelError(await got.read(), want.data);
    expect(err).toBeLessThan(bound);
    worst = Math.max(worst, err);
    got.release();
  }
  return worst;
}

// The initialisation behind `--weights none` (resnet18 from scratch), checked against torch.nn.init's formulas:
// torchvision's ResNet re-initialises every conv with kaiming_normal_(mode='fan_out', nonlinearity='relu')
// (normal, std sqrt(2 / fan_out)); BatchNorm2d starts at weight 1, bias 0, running_mean 0, running_var 1; the head
// is nn.Linear's default (kaiming_uniform_(a=sqrt(5)): uniform with bound 1/sqrt(fan_in), the bias with the same
// bound). Draws are seeded, so each check is deterministic; its tolerance is 5 standard errors of the statistic
// under the stated distribution (a correct init misses by chance with probability about 6e-7 per check), while a
// wrong fan (fan_in for fan_out) or distribution (uniform for normal) misses by tens of standard errors.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Runtime } from '../../src/runtime/runtime.js';
import { Tensor } from '../../src/runtime/tensor.js';
import { fans, generator, kaimingNormalFanOut } from '../../src/nn/init.js';
import { Linear } from '../../src/nn/layers.js';
import { resnet18, type ResNet } from '../../src/nn/resnet.js';
import { testRuntime } from '../helpers/gpu.js';

let rt: Runtime;
let model: ResNet;
beforeAll(async () => {
  rt = await testRuntime();
  model = resnet18(rt, { numClasses: 2, seed: 0 }); // what finetune builds for --weights none
});
afterAll(() => model.release());

interface Stats {
  n: number;
  mean: number;
  std: number;
  maxAbs: number;
  /** Fraction of |x| below `t`. */
  below: (t: number) => number;
}

function stats(a: Float32Array): Stats {
  const n = a.length;
  let s = 0;
  for (const v of a) s += v;
  const mean = s / n;
  let q = 0;
  let maxAbs = 0;
  for (const v of a) {
    q += (v - mean) ** 2;
    maxAbs = Math.max(maxAbs, Math.abs(v));
  }
  return { n, mean, std: Math.sqrt(q / n), maxAbs, below: (t) => a.reduce((c, v) => c + (Math.abs(v) < t ? 1 : 0), 0) / n };
}

const K = 5; // standard errors
/** Standard error of the sample std relative to sigma, for a distribution with this kurtosis (normal 3, uniform 1.8). */
const stdRelSe = (n: number, kurtosis: number): number => Math.sqrt((kurtosis - 1) / (4 * n));
/** Standard error of an observed fraction p over n draws. */
const fracSe = (p: number, n: number): number => Math.sqrt((p * (1 - p)) / n);

/** Each deviation in standard errors; all must be below K. Returns the largest, which the tests print. */
function expectWithinK(z: Record<string, number>, what: string): number {
  for (const [k, v] of Object.entries(z)) expect(Math.abs(v), `${what} ${k} (in standard errors)`).toBeLessThan(K);
  return Math.max(...Object.values(z).map(Math.abs));
}

/** Checks a sample against N(0, sigma^2): mean, std and the mass within one sigma (0.6827; 0.577 for a uniform). */
function expectNormal(a: Float32Array, sigma: number, what: string): number {
  const s = stats(a);
  return expectWithinK(
    {
      mean: s.mean / (sigma / Math.sqrt(s.n)),
      std: (s.std / sigma - 1) / stdRelSe(s.n, 3),
      withinSigma: (s.below(sigma) - 0.682689) / fracSe(0.682689, s.n),
    },
    what,
  );
}

/** Checks a sample against U(-bound, bound): inside the bound and reaching it, mean, std bound/sqrt(3), half the mass below bound/2. */
function expectUniform(a: Float32Array, bound: number, what: string): number {
  const s = stats(a);
  const sigma = bound / Math.sqrt(3);
  expect(s.maxAbs, `${what} max |x|`).toBeLessThanOrEqual(bound);
  // P(max |x| < bound * (1 - 20 / n)) = (1 - 20 / n)^n < e^-20.
  expect(s.maxAbs, `${what} max |x|`).toBeGreaterThan(bound * (1 - 20 / s.n));
  return expectWithinK(
    {
      mean: s.mean / (sigma / Math.sqrt(s.n)),
      std: (s.std / sigma - 1) / stdRelSe(s.n, 1.8),
      // A normal of the same std would put 0.614 of its mass there.
      belowHalfBound: (s.below(bound / 2) - 0.5) / fracSe(0.5, s.n),
    },
    what,
  );
}

describe('initialisation for --weights none (torch.nn.init formulas)', () => {
  it('every conv: kaiming_normal_(mode=fan_out, nonlinearity=relu), std sqrt(2 / (Cout * KH * KW))', async () => {
    const convs = model.namedParameters().filter(([, p]) => p.shape.length === 4);
    expect(convs.length).toBe(20); // conv1, 16 block convs, 3 downsample convs
    const seen = new Set<number>();
    let worst = 0;
    for (const [name, p] of convs) {
      const sigma = Math.sqrt(2 / fans(p.shape).fanOut);
      expect(fans(p.shape).fanOut).toBe(p.shape[0]! * p.shape[2]! * p.shape[3]!);
      const w = (await p.read()) as Float32Array;
      worst = Math.max(worst, expectNormal(w, sigma, name));
      seen.add(w[0]!);
    }
    console.log(`conv init: worst deviation over 20 convs ${worst.toFixed(2)} standard errors (bound ${K})`);
    expect(seen.size).toBe(convs.length); // every conv draws its own values from the stream
  });

  it('kaiming_normal_ is reproducible from its seed and differs between seeds', async () => {
    const t = Tensor.empty(rt, [8, 4, 3, 3]);
    const draw = async (seed: number) => {
      kaimingNormalFanOut(t, generator(seed));
      return Array.from(await t.read());
    };
    const a = await draw(7);
    expect(await draw(7)).toEqual(a);
    expect(await draw(8)).not.toEqual(a);
    t.release();
  });

  it('every BatchNorm2d: weight 1, bias 0, running_mean 0, running_var 1, num_batches_tracked 0', async () => {
    const entries = model.stateEntries();
    const bns = entries.filter(([name]) => name.endsWith('running_mean')).map(([name]) => name.slice(0, -'running_mean'.length));
    expect(bns.length).toBe(20);
    const want: Record<string, number> = { weight: 1, bias: 0, running_mean: 0, running_var: 1 };
    for (const prefix of bns) {
      for (const [key, value] of Object.entries(want)) {
        const t = entries.find(([n]) => n === prefix + key)![1] as Tensor;
        expect(new Set(await t.read()), prefix + key).toEqual(new Set([value]));
      }
      expect(entries.find(([n]) => n === `${prefix}num_batches_tracked`)![1]).toMatchObject({ kind: 'counter', value: 0 });
    }
  });

  it("the head: nn.Linear(512, 2)'s default init, weight and bias uniform within 1/sqrt(512)", async () => {
    const bound = 1 / Math.sqrt(512);
    for (const p of [model.fc.weight, model.fc.bias!]) {
      const v = (await p.read()) as Float32Array;
      const s = stats(v);
      expect(s.maxAbs).toBeLessThanOrEqual(bound);
      // 1024 and 2 draws: too few for moments, but a fan_out bound (1/sqrt(2)) would exceed this at once.
      expect(s.maxAbs).toBeGreaterThan(p === model.fc.weight ? bound * 0.95 : 0);
    }
  });

  it("nn.Linear's default init on large layers: weight U(+-1/sqrt(in)), bias U(+-1/sqrt(in))", async () => {
    // A wide layer for the weight's statistics (600k draws) and a tall one for the bias (250k draws, fan_in 4: a
    // bias bounded by the fan_out 250000 would be 250 times too small).
    const wide = new Linear(rt, 1000, 600, { generator: generator(11) });
    const tall = new Linear(rt, 4, 250_000, { generator: generator(12) });
    const worst = Math.max(
      expectUniform((await wide.weight.read()) as Float32Array, 1 / Math.sqrt(1000), 'Linear(1000, 600).weight'),
      expectUniform((await tall.bias!.read()) as Float32Array, 1 / Math.sqrt(4), 'Linear(4, 250000).bias'),
      expectUniform((await tall.weight.read()) as Float32Array, 1 / Math.sqrt(4), 'Linear(4, 250000).weight'),
    );
    console.log(`Linear init: worst deviation ${worst.toFixed(2)} standard errors (bound ${K})`);
    wide.release();
    tall.release();
  });
});

import { describe, expect, it } from 'vitest';
import { deriveSeed, Random } from '../../src/util/random.js';
import {
  CenterCrop,
  centerCropBox,
  RandomHorizontalFlip,
  RandomResizedCrop,
  resizedShape,
  roundHalfEven,
  transformFromSpec,
  trainTransform,
  evalTransform,
  type TensorImage,
} from '../../src/image/transforms.js';
import type { RgbImage } from '../../src/image/image.js';

describe('Random', () => {
  it('is reproducible from its seed and differs between seeds', () => {
    const a = new Random(42);
    const b = new Random(42);
    const c = new Random(43);
    const xs = Array.from({ length: 100 }, () => a.nextUint32());
    expect(Array.from({ length: 100 }, () => b.nextUint32())).toEqual(xs);
    expect(Array.from({ length: 100 }, () => c.nextUint32())).not.toEqual(xs);
  });

  it('uniform, randint and shuffle stay in range and look uniform', () => {
    const r = new Random(7);
    const counts = new Array<number>(6).fill(0);
    let sum = 0;
    let lo = Infinity;
    let hi = -Infinity;
    for (let i = 0; i < 60000; i++) {
      const u = r.uniform(2, 5);
      lo = Math.min(lo, u);
      hi = Math.max(hi, u);
      sum += u;
      const k = r.randint(10, 15);
      counts[k - 10]!++;
    }
    expect(lo).toBeGreaterThanOrEqual(2);
    expect(lo).toBeLessThan(2.01);
    expect(hi).toBeLessThan(5);
    expect(hi).toBeGreaterThan(4.99);
    expect(counts.reduce((a, b) => a + b)).toBe(60000); // nothing outside [10, 15]
    expect(sum / 60000).toBeCloseTo(3.5, 1);
    for (const n of counts) expect(Math.abs(n - 10000)).toBeLessThan(500);
    expect(r.randint(3, 3)).toBe(3);
    expect(() => r.randint(4, 3)).toThrow();
    const p = r.permutation(50);
    expect([...p].sort((x, y) => x - y)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(p).not.toEqual(Array.from({ length: 50 }, (_, i) => i));
  });

  it('deriveSeed separates epochs and samples', () => {
    const seeds = new Set<number>();
    for (let e = 0; e < 20; e++) for (let i = 0; i < 200; i++) seeds.add(deriveSeed(1, e, i));
    expect(seeds.size).toBe(4000);
    expect(deriveSeed(1, 2, 3)).toBe(deriveSeed(1, 2, 3));
    expect(deriveSeed(1, 2, 3)).not.toBe(deriveSeed(2, 2, 3));
    expect(deriveSeed(2 ** 40 + 1)).not.toBe(deriveSeed(1));
  });
});

describe('torchvision rounding helpers', () => {
  it("rounds half to even like Python's round", () => {
    expect([0.5, 1.5, 2.5, 3.5, -0.5, -1.5, 58.5, 2.4, 2.6].map(roundHalfEven)).toEqual([0, 2, 2, 4, -0, -2, 58, 2, 3]);
  });
  it('Resize(int) truncates the long side', () => {
    expect(resizedShape(341, 256, 256)).toEqual([341, 256]);
    expect(resizedShape(500, 375, 256)).toEqual([341, 256]); // 256*500/375 = 341.33
    expect(resizedShape(300, 451, 224)).toEqual([224, 336]); // 336.74 -> 336
    expect(resizedShape(10, 20, [5, 7])).toEqual([7, 5]);
  });
  it('CenterCrop uses round((H - h) / 2) and pads small images with zeros', () => {
    expect(centerCropBox(256, 341, 224, 224)).toEqual({ top: 58, left: 16, height: 224, width: 224 });
    expect(centerCropBox(227, 229, 224, 224)).toEqual({ top: 2, left: 2, height: 224, width: 224 }); // 2.5 -> 2, 1.5 -> 2
    const img: RgbImage = { width: 2, height: 1, data: Uint8Array.from([10, 20, 30, 40, 50, 60]) };
    const out = new CenterCrop([3, 4]).apply(img) as RgbImage;
    // torchvision pads left 1, right 1, top 1, bottom 1 (floor half first).
    expect(Array.from(out.data)).toEqual([...new Array(12).fill(0), 0, 0, 0, 10, 20, 30, 40, 50, 60, 0, 0, 0, ...new Array(12).fill(0)]);
  });
});

describe('RandomResizedCrop.get_params', () => {
  const scale = [0.08, 1] as const;
  const ratio = [3 / 4, 4 / 3] as const;

  for (const [W, H] of [
    [256, 341],
    [382, 256],
    [224, 224],
    [37, 29],
  ] as const) {
    it(`samples area and aspect ratio in the documented ranges on ${W}x${H}`, () => {
      const rng = new Random(W * 1000 + H);
      const n = 4000;
      let fallbacks = 0;
      let minScale = Infinity;
      let maxScale = 0;
      let minLogRatio = Infinity;
      let maxLogRatio = -Infinity;
      let topFrac = 0;
      let counted = 0;
      for (let k = 0; k < n; k++) {
        const b = RandomResizedCrop.getParams(W, H, scale, ratio, rng);
        expect(b.top).toBeGreaterThanOrEqual(0);
        expect(b.left).toBeGreaterThanOrEqual(0);
        expect(b.top + b.height).toBeLessThanOrEqual(H);
        expect(b.left + b.width).toBeLessThanOrEqual(W);
        if (b.fallback) {
          fallbacks++;
          continue;
        }
        // w and h are rounded from the continuous sample: allow half a pixel on each side.
        const sLo = ((b.width - 0.5) * (b.height - 0.5)) / (W * H);
        const sHi = ((b.width + 0.5) * (b.height + 0.5)) / (W * H);
        expect(sHi).toBeGreaterThanOrEqual(scale[0]);
        expect(sLo).toBeLessThanOrEqual(scale[1]);
        const rLo = (b.width - 0.5) / (b.height + 0.5);
        const rHi = (b.width + 0.5) / (b.height - 0.5);
        expect(rHi).toBeGreaterThanOrEqual(ratio[0]);
        expect(rLo).toBeLessThanOrEqual(ratio[1]);
        const s = (b.width * b.height) / (W * H);
        minScale = Math.min(minScale, s);
        maxScale = Math.max(maxScale, s);
        const lr = Math.log(b.width / b.height);
        minLogRatio = Math.min(minLogRatio, lr);
        maxLogRatio = Math.max(maxLogRatio, lr);
        if (H > b.height) {
          topFrac += b.top / (H - b.height);
          counted++;
        }
      }
      // The whole documented ranges are reached ...
      expect(minScale).toBeLessThan(0.1);
      expect(maxScale).toBeGreaterThan(0.85);
      expect(minLogRatio).toBeLessThan(Math.log(0.8));
      expect(maxLogRatio).toBeGreaterThan(Math.log(1.25));
      // ... positions are uniform over the valid range ...
      expect(topFrac / counted).toBeGreaterThan(0.45);
      expect(topFrac / counted).toBeLessThan(0.55);
      // ... and with 10 attempts the fallback is rare (all 10 rejected: well under 1 %).
      expect(fallbacks / n).toBeLessThan(0.01);
    });
  }

  it('takes the centre-crop fallback when no attempt can fit (very wide image)', () => {
    const rng = new Random(1);
    for (let k = 0; k < 50; k++) {
      // Height 10: any crop of >= 8% of the area is taller than 10 px at these ratios.
      expect(RandomResizedCrop.getParams(1000, 10, scale, ratio, rng)).toEqual({ top: 0, left: 493, height: 10, width: 13, fallback: true });
      expect(RandomResizedCrop.getParams(10, 1000, scale, ratio, rng)).toEqual({ top: 493, left: 0, height: 13, width: 10, fallback: true });
    }
    // In-range aspect ratio but impossible scale: the whole image.
    expect(RandomResizedCrop.getParams(100, 90, [2, 3], ratio, rng)).toEqual({ top: 0, left: 0, height: 90, width: 100, fallback: true });
  });

  it("draws in torchvision's order and rounds with Python's round", () => {
    // A scripted generator: uniform() and randint() return planned values.
    const plan = { uniforms: [0.5, 0.0], ints: [3, 4] };
    const fake = {
      uniform: (lo: number, hi: number) => {
        const u = plan.uniforms.shift()!;
        return lo + (hi - lo) * u;
      },
      randint: (lo: number, hi: number) => {
        expect(lo).toBe(0);
        return Math.min(hi, plan.ints.shift()!);
      },
    } as unknown as Random;
    // area 400*400=160000, target = 160000 * (0.08 + 0.92 * 0.5) = 86400, aspect = 3/4:
    // w = round(sqrt(64800)) = round(254.56) = 255, h = round(sqrt(115200)) = round(339.41) = 339.
    const b = RandomResizedCrop.getParams(400, 400, scale, ratio, fake);
    expect(b).toEqual({ top: 3, left: 4, height: 339, width: 255, fallback: false });
  });

  it('the train transform output has the requested size and flips half of the time', () => {
    const img: RgbImage = { width: 50, height: 40, data: Uint8Array.from({ length: 6000 }, (_, i) => i % 251) };
    const t = trainTransform(32);
    const rng = new Random(3);
    const out = t.apply(img, rng) as TensorImage;
    expect([out.channels, out.height, out.width]).toEqual([3, 32, 32]);
    expect(transformFromSpec(t.spec).spec).toEqual(t.spec);
    expect(transformFromSpec(evalTransform().spec).spec).toEqual(evalTransform().spec);
    const flip = new RandomHorizontalFlip(0.5);
    const r2 = new Random(9);
    let flipped = 0;
    const small: RgbImage = { width: 2, height: 1, data: Uint8Array.from([1, 2, 3, 4, 5, 6]) };
    for (let k = 0; k < 2000; k++) if ((flip.apply(small, r2) as RgbImage).data[0] === 4) flipped++;
    expect(Math.abs(flipped - 1000)).toBeLessThan(120);
  });
});

// The bench's sampled correctness check (bench/lib/check.ts) against the full float64 references of the op tests:
// it passes exact and float32-rounded outputs and fails an output with one term missing. CPU only.
import { describe, expect, it } from 'vitest';
import { checkConv, checkMatmul, samplePositions } from '../../bench/lib/check.js';
import { convOutSize, pseudoRandom, type ConvDirection, type ConvShape } from '../../bench/lib/shapes.js';
import { conv2dBackwardRef, conv2dRef } from '../../src/kernels/conv2d/conv2d.reference.js';
import { conv2dGeometry } from '../../src/kernels/conv2d/geometry.js';
import { matmulRef } from '../../src/kernels/matmul/matmul.reference.js';

const SHAPES: ConvShape[] = [
  { label: '3x3 s1', cin: 5, cout: 6, hw: 9, k: 3, stride: 1, padding: 1 },
  { label: '3x3 s2', cin: 4, cout: 7, hw: 10, k: 3, stride: 2, padding: 1 },
  { label: '7x7 s2', cin: 3, cout: 4, hw: 16, k: 7, stride: 2, padding: 3 },
  { label: '1x1 s2', cin: 6, cout: 5, hw: 8, k: 1, stride: 2, padding: 0 },
];
const DIRECTIONS: ConvDirection[] = ['forward', 'backward-data', 'backward-weight'];

describe('bench check', () => {
  it('samples distinct positions in range, the first and last included', () => {
    const p = samplePositions(1000, 50);
    expect(new Set(p).size).toBe(52);
    expect(p).toContain(0);
    expect(p).toContain(999);
    expect(p.every((i) => i >= 0 && i < 1000)).toBe(true);
    expect(samplePositions(5, 50).sort()).toEqual([0, 1, 2, 3, 4]);
  });

  it('matmul: passes the reference rounded to float32, fails one entry off by one product', () => {
    const n = 48;
    const a = pseudoRandom(n * n, 1);
    const b = pseudoRandom(n * n, 2);
    const ref = Float32Array.from(matmulRef(Float64Array.from(a), Float64Array.from(b), n, n, n));
    expect(checkMatmul(ref, a, b, n).ok).toBe(true);
    const bad = ref.slice();
    bad[n * n - 1]! -= a[n * n - 1]! * b[n * n - 1]!;
    const r = checkMatmul(bad, a, b, n);
    expect(r.ok).toBe(false);
    expect(r.error).toMatch(/C\[47, 47\]/);
    const nan = ref.slice();
    nan[0] = NaN;
    expect(checkMatmul(nan, a, b, n).ok).toBe(false);
  });

  for (const shape of SHAPES) {
    for (const direction of DIRECTIONS) {
      it(`conv2d ${direction} ${shape.label}: passes the reference, fails a perturbed entry`, () => {
        const batch = 3;
        const o = convOutSize(shape);
        const x = pseudoRandom(batch * shape.cin * shape.hw ** 2, 1);
        const w = pseudoRandom(shape.cout * shape.cin * shape.k ** 2, 2);
        const gy = pseudoRandom(batch * shape.cout * o * o, 3);
        const g = conv2dGeometry([batch, shape.cin, shape.hw, shape.hw], [shape.cout, shape.cin, shape.k, shape.k], { stride: shape.stride, padding: shape.padding });
        const ref =
          direction === 'forward'
            ? conv2dRef(Float64Array.from(x), Float64Array.from(w), null, g)
            : conv2dBackwardRef(Float64Array.from(x), Float64Array.from(w), Float64Array.from(gy), g)[direction === 'backward-data' ? 'gx' : 'gw'];
        const out = Float32Array.from(ref);
        const ops = { x: direction === 'backward-data' ? null : x, w: direction === 'backward-weight' ? null : w, gy: direction === 'forward' ? null : gy };
        const good = checkConv(out, shape, direction, batch, ops);
        expect(good.ok, good.error).toBe(true);
        expect(good.samples).toBe(Math.min(out.length, 130));
        // Every sampled entry disagrees by 5% of its scale: all are caught.
        const bad = out.map((v) => v + 0.05 * (Math.abs(v) + 0.1));
        expect(checkConv(bad, shape, direction, batch, ops).ok).toBe(false);
        expect(checkConv(out.subarray(1), shape, direction, batch, ops).ok).toBe(false);
      });
    }
  }
});

import { describe, expect, it } from 'vitest';
import { Tensor } from '../../runtime/tensor.js';
import { sgdUpdate, type SgdHyper } from './sgd.js';
import { sgdReference } from './sgd.reference.js';
import { maxRelError, randn } from '../../../test/helpers/gradcheck.js';
import { testRuntime } from '../../../test/helpers/gpu.js';

const cases: [string, SgdHyper][] = [
  ['plain', { lr: 0.1, weightDecay: 0, momentum: 0, dampening: 0, nesterov: false }],
  ['weight decay', { lr: 0.05, weightDecay: 1e-3, momentum: 0, dampening: 0, nesterov: false }],
  ['momentum', { lr: 0.05, weightDecay: 1e-3, momentum: 0.9, dampening: 0, nesterov: false }],
  ['dampening', { lr: 0.05, weightDecay: 0, momentum: 0.9, dampening: 0.3, nesterov: false }],
  ['nesterov', { lr: 0.05, weightDecay: 1e-2, momentum: 0.9, dampening: 0, nesterov: true }],
];

describe('sgdUpdate', () => {
  // 1001 elements: scalar loads; 1000: vec4 loads (the same arithmetic per component).
  it.each(cases.flatMap(([name, h]) => [1001, 1000].map((n) => [name, n, h] as const)))('%s, %i elements: three steps match the float64 reference within 1e-6 (max abs / max ref)', async (_, n, h) => {
    const rt = await testRuntime();
    let pRef: Float64Array = Float64Array.from(randn(n, 1));
    let bRef: Float64Array | null = null;
    const p = Tensor.fromArray(rt, randn(n, 1));
    const buf = h.momentum ? Tensor.zeros(rt, [n]) : null;
    for (let step = 0; step < 3; step++) {
      const gs = randn(n, 10 + step);
      const g = Tensor.fromArray(rt, gs);
      sgdUpdate(p, g, h, buf, step === 0);
      ({ param: pRef, buffer: bRef } = sgdReference(pRef, gs, h, bRef));
      g.release();
    }
    expect(maxRelError(await p.read(), pRef)).toBeLessThan(1e-6);
    if (buf) expect(maxRelError(await buf.read(), bRef!)).toBeLessThan(1e-6);
    p.release();
    buf?.release();
  });
});

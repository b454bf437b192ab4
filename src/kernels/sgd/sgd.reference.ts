import type { SgdHyper } from './sgd.js';

/** torch.optim.SGD's update for one tensor, in float64; returns the new param and momentum buffer. */
export function sgdReference(
  param: ArrayLike<number>,
  grad: ArrayLike<number>,
  h: SgdHyper,
  buffer: ArrayLike<number> | null,
): { param: Float64Array; buffer: Float64Array | null } {
  const p = Float64Array.from(param as ArrayLike<number>);
  const buf = h.momentum !== 0 ? new Float64Array(p.length) : null;
  for (let i = 0; i < p.length; i++) {
    let g = grad[i]! + h.weightDecay * p[i]!;
    if (buf) {
      buf[i] = buffer ? h.momentum * buffer[i]! + (1 - h.dampening) * g : g;
      g = h.nesterov ? g + h.momentum * buf[i]! : buf[i]!;
    }
    p[i] = p[i]! - h.lr * g;
  }
  return { param: p, buffer: buf };
}

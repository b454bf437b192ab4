import { flatChunks } from '../../runtime/chunks.js';
import { dispatchFlat, flatLanes } from '../../runtime/flat.js';
import type { Tensor } from '../../runtime/tensor.js';
import { sgdUpdateKernel, sgdUpdateNoMomentumKernel } from './sgd.wgsl.js';

export interface SgdHyper {
  lr: number;
  weightDecay: number;
  momentum: number;
  dampening: number;
  nesterov: boolean;
}

/**
 * Updates `param` in place from `grad`. With momentum, `momentumBuffer` (same shape) holds the velocity;
 * `firstStep` initialises it from the gradient as torch does. No readback.
 */
export function sgdUpdate(param: Tensor, grad: Tensor, hyper: SgdHyper, momentumBuffer: Tensor | null, firstStep: boolean): void {
  if (grad.size !== param.size) throw new Error(`sgdUpdate: grad has ${grad.size} elements, param ${param.size}`);
  const rt = param.rt;
  for (const c of flatChunks(rt, param.size)) {
    const L = flatLanes(c.start, c.count);
    const common = { param: param.gpuBindingRange(c.start, c.count), grad: grad.gpuBindingRange(c.start, c.count) };
    if (hyper.momentum === 0) {
      dispatchFlat(rt, sgdUpdateNoMomentumKernel(L), L, c.count, common, { lr: hyper.lr, weightDecay: hyper.weightDecay });
    } else {
      if (!momentumBuffer) throw new Error('sgdUpdate: momentum needs a momentum buffer');
      dispatchFlat(
        rt,
        sgdUpdateKernel(L),
        L,
        c.count,
        { ...common, momentumBuffer: momentumBuffer.gpuBindingRange(c.start, c.count) },
        {
          lr: hyper.lr,
          weightDecay: hyper.weightDecay,
          momentum: hyper.momentum,
          dampening: hyper.dampening,
          nesterov: hyper.nesterov ? 1 : 0,
          firstStep: firstStep ? 1 : 0,
        },
      );
    }
  }
}

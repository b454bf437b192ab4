// What a conv2d lowering is: one way of computing some of the three passes (forward, data gradient, weight gradient)
// of a convolution. Each lowering is one file in this folder exporting a ConvLoweringDef, registered by one row of
// CONV_LOWERINGS (lowerings.ts); conv2d.ts asks the table which ones apply and the tuner which one to run.
import type { Runtime } from '../../runtime/runtime.js';
import type { Tensor } from '../../runtime/tensor.js';
import type { Conv2dGeometry, ConvTiling } from './geometry.js';

export type ConvPass = 'forward' | 'data' | 'weight';

export interface ConvLoweringDef<Name extends string = string> {
  /** The name a caller forces it by; tuner choices and run records carry it. */
  readonly name: Name;
  /**
   * Why this lowering cannot compute `pass` of `g` on this runtime, or null when it can (forcing an unsupported
   * lowering fails with this text). `hasBias`: the forward pass has a bias to add.
   */
  unsupported(rt: Runtime, g: Conv2dGeometry, pass: ConvPass, hasBias: boolean): string | null;
  /**
   * Whether 'auto' offers it to the tuner where it is supported (default: always). Lowerings that only pay off on
   * some adapters or shapes say so here; they can still be forced anywhere they are supported.
   */
  offered?(rt: Runtime, g: Conv2dGeometry, pass: ConvPass): boolean;
  /** It honours a forced register tiling (the `tiling` argument of the conv2d wrappers): only these are offered then. */
  readonly takesTiling?: boolean;
  /** y = conv2d(x, w) + b: [N, Cout, OH, OW]. */
  forward?(x: Tensor<'f32'>, w: Tensor<'f32'>, b: Tensor<'f32'> | null, g: Conv2dGeometry, tiling?: ConvTiling): Tensor<'f32'>;
  /** dL/dx from gy [N, Cout, OH, OW]: [N, Cin, H, W]. */
  data?(gy: Tensor<'f32'>, w: Tensor<'f32'>, g: Conv2dGeometry, tiling?: ConvTiling): Tensor<'f32'>;
  /** dL/dw from gy and x, summed over the batch in a fixed order: [Cout, Cin, KH, KW]. */
  weight?(gy: Tensor<'f32'>, x: Tensor<'f32'>, g: Conv2dGeometry, tiling?: ConvTiling): Tensor<'f32'>;
}

/** Whether a lowering computes this pass at all. */
export function hasPass(l: ConvLoweringDef, pass: ConvPass): boolean {
  return pass === 'forward' ? !!l.forward : pass === 'data' ? !!l.data : !!l.weight;
}

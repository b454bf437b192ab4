// adaptive_avg_pool2d (NCHW), forward and backward, as torch.nn.functional.adaptive_avg_pool2d.
// outputSize [1, 1] is the global average pool before ResNet's fc layer.
import { batchChunks } from '../../runtime/chunks.js';
import type { KernelDef } from '../../runtime/kernel.js';
import type { Runtime } from '../../runtime/runtime.js';
import { Tensor } from '../../runtime/tensor.js';
import { AVG_POOL_WG, adaptiveAvgPoolBackward, adaptiveAvgPoolBackwardGlobal, adaptiveAvgPoolForward } from './avg-pool.wgsl.js';

type Size2 = number | readonly [number, number];

function geometry(op: string, inputShape: readonly number[], outputSize: Size2) {
  if (inputShape.length !== 4) throw new Error(`${op}: expected an NCHW input, got [${inputShape.join(', ')}]`);
  const [N, C, H, W] = inputShape as [number, number, number, number];
  const [OH, OW] = typeof outputSize === 'number' ? [outputSize, outputSize] : outputSize;
  if (!(OH >= 1 && OW >= 1 && H >= 1 && W >= 1)) throw new Error(`${op}: cannot pool [${inputShape.join(', ')}] to ${OH}x${OW}`);
  return { N, C, H, W, OH, OW, inPer: C * H * W, outPer: C * OH * OW };
}

interface Operand {
  /** The kernel's binding name. */
  name: string;
  t: Tensor<'f32'>;
  /** Elements per sample. */
  per: number;
}

/** Records `def` batch slice by batch slice, one invocation per element of `dst`. */
function recordSliced(rt: Runtime, def: KernelDef, g: ReturnType<typeof geometry>, src: Operand, dst: Operand): void {
  for (const c of batchChunks(rt, g.N, [g.inPer, g.outPer])) {
    const n = c.count * dst.per;
    rt.dispatch(
      def,
      rt.grid(Math.ceil(n / AVG_POOL_WG)),
      { [src.name]: src.t.gpuBindingRange(c.start * src.per, c.count * src.per), [dst.name]: dst.t.gpuBindingRange(c.start * dst.per, n) },
      { n, H: g.H, W: g.W, OH: g.OH, OW: g.OW },
    );
  }
}

export function adaptiveAvgPool2dForward(x: Tensor<'f32'>, outputSize: Size2 = 1): Tensor<'f32'> {
  const rt = x.rt;
  const g = geometry('adaptiveAvgPool2dForward', x.shape, outputSize);
  const y = Tensor.empty(rt, [g.N, g.C, g.OH, g.OW], 'f32', 'adaptiveAvgPool.y');
  recordSliced(rt, adaptiveAvgPoolForward, g, { name: 'x', t: x, per: g.inPer }, { name: 'y', t: y, per: g.outPer });
  return y;
}

export function adaptiveAvgPool2dBackward(gy: Tensor<'f32'>, inputShape: readonly number[]): Tensor<'f32'> {
  const rt = gy.rt;
  if (gy.shape.length !== 4) throw new Error(`adaptiveAvgPool2dBackward: expected an NCHW gradient, got [${gy.shape.join(', ')}]`);
  const g = geometry('adaptiveAvgPool2dBackward', inputShape, [gy.shape[2]!, gy.shape[3]!]);
  if (gy.shape[0] !== g.N || gy.shape[1] !== g.C) throw new Error(`adaptiveAvgPool2dBackward: gradient [${gy.shape.join(', ')}] does not match input [${inputShape.join(', ')}]`);
  const gx = Tensor.empty(rt, inputShape, 'f32', 'adaptiveAvgPool.gx');
  if (g.OH === 1 && g.OW === 1) {
    const HW = g.H * g.W;
    const L = HW % 4 === 0 ? 4 : 1;
    for (const c of batchChunks(rt, g.N, [g.inPer, g.outPer])) {
      const planes = c.count * g.C;
      rt.dispatch(
        adaptiveAvgPoolBackwardGlobal(L),
        rt.grid(Math.ceil(planes / 64)),
        { gy: gy.gpuBindingRange(c.start * g.outPer, planes), gx: gx.gpuBindingRange(c.start * g.inPer, c.count * g.inPer) },
        { planes, HW },
      );
    }
    return gx;
  }
  recordSliced(rt, adaptiveAvgPoolBackward, g, { name: 'gy', t: gy, per: g.outPer }, { name: 'gx', t: gx, per: g.inPer });
  return gx;
}

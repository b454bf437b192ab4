// adaptive_avg_pool2d (NCHW), forward and backward, as torch.nn.functional.adaptive_avg_pool2d.
// outputSize [1, 1] is the global average pool before ResNet's fc layer.
import { batchChunks } from '../chunks.js';
import { Tensor } from '../tensor.js';
import { AVG_POOL_WG, adaptiveAvgPoolBackward, adaptiveAvgPoolForward } from './avg-pool.wgsl.js';

type Size2 = number | readonly [number, number];

function geometry(op: string, inputShape: readonly number[], outputSize: Size2) {
  if (inputShape.length !== 4) throw new Error(`${op}: expected an NCHW input, got [${inputShape.join(', ')}]`);
  const [N, C, H, W] = inputShape as [number, number, number, number];
  const [OH, OW] = typeof outputSize === 'number' ? [outputSize, outputSize] : outputSize;
  if (!(OH >= 1 && OW >= 1 && H >= 1 && W >= 1)) throw new Error(`${op}: cannot pool [${inputShape.join(', ')}] to ${OH}x${OW}`);
  return { N, C, H, W, OH, OW, inPer: C * H * W, outPer: C * OH * OW };
}

export function adaptiveAvgPool2dForward(x: Tensor<'f32'>, outputSize: Size2 = 1): Tensor<'f32'> {
  const rt = x.rt;
  const g = geometry('adaptiveAvgPool2dForward', x.shape, outputSize);
  const y = Tensor.empty(rt, [g.N, g.C, g.OH, g.OW], 'f32', 'adaptiveAvgPool.y');
  for (const c of batchChunks(rt, g.N, [g.inPer, g.outPer])) {
    const n = c.count * g.outPer;
    rt.dispatch(
      adaptiveAvgPoolForward,
      rt.grid(Math.ceil(n / AVG_POOL_WG)),
      { x: x.gpuBindingRange(c.start * g.inPer, c.count * g.inPer), y: y.gpuBindingRange(c.start * g.outPer, n) },
      { n, H: g.H, W: g.W, OH: g.OH, OW: g.OW },
    );
  }
  return y;
}

export function adaptiveAvgPool2dBackward(gy: Tensor<'f32'>, inputShape: readonly number[]): Tensor<'f32'> {
  const rt = gy.rt;
  if (gy.shape.length !== 4) throw new Error(`adaptiveAvgPool2dBackward: expected an NCHW gradient, got [${gy.shape.join(', ')}]`);
  const g = geometry('adaptiveAvgPool2dBackward', inputShape, [gy.shape[2]!, gy.shape[3]!]);
  if (gy.shape[0] !== g.N || gy.shape[1] !== g.C) throw new Error(`adaptiveAvgPool2dBackward: gradient [${gy.shape.join(', ')}] does not match input [${inputShape.join(', ')}]`);
  const gx = Tensor.empty(rt, inputShape, 'f32', 'adaptiveAvgPool.gx');
  for (const c of batchChunks(rt, g.N, [g.inPer, g.outPer])) {
    const n = c.count * g.inPer;
    rt.dispatch(
      adaptiveAvgPoolBackward,
      rt.grid(Math.ceil(n / AVG_POOL_WG)),
      { gy: gy.gpuBindingRange(c.start * g.outPer, c.count * g.outPer), gx: gx.gpuBindingRange(c.start * g.inPer, n) },
      { n, H: g.H, W: g.W, OH: g.OH, OW: g.OW },
    );
  }
  return gx;
}

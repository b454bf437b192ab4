// ResNet-18's distinct conv shapes at a 224x224 input, shared by the kernel benchmarks and the tfjs peer.
import { conv2dGeometry } from '../../src/kernels/conv2d/geometry.js';
import { convFlop as convPassFlop } from '../../src/kernels/workloads.js';

export interface ConvShape {
  label: string;
  cin: number;
  cout: number;
  /** Input height = width. */
  hw: number;
  k: number;
  stride: number;
  padding: number;
}

const shape = (label: string, cin: number, cout: number, hw: number, k: number, stride: number, padding: number): ConvShape => ({
  label,
  cin,
  cout,
  hw,
  k,
  stride,
  padding,
});

export const RESNET18_CONVS: readonly ConvShape[] = [
  shape('conv1 3->64 7x7 s2 @224', 3, 64, 224, 7, 2, 3),
  shape('layer1 64->64 3x3 s1 @56', 64, 64, 56, 3, 1, 1),
  shape('layer2 64->128 3x3 s2 @56', 64, 128, 56, 3, 2, 1),
  shape('layer2 128->128 3x3 s1 @28', 128, 128, 28, 3, 1, 1),
  shape('layer2.down 64->128 1x1 s2 @56', 64, 128, 56, 1, 2, 0),
  shape('layer3 128->256 3x3 s2 @28', 128, 256, 28, 3, 2, 1),
  shape('layer3 256->256 3x3 s1 @14', 256, 256, 14, 3, 1, 1),
  shape('layer3.down 128->256 1x1 s2 @28', 128, 256, 28, 1, 2, 0),
  shape('layer4 256->512 3x3 s2 @14', 256, 512, 14, 3, 2, 1),
  shape('layer4 512->512 3x3 s1 @7', 512, 512, 7, 3, 1, 1),
  shape('layer4.down 256->512 1x1 s2 @14', 256, 512, 14, 1, 2, 0),
];

export type ConvDirection = 'forward' | 'backward-data' | 'backward-weight';
export const CONV_DIRECTIONS: readonly ConvDirection[] = ['forward', 'backward-data', 'backward-weight'];

export function convOutSize(c: ConvShape): number {
  return Math.floor((c.hw + 2 * c.padding - c.k) / c.stride) + 1;
}

/** Direct-convolution FLOPs (2 per multiply-add), the same for all three directions (src/kernels/workloads.ts). */
export function convFlop(c: ConvShape, batch: number): number {
  return convPassFlop(conv2dGeometry([batch, c.cin, c.hw, c.hw], [c.cout, c.cin, c.k, c.k], { stride: c.stride, padding: c.padding }));
}

export { pseudoRandom } from '../../src/util/pseudo-random.js';

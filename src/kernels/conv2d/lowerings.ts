// The table of conv2d lowerings: one row per lowering (its file exports the ConvLoweringDef). The order is the order
// of preference before the tuner has measured a shape: the first row that is supported and offered is the default.
import { col2imLowering } from './col2im.js';
import { im2colLowering } from './im2col.js';
import { im2colTiledLowering } from './im2col-tiled.js';
import { implicitLowering } from './implicit.js';
import { implicitTiledLowering } from './implicit-tiled.js';
import type { ConvLoweringDef } from './lowering.js';
import { winograd2Lowering, winograd4Lowering } from './winograd.js';
import { winograd2TiledLowering, winograd4TiledLowering } from './winograd-tiled.js';

export const CONV_LOWERINGS = [
  winograd4Lowering, // F(4x4, 3x3), texture GEMM (CPU drivers)
  winograd2Lowering, // F(2x2, 3x3), texture GEMM
  col2imLowering, // data gradient with few input channels: storage GEMM + col2im
  implicitTiledLowering, // implicit GEMM on the tiled GPU GEMM, windows gathered in place (offered on GPUs)
  implicitLowering, // register-tile implicit GEMM over a padded copy: any shape, any adapter
  im2colLowering, // im2col textures + texture GEMM
  winograd4TiledLowering, // F(4x4, 3x3) with buffer transforms, the per-position GEMMs on the tiled GPU GEMM (GPUs)
  winograd2TiledLowering, // F(2x2, 3x3), likewise
  im2colTiledLowering, // im2col into a buffer + the tiled GPU GEMM (GPUs)
] as const satisfies readonly ConvLoweringDef[];

export type ConvLowering = (typeof CONV_LOWERINGS)[number]['name'];

export function convLoweringDef(name: string): ConvLoweringDef | undefined {
  return (CONV_LOWERINGS as readonly ConvLoweringDef[]).find((l) => l.name === name);
}

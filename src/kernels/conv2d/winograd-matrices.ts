// Winograd minimal-filtering matrices for 3x3 convolutions (Lavin & Gray, "Fast Algorithms for Convolutional
// Neural Networks"): a 1-D correlation of m outputs with an r-tap filter is y = AT [(G g) * (BT d)] on
// alpha = m + r - 1 inputs; the 2-D form nests it, Y = AT [(G g GT) * (BT d B)] A.
//
// All four sets come from the Toom-Cook construction on the points {0, 1, -1, 2, -1/2, infinity} (the first
// alpha - 1 finite points): scripts/winograd/winograd_matrices.py derives them exactly (rational arithmetic),
// checks the identity and measures the float32 error. Among point sets of small binary fractions these gave the
// lowest float32 error for F(4,3) (the common 0, +-1, +-2 has about 2.3x more; measured with 64 input channels,
// max |err| / max |y|: F(4,3) 1.6e-6, F(3,4) 1.1e-6, F(2,3) 3.2e-7, F(3,2) 5.1e-7; direct float32 8.7e-8).
//
// F(m, 3) computes m x m outputs of a 3x3 convolution (forward pass and data gradient). F(3, m) computes the 3x3
// weight gradient from an m x m tile of the output gradient (the "filter") and an alpha x alpha input patch.
// BT depends only on the points, so both share it.

export type Matrix = readonly (readonly number[])[];

export interface WinogradMatrices {
  /** Outputs per tile side. */
  m: number;
  /** Filter taps per side. */
  r: number;
  /** Tile side of the transformed domain, m + r - 1. */
  alpha: number;
  AT: Matrix;
  G: Matrix;
  BT: Matrix;
}

const BT6: Matrix = [
  [1, 3 / 2, -2, -3 / 2, 1, 0],
  [0, -1, -5 / 2, -1 / 2, 1, 0],
  [0, 1, 1 / 2, -5 / 2, 1, 0],
  [0, -1 / 2, -1, 1 / 2, 1, 0],
  [0, 2, -1, -2, 1, 0],
  [0, 1, 3 / 2, -2, -3 / 2, 1],
];

const BT4: Matrix = [
  [-1, 0, 1, 0],
  [0, 1, 1, 0],
  [0, -1, 1, 0],
  [0, -1, 0, 1],
];

/** F(4x4, 3x3). */
export const F43: WinogradMatrices = {
  m: 4,
  r: 3,
  alpha: 6,
  AT: [
    [1, 1, 1, 1, 1, 0],
    [0, 1, -1, 2, -1 / 2, 0],
    [0, 1, 1, 4, 1 / 4, 0],
    [0, 1, -1, 8, -1 / 8, 1],
  ],
  G: [
    [1, 0, 0],
    [-1 / 3, -1 / 3, -1 / 3],
    [1 / 3, -1 / 3, 1 / 3],
    [1 / 15, 2 / 15, 4 / 15],
    [-16 / 15, 8 / 15, -4 / 15],
    [0, 0, 1],
  ],
  BT: BT6,
};

/** F(3x3, 4x4): the weight gradient from 4x4 output-gradient tiles. */
export const F34: WinogradMatrices = {
  m: 3,
  r: 4,
  alpha: 6,
  AT: [
    [1, 1, 1, 1, 1, 0],
    [0, 1, -1, 2, -1 / 2, 0],
    [0, 1, 1, 4, 1 / 4, 1],
  ],
  G: [
    [1, 0, 0, 0],
    [-1 / 3, -1 / 3, -1 / 3, -1 / 3],
    [1 / 3, -1 / 3, 1 / 3, -1 / 3],
    [1 / 15, 2 / 15, 4 / 15, 8 / 15],
    [-16 / 15, 8 / 15, -4 / 15, 2 / 15],
    [0, 0, 0, 1],
  ],
  BT: BT6,
};

/** F(2x2, 3x3). */
export const F23: WinogradMatrices = {
  m: 2,
  r: 3,
  alpha: 4,
  AT: [
    [1, 1, 1, 0],
    [0, 1, -1, 1],
  ],
  G: [
    [-1, 0, 0],
    [1 / 2, 1 / 2, 1 / 2],
    [1 / 2, -1 / 2, 1 / 2],
    [0, 0, 1],
  ],
  BT: BT4,
};

/** F(3x3, 2x2): the weight gradient from 2x2 output-gradient tiles. */
export const F32: WinogradMatrices = {
  m: 3,
  r: 2,
  alpha: 4,
  AT: [
    [1, 1, 1, 0],
    [0, 1, -1, 0],
    [0, 1, 1, 1],
  ],
  G: [
    [-1, 0],
    [1 / 2, 1 / 2],
    [1 / 2, -1 / 2],
    [0, 1],
  ],
  BT: BT4,
};

/** The pair used for a tile size m: F(m, 3) for the forward pass and data gradient, F(3, m) for the weights. */
export function winogradPair(m: 2 | 4): { conv: WinogradMatrices; weightGrad: WinogradMatrices } {
  return m === 4 ? { conv: F43, weightGrad: F34 } : { conv: F23, weightGrad: F32 };
}

import type { KernelDef } from '../../runtime/kernel.js';
import type { Matrix, WinogradMatrices } from './winograd-matrices.js';

// Winograd transforms of 3x3 stride-1 convolutions (the GEMM between them is the texture GEMM of
// src/kernels/matmul/texture-gemm.wgsl.ts). Notation: F(m, 3), alpha = m + 2, T tiles of m x m outputs; position
// pos = i * alpha + j of the alpha x alpha transformed tile. Each transformed operand is one rgba32float texture
// with one layer per position, in the texture GEMM's layouts (a texel holds 4 consecutive values of the last index):
//   weights  U[pos][k][n]   = (G g GT)[i][j]           k, n = (ci, co) forward; (co, ci) of the rotated filter for
//                                                      the data gradient
//   input    V[pos][t][c]   = (BT d B)[i][j]           d = the alpha x alpha input patch of tile t, channel c
//   product  M[pos][t][n]   = sum_k V[pos][t][k] U[pos][k][n]   (the GEMM)
//   output   y = AT M A     (m x m outputs of tile t)
// and for the weight gradient, with F(3, m):
//   input    V'[pos][c][t]  = (BT d B)[i][j]           (channel-major: the reduction runs over tiles)
//   gradient Q[pos][t][co]  = (G gy GT)[i][j]          gy = the m x m tile t of the output gradient
//   product  W[pos][c][co]  = sum_t V'[pos][c][t] Q[pos][t][co]
//   output   gw = AT W A    (3 x 3)
// (W is a buffer: the weight gradient adds batch slices in it.) Values outside the input, and channels or tiles in
// the padding of a GEMM's reduction dimension, are written as zeros, so the padding adds nothing to the products.
// The matrix products are unrolled at generation time with the constant coefficients (zero terms dropped); each
// invocation transforms 4 channels (or 4 tiles) at once as vec4s, one texel per position.

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

function literal(c: number): string {
  const s = Math.fround(c).toPrecision(9);
  return s.includes('.') || s.includes('e') ? s : `${s}.0`;
}

/** Sum of coefficient * term over the nonzero coefficients, in WGSL. */
function combination(coeffs: readonly number[], term: (i: number) => string, zero: string): string {
  const parts: string[] = [];
  coeffs.forEach((c, i) => {
    if (c === 0) return;
    const sign = c < 0 ? '-' : '+';
    const mag = Math.abs(c);
    parts.push(`${sign} ${mag === 1 ? term(i) : `${literal(mag)} * ${term(i)}`}`);
  });
  if (!parts.length) return zero;
  const s = parts.join(' ');
  return s.startsWith('+ ') ? s.slice(2) : s;
}

/**
 * Statements computing out = L D R^T with D[k][l] given by `d(k, l)` (L: p x a, R: q x b): the result is in
 * variables named `${name}${i}_${j}`.
 */
function transform2d(L: Matrix, R: Matrix, d: (k: number, l: number) => string, name: string, zero: string): string[] {
  const b = R[0]!.length;
  const lines: string[] = [];
  for (const i of range(L.length)) {
    for (const l of range(b)) lines.push(`  let ${name}t${i}_${l} = ${combination(L[i]!, (k) => d(k, l), zero)};`);
  }
  for (const i of range(L.length)) {
    for (const j of range(R.length)) lines.push(`  let ${name}${i}_${j} = ${combination(R[j]!, (l) => `${name}t${i}_${l}`, zero)};`);
  }
  return lines;
}

const cache = new Map<string, KernelDef>();
function cached(key: string, make: () => KernelDef): KernelDef {
  let def = cache.get(key);
  if (!def) cache.set(key, (def = make()));
  return def;
}

const flatIndex = /* wgsl */ `@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u`;
const flatI = `let i = gid.x + gid.y * nwg.x * 64u;`;

/** U[pos][k][n] = (G g GT)[pos] for the 3x3 filters g of (k, n..n+3); flip != 0: the data gradient's rotated filter. */
export function winogradWeightTransformKernel(f: WinogradMatrices): KernelDef {
  return cached(`w${f.m}`, () => {
    const taps = range(9).map(
      (t) => `  let g${t} = vec4f(${range(4).map((j) => `select(0.0, w[b${j} + select(${t}u, ${8 - t}u, params.flip != 0u)], live && l${j})`).join(', ')});`,
    );
    const cols = range(4).map((j) =>
      [
        `  let l${j} = nq * 4u + ${j}u < params.N;`,
        `  let n${j} = min(nq * 4u + ${j}u, params.N - 1u);`,
        `  let b${j} = (select(n${j}, kc, params.flip != 0u) * params.cin + select(kc, n${j}, params.flip != 0u)) * 9u;`,
      ].join('\n'),
    );
    const body = transform2d(f.G, f.G, (k, l) => `g${k * 3 + l}`, 'u', 'vec4f(0.0)');
    const stores = range(f.alpha).flatMap((i) => range(f.alpha).map((j) => `  textureStore(U, vec2u(nq, k), ${i * f.alpha + j}u, u${i}_${j});`));
    return {
      name: `winogradWeightTransform_F${f.m}x3`,
      wgsl: /* wgsl */ `
// w: [Cout][Cin][3][3]. Forward: k = ci, n = co (K = Cin, N = Cout); flip != 0 (data gradient): k = co, n = ci and
// the filter rotated by 180 degrees. Kp rows and Nq texel columns (zeros past K and N).
struct Params { K: u32, N: u32, Kp: u32, Nq: u32, cin: u32, flip: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var U: texture_storage_2d_array<rgba32float, write>;

@compute @workgroup_size(64)
fn main(${flatIndex}) {
  ${flatI}
  if (i >= params.Kp * params.Nq) { return; }
  let k = i / params.Nq;
  let nq = i - k * params.Nq;
  let live = k < params.K;
  let kc = min(k, params.K - 1u);
${cols.join('\n')}
${taps.join('\n')}
${body.join('\n')}
${stores.join('\n')}
}
`,
    };
  });
}

/**
 * Bounds of the alpha rows and columns of a patch whose corner is (y0, x0): for row k, `ry${s}k` (inside the
 * input) and `oy${s}k` (the clamped row's offset); for column k, `rx${s}k` and `ox${s}k`.
 */
function patchBounds(alpha: number, y0: string, x0: string, s = ''): string[] {
  const lines: string[] = [];
  for (const k of range(alpha)) {
    lines.push(`  let ry${s}${k} = ${y0} + ${k} >= 0 && ${y0} + ${k} < i32(params.H);`);
    lines.push(`  let oy${s}${k} = u32(clamp(${y0} + ${k}, 0, i32(params.H) - 1)) * params.W;`);
    lines.push(`  let rx${s}${k} = ${x0} + ${k} >= 0 && ${x0} + ${k} < i32(params.W);`);
    lines.push(`  let ox${s}${k} = u32(clamp(${x0} + ${k}, 0, i32(params.W) - 1));`);
  }
  return lines;
}

/**
 * For the 4 channels cq*4 .. cq*4+3 of sample n: cJ says whether channel J exists (C need not be a multiple of 4) and
 * pJ is the offset of its H x W plane, clamped to the last channel so that loads stay in bounds; the caller selects
 * zero where !cJ.
 */
function channelQuadPlanes(): string[] {
  return range(4).flatMap((j) => [
    `  let c${j} = cq * 4u + ${j}u < params.C;`,
    `  let p${j} = (n * params.C + min(cq * 4u + ${j}u, params.C - 1u)) * params.H * params.W;`,
  ]);
}

const tileParams = `C: u32, H: u32, W: u32, padTop: i32, padLeft: i32, tilesW: u32, tilesPerSample: u32, T: u32`;

/**
 * V[pos][t][c] = (BT d B)[pos] of the input patch of tile t (4 channels per texel): tiles t < T (the GEMM's rows
 * past T are not written: their products are not stored), channel groups cq < Cq (Cq * 4 >= C, zeros past C).
 */
export function winogradInputTransformKernel(f: WinogradMatrices): KernelDef {
  return cached(`in${f.m}x${f.r}`, () => {
    const a = f.alpha;
    const loads = range(a).flatMap((k) =>
      range(a).map((l) => {
        const comps = range(4).map((j) => `select(0.0, X[p${j} + oy${k} + ox${l}], ry${k} && rx${l} && c${j})`);
        return `  let d${k}_${l} = vec4f(${comps.join(', ')});`;
      }),
    );
    const body = transform2d(f.BT, f.BT, (k, l) => `d${k}_${l}`, 'v', 'vec4f(0.0)');
    const stores = range(a).flatMap((i) => range(a).map((j) => `  textureStore(V, vec2u(cq, t), ${i * a + j}u, v${i}_${j});`));
    return {
      name: `winogradInputTransform_F${f.m}x3`,
      wgsl: /* wgsl */ `
// X: [N][C][H][W] (a batch slice); tile t = (n, ty, tx) covers outputs (ty*${f.m}.., tx*${f.m}..) and reads the
// ${a}x${a} patch at (ty*${f.m} - padTop, tx*${f.m} - padLeft), zero outside the input.
struct Params { ${tileParams}, Cq: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var V: texture_storage_2d_array<rgba32float, write>;

@compute @workgroup_size(64)
fn main(${flatIndex}) {
  ${flatI}
  if (i >= params.T * params.Cq) { return; }
  let t = i / params.Cq;
  let cq = i - t * params.Cq;
  let n = t / params.tilesPerSample;
  let r = t - n * params.tilesPerSample;
  let ty = r / params.tilesW;
  let tx = r - ty * params.tilesW;
  let y0 = i32(ty * ${f.m}u) - params.padTop;
  let x0 = i32(tx * ${f.m}u) - params.padLeft;
${patchBounds(a, 'y0', 'x0').join('\n')}
${channelQuadPlanes().join('\n')}
${loads.join('\n')}
${body.join('\n')}
${stores.join('\n')}
}
`,
    };
  });
}

/**
 * V'[pos][c][t] = (BT d B)[pos] of the patch of tile t in channel c (channel-major, 4 consecutive tiles per vec4,
 * zeros for tiles past T up to Tq * 4), for the weight gradient. Channels c < C.
 */
export function winogradInputTransposedTransformKernel(f: WinogradMatrices): KernelDef {
  return cached(`inT${f.r}`, () => {
    const step = f.r; // tiles are f.r x f.r tiles of the output gradient
    const a = f.alpha;
    const perTile = range(4).flatMap((j) => [
      `  let t${j} = tq * 4u + ${j}u;`,
      `  let v${j} = t${j} < params.T;`,
      `  let n${j} = min(t${j}, params.T - 1u) / params.tilesPerSample;`,
      `  let r${j} = min(t${j}, params.T - 1u) - n${j} * params.tilesPerSample;`,
      `  let y0_${j} = i32((r${j} / params.tilesW) * ${step}u) - params.padTop;`,
      `  let x0_${j} = i32((r${j} % params.tilesW) * ${step}u) - params.padLeft;`,
      `  let p${j} = (n${j} * params.C + c) * params.H * params.W;`,
      ...patchBounds(a, `y0_${j}`, `x0_${j}`, `_${j}_`),
    ]);
    const loads = range(a).flatMap((k) =>
      range(a).map((l) => {
        const comps = range(4).map((j) => `select(0.0, X[p${j} + oy_${j}_${k} + ox_${j}_${l}], ry_${j}_${k} && rx_${j}_${l} && v${j})`);
        return `  let d${k}_${l} = vec4f(${comps.join(', ')});`;
      }),
    );
    const body = transform2d(f.BT, f.BT, (k, l) => `d${k}_${l}`, 'v', 'vec4f(0.0)');
    const stores = range(a).flatMap((i) => range(a).map((j) => `  textureStore(V, vec2u(tq, c), ${i * a + j}u, v${i}_${j});`));
    return {
      name: `winogradInputTransposedTransform_F3x${f.r}`,
      wgsl: /* wgsl */ `
// As winogradInputTransform, but stored channel-major for the weight gradient's GEMM (the reduction runs over
// tiles): texel (tq, c) holds tiles 4tq .. 4tq+3.
struct Params { ${tileParams}, Tq: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var V: texture_storage_2d_array<rgba32float, write>;

@compute @workgroup_size(64)
fn main(${flatIndex}) {
  ${flatI}
  if (i >= params.C * params.Tq) { return; }
  let c = i / params.Tq;
  let tq = i - c * params.Tq;
${perTile.join('\n')}
${loads.join('\n')}
${body.join('\n')}
${stores.join('\n')}
}
`,
    };
  });
}

/**
 * Q[pos][t][co] = (G gy GT)[pos] of the m x m output-gradient tile t (tile-major, 4 channels per vec4), for the
 * weight gradient with F(3, m). Rows t < rows (zeros past T: the GEMM's reduction padding).
 */
export function winogradGradTransformKernel(f: WinogradMatrices): KernelDef {
  return cached(`gy${f.r}`, () => {
    const m = f.r; // the gradient tile is the "filter" of F(3, m)
    const loads = range(m).flatMap((k) =>
      range(m).map((l) => {
        const comps = range(4).map((j) => `select(0.0, G[p${j} + (oy + ${k}u) * params.W + ox + ${l}u], live && oy + ${k}u < params.H && ox + ${l}u < params.W && c${j})`);
        return `  let d${k}_${l} = vec4f(${comps.join(', ')});`;
      }),
    );
    const body = transform2d(f.G, f.G, (k, l) => `d${k}_${l}`, 'q', 'vec4f(0.0)');
    const a = f.alpha;
    const stores = range(a).flatMap((i) => range(a).map((j) => `  textureStore(Q, vec2u(cq, t), ${i * a + j}u, q${i}_${j});`));
    return {
      name: `winogradGradTransform_F3x${m}`,
      wgsl: /* wgsl */ `
// G: the output gradient [N][C][H][W] (H, W: the output size); tile t = (n, ty, tx) is rows ty*${m}.., columns
// tx*${m}.. (zero past the edge).
struct Params { C: u32, H: u32, W: u32, tilesW: u32, tilesPerSample: u32, T: u32, rows: u32, Cq: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> G: array<f32>;
@group(0) @binding(2) var Q: texture_storage_2d_array<rgba32float, write>;

@compute @workgroup_size(64)
fn main(${flatIndex}) {
  ${flatI}
  if (i >= params.rows * params.Cq) { return; }
  let t = i / params.Cq;
  let cq = i - t * params.Cq;
  let live = t < params.T;
  let tc = min(t, params.T - 1u);
  let n = tc / params.tilesPerSample;
  let r = tc - n * params.tilesPerSample;
  let oy = (r / params.tilesW) * ${m}u;
  let ox = (r % params.tilesW) * ${m}u;
${channelQuadPlanes().join('\n')}
${loads.join('\n')}
${body.join('\n')}
${stores.join('\n')}
}
`,
    };
  });
}

/** y = AT M A for tile t and 4 output channels (M[pos][t][co] from the GEMM's texture). */
export function winogradOutputTransformKernel(f: WinogradMatrices): KernelDef {
  return cached(`out${f.m}`, () => {
    const a = f.alpha;
    const loads = range(a).flatMap((i) => range(a).map((j) => `  let s${i}_${j} = textureLoad(M, vec2u(cq, t), ${i * a + j}u, 0);`));
    const body = transform2d(f.AT, f.AT, (k, l) => `s${k}_${l}`, 'y', 'vec4f(0.0)');
    const stores = range(f.m).flatMap((i) =>
      range(f.m).map(
        (j) => `  if (oy + ${i}u < params.H && ox + ${j}u < params.W) {
    let at = base + (oy + ${i}u) * params.W + ox + ${j}u;
    for (var c = 0u; c < 4u; c++) { Y[at + c * plane] = y${i}_${j}[c]; }
  }`,
      ),
    );
    return {
      name: `winogradOutputTransform_F${f.m}x3`,
      wgsl: /* wgsl */ `
// Y: [N][Cout][H][W] (H, W: the output size; a batch slice), Cout = 4 * Cq.
struct Params { H: u32, W: u32, tilesW: u32, tilesPerSample: u32, T: u32, Cq: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var M: texture_2d_array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;

@compute @workgroup_size(64)
fn main(${flatIndex}) {
  ${flatI}
  if (i >= params.T * params.Cq) { return; }
  let t = i / params.Cq;
  let cq = i - t * params.Cq;
  let n = t / params.tilesPerSample;
  let r = t - n * params.tilesPerSample;
  let oy = (r / params.tilesW) * ${f.m}u;
  let ox = (r % params.tilesW) * ${f.m}u;
  let plane = params.H * params.W;
  let base = (n * params.Cq * 4u + cq * 4u) * plane;
${loads.join('\n')}
${body.join('\n')}
${stores.join('\n')}
}
`,
    };
  });
}

/** gw[co][ci] = AT W A (3 x 3) for 4 output channels; W[pos][ci][co] with Cin rows of rowQ vec4s per position. */
export function winogradWeightGradOutputKernel(f: WinogradMatrices): KernelDef {
  return cached(`gwout${f.r}`, () => {
    const a = f.alpha;
    const loads = range(a).flatMap((i) => range(a).map((j) => `  let s${i}_${j} = Wt[(${i * a + j}u * params.Cin + ci) * params.rowQ + cq];`));
    const body = transform2d(f.AT, f.AT, (k, l) => `s${k}_${l}`, 'g', 'vec4f(0.0)');
    const stores = range(3).flatMap((i) =>
      range(3).map((j) => `  for (var c = 0u; c < 4u; c++) { GW[((cq * 4u + c) * params.Cin + ci) * 9u + ${i * 3 + j}u] = g${i}_${j}[c]; }`),
    );
    return {
      name: `winogradWeightGradOutput_F3x${f.r}`,
      wgsl: /* wgsl */ `
// GW: [Cout][Cin][3][3], Cout = 4 * Cq.
struct Params { Cin: u32, Cq: u32, rowQ: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> Wt: array<vec4f>;
@group(0) @binding(2) var<storage, read_write> GW: array<f32>;

@compute @workgroup_size(64)
fn main(${flatIndex}) {
  ${flatI}
  if (i >= params.Cin * params.Cq) { return; }
  let ci = i / params.Cq;
  let cq = i - ci * params.Cq;
${loads.join('\n')}
${body.join('\n')}
${stores.join('\n')}
}
`,
    };
  });
}

// ==== Storage-buffer layouts (winograd-tiled.ts: operands of the tiled GPU GEMM) ================================
//
// The same transforms as above, one scalar per invocation, each operand a row-major f32 buffer with one block per
// position pos = i * alpha + j (the GEMM is batched over positions), no padding of any dimension:
//   weights  U[pos][k][n]    K x N = Cin x Cout forward; Cout x Cin (rotated filter) for the data gradient
//   input    V[pos][t][c]    T x C (the weight gradient's GEMM reads it transposed: its reduction runs over tiles)
//   product  M[pos][t][n]    T x N
//   output   y = AT M A      into NCHW
// and for the weight gradient with F(3, m):
//   gradient Q[pos][t][co]   T x Cout
//   product  W[pos][ci][co]  Cin x Cout (= V^T Q, summed over tiles and batch slices)
//   output   gw = AT W A     into [Cout][Cin][3][3]
// Invocation i covers (row, column) = (i / cols, i % cols) of a block, the column fastest, so that consecutive
// invocations write consecutive elements.

/** Names a transform by F(m, r): F(m, 3) for the convolutions, F(3, m) for the weight gradient. */
const fName = (f: WinogradMatrices): string => `F${f.m}x${f.r}`;

/** U[pos][k][n] = (G g GT)[pos] of the 3x3 filter g of (k, n); flip != 0: the data gradient's rotated filter. */
export function winogradWeightTransformBufferKernel(f: WinogradMatrices): KernelDef {
  return cached(`wbuf${fName(f)}`, () => {
    const a = f.alpha;
    const taps = range(9).map((t) => `  let g${t} = w[base + select(${t}u, ${8 - t}u, params.flip != 0u)];`);
    const body = transform2d(f.G, f.G, (k, l) => `g${k * 3 + l}`, 'u', '0.0');
    const stores = range(a).flatMap((i) => range(a).map((j) => `  U[${i * a + j}u * cells + i] = u${i}_${j};`));
    return {
      name: `winogradWeightTransformBuffer_${fName(f)}`,
      wgsl: /* wgsl */ `
// w: [Cout][Cin][3][3]. Forward: k = ci, n = co (K = Cin, N = Cout); flip != 0 (data gradient): k = co, n = ci and
// the filter rotated by 180 degrees.
struct Params { K: u32, N: u32, cin: u32, flip: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> U: array<f32>;

@compute @workgroup_size(64)
fn main(${flatIndex}) {
  ${flatI}
  let cells = params.K * params.N;
  if (i >= cells) { return; }
  let k = i / params.N;
  let n = i - k * params.N;
  let base = (select(n, k, params.flip != 0u) * params.cin + select(k, n, params.flip != 0u)) * 9u;
${taps.join('\n')}
${body.join('\n')}
${stores.join('\n')}
}
`,
    };
  });
}

/**
 * V[pos][t][c] = (BT d B)[pos] of the alpha x alpha input patch of tile t in channel c, tiles of `step` x `step`
 * outputs: f.m for F(m, 3) (the convolutions), f.r for F(3, m) (the weight gradient, tiles of the output gradient).
 */
export function winogradInputTransformBufferKernel(f: WinogradMatrices): KernelDef {
  return cached(`inbuf${fName(f)}`, () => {
    const a = f.alpha;
    const step = f.r === 3 ? f.m : f.r;
    const loads = range(a).flatMap((k) => range(a).map((l) => `  let d${k}_${l} = select(0.0, X[p + oy${k} + ox${l}], ry${k} && rx${l});`));
    const body = transform2d(f.BT, f.BT, (k, l) => `d${k}_${l}`, 'v', '0.0');
    const stores = range(a).flatMap((i) => range(a).map((j) => `  V[${i * a + j}u * cells + i] = v${i}_${j};`));
    return {
      name: `winogradInputTransformBuffer_${fName(f)}`,
      wgsl: /* wgsl */ `
// X: [N][C][H][W] (a batch slice); tile t = (n, ty, tx) reads the ${a}x${a} patch at (ty*${step} - padTop,
// tx*${step} - padLeft), zero outside the input.
struct Params { ${tileParams} }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> V: array<f32>;

@compute @workgroup_size(64)
fn main(${flatIndex}) {
  ${flatI}
  let cells = params.T * params.C;
  if (i >= cells) { return; }
  let t = i / params.C;
  let c = i - t * params.C;
  let n = t / params.tilesPerSample;
  let r = t - n * params.tilesPerSample;
  let ty = r / params.tilesW;
  let tx = r - ty * params.tilesW;
  let y0 = i32(ty * ${step}u) - params.padTop;
  let x0 = i32(tx * ${step}u) - params.padLeft;
  let p = (n * params.C + c) * params.H * params.W;
${patchBounds(a, 'y0', 'x0').join('\n')}
${loads.join('\n')}
${body.join('\n')}
${stores.join('\n')}
}
`,
    };
  });
}

/** y = AT M A: the m x m outputs of tile t in channel n, from M[pos][t][n]. */
export function winogradOutputTransformBufferKernel(f: WinogradMatrices): KernelDef {
  return cached(`outbuf${fName(f)}`, () => {
    const a = f.alpha;
    const loads = range(a).flatMap((i) => range(a).map((j) => `  let s${i}_${j} = M[${i * a + j}u * cells + i];`));
    const body = transform2d(f.AT, f.AT, (k, l) => `s${k}_${l}`, 'y', '0.0');
    const stores = range(f.m).flatMap((i) =>
      range(f.m).map((j) => `  if (oy + ${i}u < params.H && ox + ${j}u < params.W) { Y[base + (oy + ${i}u) * params.W + ox + ${j}u] = y${i}_${j}; }`),
    );
    return {
      name: `winogradOutputTransformBuffer_${fName(f)}`,
      wgsl: /* wgsl */ `
// Y: [N][Nc][H][W] (H, W: the output size; a batch slice).
struct Params { Nc: u32, H: u32, W: u32, tilesW: u32, tilesPerSample: u32, T: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> M: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;

@compute @workgroup_size(64)
fn main(${flatIndex}) {
  ${flatI}
  let cells = params.T * params.Nc;
  if (i >= cells) { return; }
  let t = i / params.Nc;
  let c = i - t * params.Nc;
  let n = t / params.tilesPerSample;
  let r = t - n * params.tilesPerSample;
  let oy = (r / params.tilesW) * ${f.m}u;
  let ox = (r % params.tilesW) * ${f.m}u;
  let base = (n * params.Nc + c) * params.H * params.W;
${loads.join('\n')}
${body.join('\n')}
${stores.join('\n')}
}
`,
    };
  });
}

/** Q[pos][t][co] = (G gy GT)[pos] of the m x m output-gradient tile t in channel co (F(3, m), m = f.r). */
export function winogradGradTransformBufferKernel(f: WinogradMatrices): KernelDef {
  return cached(`gybuf${fName(f)}`, () => {
    const m = f.r;
    const a = f.alpha;
    const loads = range(m).flatMap((k) =>
      range(m).map((l) => `  let d${k}_${l} = select(0.0, G[p + (oy + ${k}u) * params.W + ox + ${l}u], oy + ${k}u < params.H && ox + ${l}u < params.W);`),
    );
    const body = transform2d(f.G, f.G, (k, l) => `d${k}_${l}`, 'q', '0.0');
    const stores = range(a).flatMap((i) => range(a).map((j) => `  Q[${i * a + j}u * cells + i] = q${i}_${j};`));
    return {
      name: `winogradGradTransformBuffer_${fName(f)}`,
      wgsl: /* wgsl */ `
// G: the output gradient [N][C][H][W] (H, W: the output size; a batch slice); tile t = (n, ty, tx) is rows
// ty*${m}.., columns tx*${m}.. (zero past the edge).
struct Params { C: u32, H: u32, W: u32, tilesW: u32, tilesPerSample: u32, T: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> G: array<f32>;
@group(0) @binding(2) var<storage, read_write> Q: array<f32>;

@compute @workgroup_size(64)
fn main(${flatIndex}) {
  ${flatI}
  let cells = params.T * params.C;
  if (i >= cells) { return; }
  let t = i / params.C;
  let c = i - t * params.C;
  let n = t / params.tilesPerSample;
  let r = t - n * params.tilesPerSample;
  let oy = (r / params.tilesW) * ${m}u;
  let ox = (r % params.tilesW) * ${m}u;
  let p = (n * params.C + c) * params.H * params.W;
${loads.join('\n')}
${body.join('\n')}
${stores.join('\n')}
}
`,
    };
  });
}

/** gw[co][ci] = AT W A (3 x 3) from W[pos][ci][co] (F(3, m)). */
export function winogradWeightGradOutputBufferKernel(f: WinogradMatrices): KernelDef {
  return cached(`gwbuf${fName(f)}`, () => {
    const a = f.alpha;
    const loads = range(a).flatMap((i) => range(a).map((j) => `  let s${i}_${j} = Wt[${i * a + j}u * cells + i];`));
    const body = transform2d(f.AT, f.AT, (k, l) => `s${k}_${l}`, 'g', '0.0');
    const stores = range(3).flatMap((i) => range(3).map((j) => `  GW[(co * params.Cin + ci) * 9u + ${i * 3 + j}u] = g${i}_${j};`));
    return {
      name: `winogradWeightGradOutputBuffer_${fName(f)}`,
      wgsl: /* wgsl */ `
// GW: [Cout][Cin][3][3].
struct Params { Cin: u32, Cout: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> Wt: array<f32>;
@group(0) @binding(2) var<storage, read_write> GW: array<f32>;

@compute @workgroup_size(64)
fn main(${flatIndex}) {
  ${flatI}
  let cells = params.Cin * params.Cout;
  if (i >= cells) { return; }
  let ci = i / params.Cout;
  let co = i - ci * params.Cout;
${loads.join('\n')}
${body.join('\n')}
${stores.join('\n')}
}
`,
    };
  });
}

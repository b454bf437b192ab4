import type { KernelDef } from '../../runtime/kernel.js';

// conv2d as implicit GEMM, in the same register tiling as the matmul family (src/kernels/matmul/matmul.wgsl.ts):
// a workgroup of WG invocations owns TM output positions (the GEMM rows, workgroup-uniform, so their input loads
// are uniform: one scalar load + broadcast on lavapipe, a broadcast read on GPUs) and WG * 4 * TNV output
// channels (the GEMM columns, 4 adjacent channels per vec4 per invocation, loaded per lane from a weight layout
// whose channel index is contiguous).
//
// The input is read from a zero-padded copy, so the inner loop has no bounds tests, and the reduction index k runs
// over a small table of (input offset, weight row) pairs built on the host per geometry: the forward pass walks
// (ci, kh, kw); the data gradient walks (co, tap) of one stride phase (see conv2d.ts), so the same kernel does both.

export interface ConvGemmVariant {
  /** Output positions per workgroup. */
  tm: number;
  /** vec4 channel groups per invocation. */
  tnv: number;
  /** The channel count is a multiple of 4: weights are read as vec4. */
  vecW: boolean;
  bias: boolean;
}

const cache = new Map<string, KernelDef>();

function cached(key: string, make: () => KernelDef): KernelDef {
  let def = cache.get(key);
  if (!def) cache.set(key, (def = make()));
  return def;
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

export function convGemmKernel(v: ConvGemmVariant): KernelDef {
  const key = `gemm${v.tm}x${v.tnv}${+v.vecW}${+v.bias}`;
  return cached(key, () => ({ name: `conv2dGemm${v.bias ? '_bias' : ''}_${v.tm}x${v.tnv}`, wgsl: convGemmWgsl(v) }));
}

function convGemmWgsl(v: ConvGemmVariant): string {
  const { tm: TM, tnv: TNV } = v;
  const rows = range(TM);
  const groups = range(TNV);
  const out: string[] = [];
  const L = (s: string): void => {
    out.push(s);
  };
  // Position p = (n, oy, ox) of this dispatch's output grid -> input base offset and output offset.
  for (const i of rows) {
    L(`  let p${i} = min(tileM + ${i}u, params.P - 1u);`);
    L(`  let n${i} = p${i} / params.OHW;`);
    L(`  let oy${i} = (p${i} - n${i} * params.OHW) / params.OW;`);
    L(`  let ox${i} = p${i} - n${i} * params.OHW - oy${i} * params.OW;`);
    L(`  let xb${i} = n${i} * params.inBatch + oy${i} * params.inRow + ox${i} * params.inCol + params.inBase;`);
  }
  for (const j of groups) {
    L(`  let c${j} = tileN + (${j}u * WG + lane) * 4u;`);
    if (v.vecW) L(`  let wc${j} = min(c${j}, params.cols - 4u);`);
    else for (const c of range(4)) L(`  let wc${j}_${c} = min(c${j} + ${c}u, params.cols - 1u);`);
  }
  for (const i of rows) for (const j of groups) L(`  var acc${i}_${j} = vec4f(0.0);`);
  L('  for (var k = 0u; k < params.K; k++) {');
  L('    let e = tab[k];');
  L('    let wr = e.y * params.cols;');
  for (const j of groups) {
    L(
      v.vecW
        ? `    let w${j} = Wv[(wr + wc${j}) / 4u];`
        : `    let w${j} = vec4f(${range(4).map((c) => `W[wr + wc${j}_${c}]`).join(', ')});`,
    );
  }
  for (const i of rows) {
    L(`    let x${i} = X[xb${i} + e.x];`);
    for (const j of groups) L(`    acc${i}_${j} += x${i} * w${j};`);
  }
  L('  }');
  for (const j of groups) {
    if (v.bias) L(`  let b${j} = vec4f(${range(4).map((c) => `bias[min(c${j} + ${c}u, params.cols - 1u)]`).join(', ')});`);
  }
  for (const i of rows) {
    L(`  if (tileM + ${i}u < params.P) {`);
    L(`    let ob = n${i} * params.outBatch + oy${i} * params.outRow + ox${i} * params.outCol + params.outBase;`);
    for (const j of groups) {
      L(`    let r${i}_${j} = acc${i}_${j}${v.bias ? ` + b${j}` : ''};`);
      for (const c of range(4)) L(`    if (c${j} + ${c}u < params.cols) { Y[ob + (c${j} + ${c}u) * params.outChan] = r${i}_${j}[${c}]; }`);
    }
    L('  }');
  }
  return /* wgsl */ `
// P output positions laid out as (n, oy, ox) with OW and OHW = OH * OW; cols output channels; K table entries.
// Input offset of a position: n * inBatch + oy * inRow + ox * inCol + inBase (+ tab[k].x for entry k).
// Output offset of (position, channel c): n * outBatch + oy * outRow + ox * outCol + outBase + c * outChan.
struct Params {
  P: u32, OW: u32, OHW: u32, cols: u32, K: u32,
  inBatch: u32, inRow: u32, inCol: u32, inBase: u32,
  outBatch: u32, outRow: u32, outCol: u32, outBase: u32, outChan: u32,
  tilesN: u32, tilesM: u32,
}
override WG: u32 = 8u;
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> tab: array<vec2u>;
@group(0) @binding(3) ${v.vecW ? 'var<storage, read> Wv: array<vec4f>;' : 'var<storage, read> W: array<f32>;'}
@group(0) @binding(4) var<storage, read_write> Y: array<f32>;
${v.bias ? '@group(0) @binding(5) var<storage, read> bias: array<f32>;' : ''}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let tile = wg.x + wg.y * nwg.x;
  if (tile >= params.tilesN * params.tilesM) { return; }
  let tileM = (tile / params.tilesN) * ${TM}u;
  let tileN = (tile % params.tilesN) * (WG * ${4 * TNV}u);
${out.join('\n')}
}
`;
}

export interface ConvWeightGradVariant {
  tm: number;
  tnv: number;
  /** Cout % 4 == 0: the transposed gradient is read as vec4. */
  vecG: boolean;
}

// Weight gradient: gwT[r, co] = sum over positions q of xpad[q-base + xoff[r]] * gyT[q, co], r = (ci, kh, kw).
// Rows r are uniform per workgroup (input loads uniform), channels co per lane from gy transposed to
// [n, oy, ox, co]. Workgroups along z take disjoint ranges of (n, oy) rows and write separate partial sums, which
// a fixed-order reduction adds up (deterministic, no atomics).
export function convWeightGradKernel(v: ConvWeightGradVariant): KernelDef {
  const key = `wgrad${v.tm}x${v.tnv}${+v.vecG}`;
  return cached(key, () => ({ name: `conv2dBackwardWeight_${v.tm}x${v.tnv}`, wgsl: convWeightGradWgsl(v) }));
}

function convWeightGradWgsl(v: ConvWeightGradVariant): string {
  const { tm: TM, tnv: TNV } = v;
  const rows = range(TM);
  const groups = range(TNV);
  const out: string[] = [];
  const L = (s: string): void => {
    out.push(s);
  };
  for (const i of rows) L(`  let xo${i} = xtab[min(tileM + ${i}u, params.R - 1u)];`);
  for (const j of groups) {
    L(`  let c${j} = tileN + (${j}u * WG + lane) * 4u;`);
    if (v.vecG) L(`  let gc${j} = min(c${j}, params.cols - 4u);`);
    else for (const c of range(4)) L(`  let gc${j}_${c} = min(c${j} + ${c}u, params.cols - 1u);`);
  }
  for (const i of rows) for (const j of groups) L(`  var acc${i}_${j} = vec4f(0.0);`);
  L('  let rowEnd = min(params.rowsTotal, (wg.z + 1u) * params.rowsPerSplit);');
  L('  for (var row = wg.z * params.rowsPerSplit; row < rowEnd; row++) {');
  L('    let n = row / params.OH;');
  L('    var xb = n * params.inBatch + (row - n * params.OH) * params.inRow;');
  L('    var gb = row * params.OW * params.cols;');
  L('    for (var ox = 0u; ox < params.OW; ox++) {');
  for (const j of groups) {
    L(
      v.vecG
        ? `      let g${j} = Gv[(gb + gc${j}) / 4u];`
        : `      let g${j} = vec4f(${range(4).map((c) => `G[gb + gc${j}_${c}]`).join(', ')});`,
    );
  }
  for (const i of rows) {
    L(`      let x${i} = X[xb + xo${i}];`);
    for (const j of groups) L(`      acc${i}_${j} += x${i} * g${j};`);
  }
  L('      xb += params.inCol;');
  L('      gb += params.cols;');
  L('    }');
  L('  }');
  L('  let pb = wg.z * params.cols * params.R;');
  for (const i of rows) {
    L(`  if (tileM + ${i}u < params.R) {`);
    for (const j of groups) {
      for (const c of range(4)) L(`    if (c${j} + ${c}u < params.cols) { part[pb + (c${j} + ${c}u) * params.R + tileM + ${i}u] = acc${i}_${j}[${c}]; }`);
    }
    L('  }');
  }
  return /* wgsl */ `
// R = Cin * KH * KW gradient rows, cols = Cout; positions come in rows (n, oy) of OW, rowsTotal = N * OH of them,
// split rowsPerSplit per z workgroup. Input offset of (n, oy, ox): n * inBatch + oy * inRow + ox * inCol + xtab[r].
struct Params {
  R: u32, cols: u32, OH: u32, OW: u32, inBatch: u32, inRow: u32, inCol: u32,
  rowsTotal: u32, rowsPerSplit: u32, tilesN: u32, tilesM: u32,
}
override WG: u32 = 8u;
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> xtab: array<u32>;
@group(0) @binding(3) ${v.vecG ? 'var<storage, read> Gv: array<vec4f>;' : 'var<storage, read> G: array<f32>;'}
@group(0) @binding(4) var<storage, read_write> part: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let tile = wg.x + wg.y * nwg.x;
  if (tile >= params.tilesN * params.tilesM) { return; }
  let tileM = (tile / params.tilesN) * ${TM}u;
  let tileN = (tile % params.tilesN) * (WG * ${4 * TNV}u);
${out.join('\n')}
}
`;
}

// Zero-padded copy: dst[b, h, w] (dstH x dstW planes) = src[b, h - top, w - left] inside the source, else 0.
// b runs over N * C planes.
export const convPadWgsl: KernelDef = {
  name: 'conv2dPad',
  wgsl: /* wgsl */ `
struct Params { total: u32, srcH: u32, srcW: u32, dstH: u32, dstW: u32, top: u32, left: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * 64u;
  if (i >= params.total) { return; }
  let plane = i / (params.dstH * params.dstW);
  let r = i - plane * params.dstH * params.dstW;
  let h = r / params.dstW;
  let w = r - h * params.dstW;
  // Unsigned wrap-around makes rows/columns above or left of the source fail the < test.
  let sh = h - params.top;
  let sw = w - params.left;
  var v = 0.0;
  if (sh < params.srcH && sw < params.srcW) { v = src[(plane * params.srcH + sh) * params.srcW + sw]; }
  dst[i] = v;
}
`,
};

// Batched transpose: dst[b, c, r] = src[b, r, c] for b < batch, r < rows, c < cols.
export const transposeWgsl: KernelDef = {
  name: 'conv2dTranspose',
  wgsl: /* wgsl */ `
struct Params { total: u32, rows: u32, cols: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * 64u;
  if (i >= params.total) { return; }
  let plane = params.rows * params.cols;
  let b = i / plane;
  let o = i - b * plane;
  let c = o / params.rows;
  let r = o - c * params.rows;
  dst[i] = src[b * plane + r * params.cols + c];
}
`,
};

// out[i] (+)= sum over s < splits of part[s * n + i], in order of s.
export const sumPartialsWgsl: KernelDef = {
  name: 'conv2dSumPartials',
  wgsl: /* wgsl */ `
struct Params { n: u32, splits: u32, accumulate: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> part: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * 64u;
  if (i >= params.n) { return; }
  var s = select(0.0, out[i], params.accumulate != 0u);
  for (var k = 0u; k < params.splits; k++) { s += part[k * params.n + i]; }
  out[i] = s;
}
`,
};

// col2im for the data gradient of few-channel inputs (conv1): gx[n, ci, ih, iw] = sum over the taps (kh, kw) that
// reach (ih, iw) of cols[n, (ci, kh, kw), oh, ow], with cols = w^T @ gy computed by the GEMM family. Only taps
// with (ih + ph - kh) divisible by sh are visited.
export const col2imWgsl: KernelDef = {
  name: 'conv2dCol2im',
  wgsl: /* wgsl */ `
struct Params { total: u32, C: u32, H: u32, W: u32, KH: u32, KW: u32, SH: u32, SW: u32, PH: u32, PW: u32, OH: u32, OW: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> cols: array<f32>;
@group(0) @binding(2) var<storage, read_write> gx: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * 64u;
  if (i >= params.total) { return; }
  let iw = i % params.W;
  let ih = (i / params.W) % params.H;
  let plane = i / (params.W * params.H); // n * C + ci
  let n = plane / params.C;
  let ci = plane - n * params.C;
  let ohw = params.OH * params.OW;
  let rowBase = (n * params.C + ci) * params.KH;
  var s = 0.0;
  // y = ih + ph - kh must be a non-negative multiple of sh below OH * sh.
  for (var kh = (ih + params.PH) % params.SH; kh < params.KH; kh += params.SH) {
    let y = ih + params.PH - kh;
    if (y > ih + params.PH) { break; } // kh > ih + ph: wrapped below zero, and so will every later tap
    let oh = y / params.SH;
    if (oh >= params.OH) { continue; }
    for (var kw = (iw + params.PW) % params.SW; kw < params.KW; kw += params.SW) {
      let x = iw + params.PW - kw;
      if (x > iw + params.PW) { break; }
      let ow = x / params.SW;
      if (ow >= params.OW) { continue; }
      s += cols[((rowBase + kh) * params.KW + kw) * ohw + oh * params.OW + ow];
    }
  }
  gx[i] = s;
}
`,
};

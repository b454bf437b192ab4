import type { KernelDef } from '../../runtime/kernel.js';
import { FLAT_WG } from '../../runtime/workgroup.js';

// max_pool2d over NCHW as PyTorch: padding counts as -inf, the window is scanned row by row and the first maximum
// wins (a NaN always wins, so NaN propagates), and `indices` holds the winner's position within its input plane
// (ih * W + iw). Kernels see one batch slice at a time; `plane` = n * C + c within the slice.

export const POOL_WG = FLAT_WG;
export const POOL_WG_ROWS = 64;

const params = /* wgsl */ `
struct Params {
  n: u32,        // invocations to run (output elements forward, input rows backward)
  H: i32, W: i32, OH: i32, OW: i32,
  kH: i32, kW: i32, sH: i32, sW: i32, pH: i32, pW: i32, dH: i32, dW: i32,
  negInf: f32,   // -inf from the host: WGSL constant expressions may not produce infinities
}
@group(0) @binding(0) var<uniform> params: Params;
`;

export const maxPoolForward: KernelDef = {
  name: 'maxPool2dForward',
  wgsl: /* wgsl */ `
${params}
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> indices: array<i32>;

// On the bits: compilers may assume NaN-free floats and fold v != v to false (lavapipe does).
fn isNan(v: f32) -> bool {
  return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

@compute @workgroup_size(${POOL_WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * ${POOL_WG}u;
  if (i >= params.n) { return; }
  let p = params;
  let planeOut = u32(p.OH * p.OW);
  let plane = i / planeOut;
  let o = i32(i - plane * planeOut);
  let oh = o / p.OW;
  let ow = o - oh * p.OW;
  // The window's valid rows/columns: start at the first non-negative tap, end before H/W (as ATen's CPU kernel).
  var h0 = oh * p.sH - p.pH;
  let h1 = min(h0 + (p.kH - 1) * p.dH + 1, p.H);
  while (h0 < 0) { h0 += p.dH; }
  var w0 = ow * p.sW - p.pW;
  let w1 = min(w0 + (p.kW - 1) * p.dW + 1, p.W);
  while (w0 < 0) { w0 += p.dW; }
  let base = plane * u32(p.H * p.W);
  var best = p.negInf;
  var bestIndex = h0 * p.W + w0;
  for (var ih = h0; ih < h1; ih += p.dH) {
    for (var iw = w0; iw < w1; iw += p.dW) {
      let k = ih * p.W + iw;
      let v = x[base + u32(k)];
      if (v > best || isNan(v)) {
        best = v;
        bestIndex = k;
      }
    }
  }
  y[i] = best;
  indices[i] = bestIndex;
}
`,
};

// Each input element gathers the gradient of every output window that chose it (no scatter, no atomics). Windows
// are visited in ascending (oh, ow), the order in which PyTorch's CPU kernel accumulates. One invocation per input
// row (plane, ih): the candidate output rows are found once, and the candidate output columns of each iw,
//   ow in [max(0, ceil((iw + pW - (kW - 1) dW) / sW)), min(OW - 1, floor((iw + pW) / sW))],
// are advanced with counters along the row instead of dividing per element (integer division is slow on lavapipe).
export const maxPoolBackward: KernelDef = {
  name: 'maxPool2dBackward',
  wgsl: /* wgsl */ `
${params}
@group(0) @binding(1) var<storage, read> gy: array<f32>;
@group(0) @binding(2) var<storage, read> indices: array<i32>;
@group(0) @binding(3) var<storage, read_write> gx: array<f32>;

// floor(a / s) for s > 0 (WGSL's i32 division truncates toward zero).
fn floorDiv(a: i32, s: i32) -> i32 {
  return select(a / s, (a - s + 1) / s, a < 0);
}

@compute @workgroup_size(${POOL_WG_ROWS})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let r = gid.x + gid.y * nwg.x * ${POOL_WG_ROWS}u;
  if (r >= params.n) { return; }
  let p = params;
  let plane = r / u32(p.H);
  let ih = i32(r - plane * u32(p.H));
  let ohFirst = max(0, floorDiv(ih + p.pH - (p.kH - 1) * p.dH + p.sH - 1, p.sH));
  let ohLast = min(p.OH - 1, (ih + p.pH) / p.sH);
  // (q, r) pairs of the two column bounds for iw = 0; both numerators grow by one per column.
  var hiQ = p.pW / p.sW;
  var hiR = p.pW - hiQ * p.sW;
  let lo0 = p.pW - (p.kW - 1) * p.dW + p.sW - 1;
  var loQ = floorDiv(lo0, p.sW);
  var loR = lo0 - loQ * p.sW;
  let inBase = plane * u32(p.H * p.W) + u32(ih * p.W);
  let outBase = plane * u32(p.OH * p.OW);
  for (var iw = 0; iw < p.W; iw++) {
    let k = ih * p.W + iw;
    let owFirst = max(loQ, 0);
    let owLast = min(hiQ, p.OW - 1);
    var sum = 0.0;
    for (var oh = ohFirst; oh <= ohLast; oh++) {
      if (p.dH != 1 && (ih + p.pH - oh * p.sH) % p.dH != 0) { continue; }
      for (var ow = owFirst; ow <= owLast; ow++) {
        if (p.dW != 1 && (iw + p.pW - ow * p.sW) % p.dW != 0) { continue; }
        let o = outBase + u32(oh * p.OW + ow);
        if (indices[o] == k) { sum += gy[o]; }
      }
    }
    gx[inBase + u32(iw)] = sum;
    hiR += 1;
    if (hiR == p.sW) { hiR = 0; hiQ += 1; }
    loR += 1;
    if (loR == p.sW) { loR = 0; loQ += 1; }
  }
}
`,
};

// Tiled kernels for dilation 1 (ResNet's 3x3 stride-2 pool among them), generated per (kernel, stride, padding) so
// every window offset is a compile-time constant: loops unroll, each load serves several windows, and there are
// no per-element loops with lane-varying trip counts (masked loops on lavapipe). With `vec` (rows and output rows
// whole vec4s, tiles aligned to them) the loads and stores move vec4s. Same scan order, tie rule, NaN rule and
// summation order as the kernels above, so the results are bitwise the same.

export interface PoolTile {
  kH: number;
  kW: number;
  sH: number;
  sW: number;
  pH: number;
  pW: number;
  /** Outputs per invocation along a row (forward); output columns per tile (backward). */
  R: number;
  /** vec4 loads and stores (W and OW multiples of 4, R a multiple of 4). */
  vec: boolean;
}

export const POOL_TILE_WG = 64;

function memo(make: (tile: PoolTile) => KernelDef): (tile: PoolTile) => KernelDef {
  const cache = new Map<string, KernelDef>();
  return (tile) => {
    const key = JSON.stringify([tile.kH, tile.kW, tile.sH, tile.sW, tile.pH, tile.pW, tile.R, tile.vec]);
    let def = cache.get(key);
    if (!def) cache.set(key, (def = make(tile)));
    return def;
  };
}

const tileName = (t: PoolTile) => `k${t.kH}x${t.kW}s${t.sH}x${t.sW}p${t.pH}x${t.pW}_r${t.R}${t.vec ? '_vec4' : ''}`;

const tileParams = /* wgsl */ `
struct Params { invocations: u32, H: i32, W: i32, OH: i32, OW: i32, tileRows: u32, tileCols: u32, negInf: f32 }
@group(0) @binding(0) var<uniform> params: Params;
`;

const tileIndex = /* wgsl */ `
  let inv = gid.x + gid.y * nwg.x * ${POOL_TILE_WG}u;
  if (inv >= params.invocations) { return; }
  let perPlane = params.tileRows * params.tileCols;
  let plane = inv / perPlane;
  let rem = inv - plane * perPlane;
  let r = rem / params.tileCols;
  let t = rem - r * params.tileCols;
  let H = params.H;
  let W = params.W;
`;

const comp = ['x', 'y', 'z', 'w'];

/**
 * Forward: invocation (plane, oh, t) computes outputs ow = t * R + q, q < R, of one output row, reading each input
 * row of their windows once ((R - 1) * sW + kW columns) and feeding every window that contains a column, in the
 * window's row-major order.
 */
export const maxPoolForwardTiled = memo((tile: PoolTile): KernelDef => {
  const { kH, kW, sH, sW, pH, pW, R, vec } = tile;
  const span = (R - 1) * sW + kW;
  const lines: string[] = [];
  for (let q = 0; q < R; q++) {
    lines.push(`  var best${q} = params.negInf;`);
    lines.push(`  var index${q} = h0 * W + max(iw0 + ${q * sW}, 0);`);
  }
  for (let a = 0; a < kH; a++) {
    lines.push(`  {\n    let ih = ih0 + ${a};\n    let rowOk = ih >= 0 && ih < H;`);
    // vec: the row's columns colBase + c, c = j - pW, come in aligned blocks of 4 (each inside or outside the row).
    const blocks = new Set<number>();
    if (vec) for (let j = 0; j < span; j++) blocks.add(Math.floor((j - pW) / 4));
    for (const m of [...blocks].sort((p, q) => p - q)) {
      lines.push(`    var b${m < 0 ? `m${-m}` : m} = vec4f(params.negInf);`);
      lines.push(`    if (rowOk && colBase + ${4 * m} >= 0 && colBase + ${4 * m} < W) { b${m < 0 ? `m${-m}` : m} = x[(rowBase + u32(ih * W + colBase)) / 4u ${m < 0 ? '-' : '+'} ${Math.abs(m)}u]; }`);
    }
    for (let j = 0; j < span; j++) {
      lines.push('    {');
      lines.push(`      let iw = iw0 + ${j};`);
      if (vec) {
        const m = Math.floor((j - pW) / 4);
        lines.push(`      let v = b${m < 0 ? `m${-m}` : m}.${comp[j - pW - 4 * m]};`);
      } else {
        lines.push(`      var v = params.negInf;\n      if (rowOk && iw >= 0 && iw < W) { v = x[rowBase + u32(ih * W + iw)]; }`);
      }
      for (let q = 0; q < R; q++) {
        if (j >= q * sW && j < q * sW + kW) lines.push(`      if (v > best${q} || isNan(v)) { best${q} = v; index${q} = ih * W + iw; }`);
      }
      lines.push('    }');
    }
    lines.push('  }');
  }
  if (vec) {
    for (let q = 0; q < R; q += 4) {
      const v = [0, 1, 2, 3].map((e) => `best${q + e}`).join(', ');
      const ix = [0, 1, 2, 3].map((e) => `index${q + e}`).join(', ');
      lines.push(`  if (ow0 + ${q} < params.OW) {\n    let o = (outBase + u32(ow0 + ${q})) / 4u;\n    y[o] = vec4f(${v});\n    indices[o] = vec4i(${ix});\n  }`);
    }
  } else {
    for (let q = 0; q < R; q++) {
      lines.push(`  if (ow0 + ${q} < params.OW) {\n    let o = outBase + u32(ow0 + ${q});\n    y[o] = best${q};\n    indices[o] = index${q};\n  }`);
    }
  }
  const T = vec ? 'vec4f' : 'f32';
  return {
    name: `maxPool2dForward_${tileName(tile)}`,
    wgsl: /* wgsl */ `
${tileParams}
@group(0) @binding(1) var<storage, read> x: array<${T}>;
@group(0) @binding(2) var<storage, read_write> y: array<${T}>;
@group(0) @binding(3) var<storage, read_write> indices: array<${vec ? 'vec4i' : 'i32'}>;

fn isNan(v: f32) -> bool {
  return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

@compute @workgroup_size(${POOL_TILE_WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
${tileIndex}
  let oh = i32(r);
  let ow0 = i32(t) * ${R};
  let ih0 = oh * ${sH} - ${pH};
  let colBase = ow0 * ${sW};
  let iw0 = colBase - ${pW};
  let h0 = max(ih0, 0);
  let rowBase = plane * u32(H * W);
  let outBase = plane * u32(params.OH * params.OW) + u32(oh * params.OW);
${lines.join('\n')}
}
`,
  };
});

/**
 * Backward: invocation (plane, r, t) owns the input tile of rows r * sH + i (i < sH) and columns t * sW * R + j
 * (j < sW * R). Only the windows that overlap the tile can have chosen one of its elements; it reads each one's
 * index and gradient once, in ascending (oh, ow), and adds the gradient to the element it chose.
 */
export const maxPoolBackwardTiled = memo((tile: PoolTile): KernelDef => {
  const { kH, kW, sH, sW, pH, pW, R, vec } = tile;
  const TW = sW * R;
  const aLo = Math.ceil((pH - kH + 1) / sH);
  const aHi = Math.floor((sH - 1 + pH) / sH);
  const bLo = Math.ceil((pW - kW + 1) / sW);
  const bHi = Math.floor((TW - 1 + pW) / sW);
  const lines: string[] = [];
  for (let i = 0; i < sH; i++) for (let j = 0; j < TW; j++) lines.push(`  var g${i}_${j} = 0.0;`);
  for (let i = 1; i < sH; i++) lines.push(`  let row${i} = ${i} * W;`);
  const rowOff = (i: number) => (i === 0 ? '' : `row${i} + `);
  const name = (n: number) => (n < 0 ? `m${-n}` : `${n}`);
  for (let a = aLo; a <= aHi; a++) {
    const i0 = Math.max(0, a * sH - pH);
    const i1 = Math.min(sH - 1, a * sH - pH + kH - 1);
    if (i0 > i1) continue;
    lines.push(`  {\n    let oh = i32(r) + ${a};\n    let rowOk = oh >= 0 && oh < params.OH;\n    let orow = outBase + u32(max(oh, 0) * params.OW);`);
    const windows: number[] = [];
    for (let b = bLo; b <= bHi; b++) {
      const j0 = Math.max(0, b * sW - pW);
      const j1 = Math.min(TW - 1, b * sW - pW + kW - 1);
      if (j0 <= j1) windows.push(b);
    }
    // The windows' (index, gradient): aligned vec4 blocks of output columns when `vec` (each block inside or
    // outside the output row), else one load each. Outside the row or the plane: no window (index -1 never matches).
    if (vec) {
      for (const m of [...new Set(windows.map((b) => Math.floor(b / 4)))].sort((p, q) => p - q)) {
        lines.push(`    var k${name(m)} = vec4i(-1);\n    var g${name(m)} = vec4f(0.0);`);
        lines.push(`    if (rowOk && ow0 + ${4 * m} >= 0 && ow0 + ${4 * m} < params.OW) {\n      let o = (orow + u32(ow0)) / 4u ${m < 0 ? '-' : '+'} ${Math.abs(m)}u;\n      k${name(m)} = indices[o] - vec4i(tileBase);\n      g${name(m)} = gy[o];\n    }`);
      }
    }
    for (const b of windows) {
      const j0 = Math.max(0, b * sW - pW);
      const j1 = Math.min(TW - 1, b * sW - pW + kW - 1);
      lines.push('    {');
      if (vec) {
        const m = Math.floor(b / 4);
        lines.push(`      let k = k${name(m)}.${comp[b - 4 * m]};\n      let g = g${name(m)}.${comp[b - 4 * m]};`);
      } else {
        lines.push(`      let ow = ow0 + ${b};\n      var k = -1;\n      var g = 0.0;`);
        lines.push(`      if (rowOk && ow >= 0 && ow < params.OW) {\n        let o = orow + u32(ow);\n        k = indices[o] - tileBase;\n        g = gy[o];\n      }`);
      }
      for (let i = i0; i <= i1; i++) {
        for (let j = j0; j <= j1; j++) lines.push(`      g${i}_${j} += select(0.0, g, k == ${rowOff(i)}${j});`);
      }
      lines.push('    }');
    }
    lines.push('  }');
  }
  for (let i = 0; i < sH; i++) {
    lines.push(`  if (ih0 + ${i} < H) {\n    let rowAt = inBase + u32((ih0 + ${i}) * W + iw0);`);
    if (vec) {
      for (let j = 0; j < TW; j += 4) {
        lines.push(`    if (iw0 + ${j} < W) { gx[rowAt / 4u + ${j / 4}u] = vec4f(${[0, 1, 2, 3].map((e) => `g${i}_${j + e}`).join(', ')}); }`);
      }
    } else {
      for (let j = 0; j < TW; j++) lines.push(`    if (iw0 + ${j} < W) { gx[rowAt + ${j}u] = g${i}_${j}; }`);
    }
    lines.push('  }');
  }
  const T = vec ? 'vec4f' : 'f32';
  return {
    name: `maxPool2dBackward_${tileName(tile)}`,
    wgsl: /* wgsl */ `
${tileParams}
@group(0) @binding(1) var<storage, read> gy: array<${T}>;
@group(0) @binding(2) var<storage, read> indices: array<${vec ? 'vec4i' : 'i32'}>;
@group(0) @binding(3) var<storage, read_write> gx: array<${T}>;

@compute @workgroup_size(${POOL_TILE_WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
${tileIndex}
  let ih0 = i32(r) * ${sH};
  let iw0 = i32(t) * ${TW};
  let ow0 = i32(t) * ${R};
  let tileBase = ih0 * W + iw0;
  let inBase = plane * u32(H * W);
  let outBase = plane * u32(params.OH * params.OW);
${lines.join('\n')}
}
`,
  };
});

import type { KernelDef } from '../../runtime/kernel.js';

// The GEMM family: C[b] = op(A[b]) @ op(B[b]) (+ bias), op = identity or transpose, row-major storage.
//
// Tiling (shaped for lavapipe, see docs/kernels-performance.md): a workgroup of WG invocations owns TM rows of C
// and WG * 4 * TNV columns. The TM rows are the same for every invocation of the workgroup, so their A values are
// loaded at workgroup-uniform addresses: lavapipe turns those into one scalar load plus a broadcast instead of 8
// per-lane loads with bounds checks. Each invocation owns TNV groups of 4 adjacent columns (group j of lane l
// starts at column colN + (j * WG + l) * 4) and loads them as vec4s, so the per-lane loads are few and wide. Per k
// step an invocation does TM * TNV vec4 multiply-adds, all in registers. On GPUs the same structure is a
// warp-uniform (broadcast) A read and coalesced vec4 B reads; WG is an override chosen per adapter.
//
// A is read with scalar uniform loads, one k per iteration. B is read as vec4 over n when it is not transposed and
// N % 4 == 0 ("vecB"); a transposed B is read 4 k at a time as vec4 over k (K % 4 == 0, "vecB"; A then also as
// vec4 over k, "vecA"), otherwise as scalars. Rows and columns past the edge are clamped for loading and masked
// for storing.

export interface GemmVariant {
  transA: boolean;
  transB: boolean;
  /** A read as vec4 over k (only with transB). */
  vecA: boolean;
  vecB: boolean;
  /** K % 4 == 0: no remainder loop (with transB). */
  k4: boolean;
  bias: boolean;
  /** Rows of C per workgroup. */
  tm: number;
  /** vec4 column groups per invocation. */
  tnv: number;
}

const cache = new Map<string, KernelDef>();

export function gemmKernel(v: GemmVariant): KernelDef {
  const key = `${+v.transA}${+v.transB}${+v.vecA}${+v.vecB}${+v.k4}${+v.bias}_${v.tm}x${v.tnv}`;
  let def = cache.get(key);
  if (!def) {
    def = { name: `gemm_${v.transA ? 't' : 'n'}${v.transB ? 't' : 'n'}${v.bias ? '_bias' : ''}_${v.tm}x${v.tnv}`, wgsl: gemmWgsl(v) };
    cache.set(key, def);
  }
  return def;
}

function gemmWgsl(v: GemmVariant): string {
  const { tm: TM, tnv: TNV } = v;
  const rows = range(TM);
  const groups = range(TNV);
  const lines: string[] = [];
  const L = (s: string): void => {
    lines.push(s);
  };

  // Row bases (uniform) and column indices (per lane), clamped so every load is in bounds.
  for (const i of rows) L(`  let m${i} = min(rowM + ${i}u, params.M - 1u);`);
  for (const i of rows) L(v.transA ? `  let ar${i} = aOff + m${i};` : `  let ar${i} = aOff + m${i} * params.K;`);
  for (const j of groups) {
    L(`  let n${j} = colN + (${j}u * WG + lane) * 4u;`);
    if (v.vecB && !v.transB) L(`  let bc${j} = bOff + min(n${j}, params.N - 4u);`);
    else for (const c of range(4)) L(`  let bc${j}_${c} = bOff + ${v.transB ? `min(n${j} + ${c}u, params.N - 1u) * params.K` : `min(n${j} + ${c}u, params.N - 1u)`};`);
  }
  for (const i of rows) for (const j of groups) L(`  var c${i}_${j} = vec4f(0.0);`);

  if (!v.transB) {
    // One k per iteration: TM uniform scalar loads of A, TNV per-lane vec4 loads of B, TM * TNV vec4 FMAs. Fewer
    // values live at once than with an unrolled k loop, which measured faster on lavapipe (docs/kernels-performance.md).
    L('  for (var k = 0u; k < params.K; k++) {');
    for (const j of groups) {
      L(
        v.vecB
          ? `    let b${j} = Bv[(bc${j} + k * params.N) / 4u];`
          : `    let b${j} = vec4f(${range(4).map((c) => `B[bc${j}_${c} + k * params.N]`).join(', ')});`,
      );
    }
    for (const i of rows) {
      L(`    let a${i} = A[ar${i} + k${v.transA ? ' * params.M' : ''}];`);
      for (const j of groups) L(`    c${i}_${j} += a${i} * b${j};`);
    }
    L('  }');
  } else {
    // B transposed (stored [N, K]): column n + c of op(B) is row n + c of B, so 4 k steps per iteration read 4 k
    // values of each of the 4 columns as one vec4 (when K % 4 == 0), then regroup them per k.
    L('  let k4 = params.K & ~3u;');
    L('  for (var k = 0u; k < k4; k += 4u) {');
    for (const j of groups) {
      for (const c of range(4)) {
        L(
          v.vecB
            ? `    let t${j}_${c} = Bv[(bc${j}_${c} + k) / 4u];`
            : `    let t${j}_${c} = vec4f(${range(4).map((kk) => `B[bc${j}_${c} + k + ${kk}u]`).join(', ')});`,
        );
      }
      for (const kk of range(4)) L(`    let b${j}_${kk} = vec4f(${range(4).map((c) => `t${j}_${c}[${kk}]`).join(', ')});`);
    }
    for (const i of rows) {
      if (v.transA) L(`    let a${i} = vec4f(${range(4).map((kk) => `A[ar${i} + (k + ${kk}u) * params.M]`).join(', ')});`);
      else if (v.vecA) L(`    let a${i} = Av[(ar${i} + k) / 4u];`);
      else L(`    let a${i} = vec4f(${range(4).map((kk) => `A[ar${i} + k + ${kk}u]`).join(', ')});`);
      for (const kk of range(4)) for (const j of groups) L(`    c${i}_${j} += a${i}[${kk}] * b${j}_${kk};`);
    }
    L('  }');
    if (!v.k4) {
      // Remainder k (K % 4 != 0; then neither operand is read as vec4): one k at a time.
      L('  for (var k = k4; k < params.K; k++) {');
      for (const j of groups) L(`    let b${j} = vec4f(${range(4).map((c) => `B[bc${j}_${c} + k]`).join(', ')});`);
      for (const i of rows) {
        L(`    let a${i} = A[ar${i} + k${v.transA ? ' * params.M' : ''}];`);
        for (const j of groups) L(`    c${i}_${j} += a${i} * b${j};`);
      }
      L('  }');
    }
  }

  // Store with masks; the bias is one value per column.
  for (const j of groups) {
    if (v.bias) L(`  let bias${j} = vec4f(${range(4).map((c) => `bias[min(n${j} + ${c}u, params.N - 1u)]`).join(', ')});`);
  }
  for (const i of rows) {
    L(`  if (rowM + ${i}u < params.M) {`);
    for (const j of groups) {
      L(`    let o${i}_${j} = c${i}_${j}${v.bias ? ` + bias${j}` : ''};`);
      for (const c of range(4)) {
        L(`    if (n${j} + ${c}u < params.N) {`);
        L(`      let at = cOff + (rowM + ${i}u) * params.N + n${j} + ${c}u;`);
        L(`      C[at] = select(0.0, C[at], params.accumulate != 0u) + o${i}_${j}[${c}];`);
        L('    }');
      }
    }
    L('  }');
  }

  const aDecl = v.vecA && !v.transA ? 'var<storage, read> Av: array<vec4f>;' : 'var<storage, read> A: array<f32>;';
  const bDecl = v.vecB ? 'var<storage, read> Bv: array<vec4f>;' : 'var<storage, read> B: array<f32>;';
  return /* wgsl */ `
// M, N, K: op(A) is M x K, op(B) is K x N. *Batch: element stride between batch items (0 = shared operand).
// accumulate != 0: C += result (used to sum batch slices in order).
struct Params { M: u32, N: u32, K: u32, aBatch: u32, bBatch: u32, cBatch: u32, tilesN: u32, tilesM: u32, accumulate: u32 }
override WG: u32 = 8u;
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) ${aDecl}
@group(0) @binding(2) ${bDecl}
@group(0) @binding(3) var<storage, read_write> C: array<f32>;
${v.bias ? '@group(0) @binding(4) var<storage, read> bias: array<f32>;' : ''}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  // Tiles are numbered column-fastest over x and y (y folds counts above 65535); z is the batch item.
  let tile = wg.x + wg.y * nwg.x;
  if (tile >= params.tilesN * params.tilesM) { return; }
  let rowM = (tile / params.tilesN) * ${TM}u;
  let colN = (tile % params.tilesN) * (WG * ${4 * TNV}u);
  let aOff = wg.z * params.aBatch;
  let bOff = wg.z * params.bBatch;
  let cOff = wg.z * params.cBatch;
${lines.join('\n')}
}
`;
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

// Deterministic sum over the outer and inner axes of a [outer, C, inner] tensor: out[c] (+)= sum_{o,i} g[o, c, i].
// One workgroup per channel: each invocation sums a fixed strided subset, then a fixed-shape tree in workgroup
// memory, so the result does not depend on scheduling. `accumulate` adds to out (used slice by slice, in order).
export const channelSumWgsl: KernelDef = {
  name: 'channelSum',
  wgsl: /* wgsl */ `
struct Params { outer: u32, channels: u32, inner: u32, accumulate: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
var<workgroup> partial: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  let c = wg.x + wg.y * nwg.x;
  let live = c < params.channels;
  var s = 0.0;
  if (live) {
    if (params.inner >= 64u) {
      for (var o = 0u; o < params.outer; o++) {
        let base = (o * params.channels + c) * params.inner;
        for (var i = lane; i < params.inner; i += 64u) { s += g[base + i]; }
      }
    } else {
      let total = params.outer * params.inner;
      for (var t = lane; t < total; t += 64u) {
        let o = t / params.inner;
        s += g[(o * params.channels + c) * params.inner + t - o * params.inner];
      }
    }
  }
  partial[lane] = s;
  workgroupBarrier();
  for (var stride = 32u; stride > 0u; stride >>= 1u) {
    if (lane < stride) { partial[lane] += partial[lane + stride]; }
    workgroupBarrier();
  }
  if (live && lane == 0u) {
    out[c] = select(0.0, out[c], params.accumulate != 0u) + partial[0];
  }
}
`,
};

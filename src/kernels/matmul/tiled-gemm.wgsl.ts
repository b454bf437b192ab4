import type { KernelDef } from '../../runtime/kernel.js';

// The GPU GEMM: C[b] = op(A[b]) @ op(B[b]) (+ bias), op = identity or transpose, row-major storage, the same
// operands, params and batch strides as the register-tile GEMM (matmul.wgsl.ts), for any subgroup size or none.
//
// Tiling: a workgroup of (BN/TN) x (BM/TM) invocations owns a BM x BN tile of C; each invocation TM rows x TN
// columns of it (TM/4 vec4s of rows by TN/4 vec4s of columns, all accumulators in registers). The K axis is walked
// BK at a time: the A tile (BM x BK) and the B tile (BK x BN) are staged in workgroup memory, both stored k-major
// ([k][m] and [k][n]) so that each k step reads TM/4 + TN/4 vec4s per invocation for TM * TN multiply-adds. Global
// loads are quads along each operand's contiguous axis (k for A, n for B, or the other way when transposed): one
// vec4 load where that axis and the batch stride are multiples of 4 ("vecA"/"vecB"), else four scalar loads.
// Every element past M, N or K loads as 0, so borders need no padded copy and the k loop has no remainder. The next
// K tile is loaded into registers while the current one is multiplied out of workgroup memory (two barriers per K
// tile: one before the tile is overwritten, one after it is written).
//
// Gathered operands (TiledGemmGather): instead of the strided read, each quad of op(A) or op(B) is what a WGSL
// function supplied with the kernel returns (conv2d's implicit GEMM reads its input windows this way, borders as 0,
// with the geometry in extra Params members so that one pipeline serves every shape). One call per quad, so that
// the function can decompose its indices once per quad (integer divisions dominate both its cost and, on
// lavapipe, the compile time).

export interface TiledGemmShape {
  /** Rows and columns of C per workgroup. */
  bm: number;
  bn: number;
  /** The K tile staged in workgroup memory per step. */
  bk: number;
  /** Rows and columns of C per invocation (multiples of 4). */
  tm: number;
  tn: number;
}

export interface TiledGemmKernelOptions extends TiledGemmShape {
  transA: boolean;
  transB: boolean;
  /** A's quads read as one vec4 (its contiguous axis and batch stride are multiples of 4). */
  vecA: boolean;
  vecB: boolean;
  /** A bias per column of C (bias[n]); with rowBias, per row (bias[m]). */
  bias: boolean;
  rowBias?: boolean;
  /** Operands read through WGSL functions instead of strided loads (vecA/vecB must be false for them). */
  gather?: TiledGemmGather;
}

/**
 * Gathered operands: `wgsl` defines `fn gatherA(k: u32, m: u32, z: u32) -> vec4f` (when `a`) and/or
 * `fn gatherB(k: u32, n: u32, z: u32) -> vec4f` (when `b`): the quad of op(A) / op(B) of batch item z (wg.z) that
 * starts at (k, m) / (k, n) and runs along the operand's quad axis, read from the storage array A / B
 * (array<f32>). The trans flag picks that axis: 4 consecutive k where the dense operand would be k-contiguous (A
 * not transposed, B transposed), else 4 consecutive m / n. Elements past K, M or N must be 0 (the function masks
 * them; quads start inside the tile, not necessarily inside the matrix). The functions may read `params`, whose
 * struct gets the u32 members named in `params` after the dense ones. The other operand is read with scalar loads
 * (no vec4 variant), so that one pipeline serves every shape.
 */
export interface TiledGemmGather {
  /** Names the kernel (tiledGemm<tile>_<name>); one name per distinct `wgsl`. */
  name: string;
  a: boolean;
  b: boolean;
  params: readonly string[];
  wgsl: string;
}

/** Invocations per workgroup. */
export function tiledGemmInvocations(s: TiledGemmShape): number {
  return (s.bm / s.tm) * (s.bn / s.tn);
}

/** Bytes of workgroup memory: the A and B tiles. */
export function tiledGemmWorkgroupBytes(s: TiledGemmShape): number {
  return (s.bk * s.bm + s.bk * s.bn) * 4;
}

const cache = new Map<string, KernelDef>();

export function tiledGemmKernel(o: TiledGemmKernelOptions): KernelDef {
  const extra = o.gather ? `_${o.gather.name}` : '';
  const key = `${o.bm}x${o.bn}x${o.bk}_${o.tm}x${o.tn}_${+o.transA}${+o.transB}${+o.vecA}${+o.vecB}${+o.bias}${o.rowBias ? 'r' : ''}${extra}`;
  let def = cache.get(key);
  if (!def) {
    // Gathered kernels are named by their functions (which fix the trans flags); a row bias is '_rowBias'.
    const trans = o.gather ? o.gather.name : `${o.transA ? 't' : 'n'}${o.transB ? 't' : 'n'}`;
    const name = `tiledGemm${o.bm}x${o.bn}x${o.bk}_${o.tm}x${o.tn}_${trans}${o.bias ? (o.rowBias ? '_rowBias' : '_bias') : ''}`;
    def = { name, wgsl: tiledGemmWgsl(o) };
    cache.set(key, def);
  }
  return def;
}

/** One operand's staging: which quads each invocation loads, how, and where they go in workgroup memory. */
interface Operand {
  name: 'a' | 'b';
  /** Rows of the tile along the operand's own (non-k) axis: BM for A, BN for B. */
  span: number;
  /** The operand is stored with k as its contiguous axis (A not transposed, B transposed). */
  kContiguous: boolean;
  vec: boolean;
  /** Read through gatherA / gatherB (TiledGemmGather). */
  gathered: boolean;
  /** The storage binding (Av/A, Bv/B), and the names of its non-k extent and of the tile's origin on that axis. */
  binding: string;
  extent: string;
  origin: string;
  /** Element index in storage of (k, i), i along the non-k axis. */
  index: (k: string, i: string) => string;
  shared: string;
}

function tiledGemmWgsl(o: TiledGemmKernelOptions): string {
  const { bm: BM, bn: BN, bk: BK, tm: TM, tn: TN } = o;
  const TX = BN / TN;
  const WGN = tiledGemmInvocations(o);
  for (const [what, v] of [['BM', BM], ['BN', BN], ['BK', BK], ['TM', TM], ['TN', TN]] as const) {
    if (!(v > 0 && v % 4 === 0)) throw new Error(`tiledGemmKernel: ${what} = ${v} is not a positive multiple of 4`);
  }
  if (BM % TM || BN % TN) throw new Error(`tiledGemmKernel: the ${BM}x${BN} tile does not divide into ${TM}x${TN} per invocation`);
  const gather = o.gather;
  if (gather && (o.vecA || o.vecB)) throw new Error('tiledGemmKernel: a kernel with a gathered operand takes scalar loads (vecA/vecB false)');
  if (o.rowBias && !o.bias) throw new Error('tiledGemmKernel: rowBias without bias');
  const a: Operand = {
    name: 'a',
    span: BM,
    kContiguous: !o.transA,
    vec: o.vecA,
    gathered: !!gather?.a,
    binding: o.vecA ? 'Av' : 'A',
    extent: 'params.M',
    origin: 'row0',
    index: (k, m) => (o.transA ? `aOff + (${k}) * params.M + ${m}` : `aOff + (${m}) * params.K + ${k}`),
    shared: 'As',
  };
  const b: Operand = {
    name: 'b',
    span: BN,
    kContiguous: o.transB,
    vec: o.vecB,
    gathered: !!gather?.b,
    binding: o.vecB ? 'Bv' : 'B',
    extent: 'params.N',
    origin: 'col0',
    index: (k, n) => (o.transB ? `bOff + (${n}) * params.K + ${k}` : `bOff + (${k}) * params.N + ${n}`),
    shared: 'Bs',
  };

  const lines: string[] = [];
  const L = (s: string): void => {
    lines.push(s);
  };
  const slotsOf = (op: Operand): number => {
    const quads = (op.span * BK) / 4;
    if (quads % WGN) throw new Error(`tiledGemmKernel: ${quads} quads of ${op.name} do not divide over ${WGN} invocations`);
    return quads / WGN;
  };

  // Each load slot s of an operand: quad q = lid + s * WGN of the tile, as (k, i) within the tile; the quad runs
  // along the contiguous axis (4 k values, or 4 i values).
  for (const op of [a, b]) {
    for (const s of range(slotsOf(op))) {
      L(`  let ${op.name}q${s} = lid + ${s * WGN}u;`);
      if (op.kContiguous) {
        L(`  let ${op.name}k${s} = (${op.name}q${s} % ${BK / 4}u) * 4u;`);
        L(`  let ${op.name}i${s} = ${op.name}q${s} / ${BK / 4}u;`);
      } else {
        L(`  let ${op.name}k${s} = ${op.name}q${s} / ${op.span / 4}u;`);
        L(`  let ${op.name}i${s} = (${op.name}q${s} % ${op.span / 4}u) * 4u;`);
      }
      L(`  var ${op.name}r${s} = vec4f(0.0);`);
    }
  }

  // Loads of the K tile starting at k0 into the registers.
  const load = (k0: string, indent: string): void => {
    for (const op of [a, b]) {
      for (const s of range(slotsOf(op))) {
        const k = `${k0} + ${op.name}k${s}`;
        const i = `${op.origin} + ${op.name}i${s}`;
        const r = `${op.name}r${s}`;
        if (op.gathered) {
          L(`${indent}${r} = gather${op.name.toUpperCase()}(${k}, ${i}, wg.z);`);
        } else if (op.vec) {
          // The quad lies wholly inside or wholly outside the operand.
          L(`${indent}{`);
          L(`${indent}  let ok = ${k} < params.K && ${i} < ${op.extent};`);
          L(`${indent}  let at = select(0u, ${op.index(k, i)}, ok);`);
          L(`${indent}  ${r} = select(vec4f(0.0), ${op.binding}[at / 4u], ok);`);
          L(`${indent}}`);
        } else {
          L(`${indent}{`);
          for (const c of range(4)) {
            const kc = op.kContiguous ? `${k} + ${c}u` : k;
            const ic = op.kContiguous ? i : `${i} + ${c}u`;
            L(`${indent}  let ok${c} = ${kc} < params.K && ${ic} < ${op.extent};`);
            L(`${indent}  ${r}[${c}] = select(0.0, ${op.binding}[select(0u, ${op.index(kc, ic)}, ok${c})], ok${c});`);
          }
          L(`${indent}}`);
        }
      }
    }
  };

  // Registers into workgroup memory, k-major: a quad along i is one vec4; a quad along k is 4 components.
  const stage = (indent: string): void => {
    for (const op of [a, b]) {
      const row = op.span / 4;
      for (const s of range(slotsOf(op))) {
        if (op.kContiguous) {
          for (const c of range(4)) {
            L(`${indent}${op.shared}[(${op.name}k${s} + ${c}u) * ${row}u + ${op.name}i${s} / 4u][${op.name}i${s} % 4u] = ${op.name}r${s}[${c}];`);
          }
        } else {
          L(`${indent}${op.shared}[${op.name}k${s} * ${row}u + ${op.name}i${s} / 4u] = ${op.name}r${s};`);
        }
      }
    }
  };

  const rowQuads = range(TM / 4);
  const colQuads = range(TN / 4);
  for (const i of range(TM)) for (const j of colQuads) L(`  var acc${i}_${j} = vec4f(0.0);`);
  L(`  let tiles = (params.K + ${BK - 1}u) / ${BK}u;`);
  load('0u', '  ');
  L('  for (var t = 0u; t < tiles; t++) {');
  L('    workgroupBarrier();');
  stage('    ');
  L('    workgroupBarrier();');
  L('    if (t + 1u < tiles) {');
  L(`      let k0 = (t + 1u) * ${BK}u;`);
  load('k0', '      ');
  L('    }');
  L(`    for (var kk = 0u; kk < ${BK}u; kk++) {`);
  for (const q of rowQuads) L(`      let a${q} = As[kk * ${BM / 4}u + ty * ${TM / 4}u + ${q}u];`);
  for (const j of colQuads) L(`      let b${j} = Bs[kk * ${BN / 4}u + tx * ${TN / 4}u + ${j}u];`);
  for (const q of rowQuads) for (const r of range(4)) for (const j of colQuads) L(`      acc${q * 4 + r}_${j} += a${q}[${r}] * b${j};`);
  L('    }');
  L('  }');

  // Masked stores; the bias is one value per column (or, rowBias, per row).
  const colBias = o.bias && !o.rowBias;
  for (const j of colQuads) {
    L(`  let n${j} = col0 + tx * ${TN}u + ${4 * j}u;`);
    if (colBias) L(`  let bias${j} = vec4f(${range(4).map((c) => `bias[min(n${j} + ${c}u, params.N - 1u)]`).join(', ')});`);
  }
  for (const i of range(TM)) {
    L(`  let m${i} = row0 + ty * ${TM}u + ${i}u;`);
    L(`  if (m${i} < params.M) {`);
    if (o.rowBias) L(`    let bias${i} = bias[m${i}];`);
    for (const j of colQuads) {
      const add = o.rowBias ? ` + bias${i}` : colBias ? ` + bias${j}` : '';
      L(`    let o${i}_${j} = acc${i}_${j}${add};`);
      for (const c of range(4)) {
        L(`    if (n${j} + ${c}u < params.N) {`);
        L(`      let at = cOff + m${i} * params.N + n${j} + ${c}u;`);
        L(`      C[at] = select(0.0, C[at], params.accumulate != 0u) + o${i}_${j}[${c}];`);
        L('    }');
      }
    }
    L('  }');
  }

  const extraParams = (gather?.params ?? []).map((p) => `, ${p}: u32`).join('');
  const aDecl = o.vecA ? 'var<storage, read> Av: array<vec4f>;' : 'var<storage, read> A: array<f32>;';
  const bDecl = o.vecB ? 'var<storage, read> Bv: array<vec4f>;' : 'var<storage, read> B: array<f32>;';
  return /* wgsl */ `
// M, N, K: op(A) is M x K, op(B) is K x N. *Batch: element stride between batch items (0 = shared operand).
// accumulate != 0: C += result (used to sum batch slices in order).
struct Params { M: u32, N: u32, K: u32, aBatch: u32, bBatch: u32, cBatch: u32, tilesN: u32, tilesM: u32, accumulate: u32${extraParams} }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) ${aDecl}
@group(0) @binding(2) ${bDecl}
@group(0) @binding(3) var<storage, read_write> C: array<f32>;
${o.bias ? '@group(0) @binding(4) var<storage, read> bias: array<f32>;' : ''}
// The K tile of op(A) as [k][m] and of op(B) as [k][n], in vec4s along m and n.
var<workgroup> As: array<vec4f, ${(BK * BM) / 4}>;
var<workgroup> Bs: array<vec4f, ${(BK * BN) / 4}>;
${gather ? gather.wgsl : ''}
@compute @workgroup_size(${WGN})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  // Tiles are numbered column-fastest over x and y (y folds counts above the per-dimension limit); z is the batch
  // item. The test is uniform over the workgroup, so the barriers below stay in uniform control flow.
  let tile = wg.x + wg.y * nwg.x;
  if (tile >= params.tilesN * params.tilesM) { return; }
  let row0 = (tile / params.tilesN) * ${BM}u;
  let col0 = (tile % params.tilesN) * ${BN}u;
  let aOff = wg.z * params.aBatch;
  let bOff = wg.z * params.bBatch;
  let cOff = wg.z * params.cBatch;
  let tx = lid % ${TX}u;
  let ty = lid / ${TX}u;
${lines.join('\n')}
}
`;
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

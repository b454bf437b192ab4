import type { KernelDef } from '../../runtime/kernel.js';

// The texture GEMM: C[b] (+)= A[b] @ B[b], with both operands in rgba32float 2d-array textures, for adapters with
// subgroups of a known, fixed size SG (lavapipe: 8, SwiftShader: 4).
//
// Why textures and subgroups (measured on lavapipe, docs/kernels-performance.md): llvmpipe runs one invocation per
// SIMD lane and compiles every storage-buffer load whose address is not a compile-time constant into a per-lane
// loop of bounds checks and branches, even when the address is the same for all lanes. A textureLoad is one
// branch-free call that returns 4 floats per lane. So each lane fetches different data with textureLoad and the
// values every lane needs are passed around with subgroupShuffle (on lavapipe one vpermps).
//
// Layouts (one texel = 4 consecutive floats):
//   A: texel (kq, m) of layer la holds A[m][4kq .. 4kq+3]   (rows m, the reduction index k along the row)
//   B: texel (nq, k) of layer lb holds B[k][4nq .. 4nq+3]   (rows k, the output columns along the row)
// A workgroup is one subgroup of SG lanes and owns R rows x 4*SG*CC columns of C: lane l owns the 4 columns of texel
// columns nq = tileN*SG*CC + c*SG + l. Per block of 4*SG reduction steps, lane l loads texel (kBlock*SG + l, m0 + r)
// of A for each of the R rows (so the subgroup holds 4*SG k values of every row). A runtime loop then walks the
// source lanes: for source lane `src` it loads the B texels of the 4 steps that lane's A texels cover, and for each
// group of G rows (unrolled) adds subgroupShuffle(A[m0 + r][k], src) * B[k] over those 4 steps to the group's
// accumulators. The k loop over blocks runs kBlocks times, inside a loop over kLayers layers (a reduction that
// spans layers, e.g. over samples). Both operands must be zero in the padding of k (past the real K) so that padding
// adds nothing; rows past M and columns past N may hold anything (they are not stored).
//
// Why this shape (lavapipe, docs/kernels-performance.md "The texture GEMM's loop"): a textureLoad is an out-of-line
// call costing about 19 ns per subgroup here, so each B texel must serve many rows (R = 64) and each A texel many
// columns; the per-lane accumulators (R x CC vec4s) cannot all stay in registers, but a group of G rows' 4G values
// can while its 4 steps run, so each accumulator is spilled and reloaded once per 4 steps instead of on every step.
// G is chosen per adapter (texture-gemm.ts, textureGemmRegisterGroup): with AVX-512's 32 vector registers G = 4 fits,
// with AVX2's 16 it spills and G = 1 is faster. The loop over source lanes keeps the machine code of the body
// (22-29 KB) inside the 32 KB instruction cache, where unrolling all 4*SG steps made it 100 KB.
//
// Outputs (a compile-time variant):
// - 'texture': a storage texture in B's layout, texel (nq, m) of layer z (the next Winograd transform reads it
//   with textureLoad);
// - 'strided': a buffer of floats at base + z * cBatch + (m / rowsPerGroup) * groupStride + (m % rowsPerGroup) *
//   rowStride + n * colStride, so row-major matrices and NCHW conv outputs (rows = (sample, position)) are stored
//   in place; 'strided-accumulate' adds to what C holds (sums batch slices in order).
// (A row-major variant with vec4 stores measured no faster on lavapipe, and SwiftShader's compiler crashed on it.)

export type TextureGemmOutputKind = 'texture' | 'strided' | 'strided-accumulate';

export interface TextureGemmVariant {
  /** Subgroup (and workgroup) size. */
  sg: number;
  /** Rows of C per workgroup. */
  rows: number;
  /** Texel columns per lane (the workgroup owns 4 * sg * cols columns); rows * cols vec4 accumulators per lane. */
  cols: number;
  /** Rows whose accumulators are updated together over one source lane's 4 steps (divides `rows`). */
  group: number;
  output: TextureGemmOutputKind;
}

const cache = new Map<string, KernelDef>();

export function textureGemmKernel(v: TextureGemmVariant): KernelDef {
  if (v.rows % v.group !== 0) throw new Error(`textureGemmKernel: group ${v.group} does not divide ${v.rows} rows`);
  const key = `${v.sg}x${v.rows}x${v.cols}g${v.group}${v.output}`;
  let def = cache.get(key);
  if (!def) cache.set(key, (def = { name: `textureGemm_${v.output}_sg${v.sg}_${v.rows}x${v.cols}g${v.group}`, wgsl: textureGemmWgsl(v) }));
  return def;
}

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

function textureGemmWgsl({ sg: SG, rows: R, cols: CC, group: G, output }: TextureGemmVariant): string {
  const steps = 4 * SG;
  const comp = 'xyzw';
  const cells = range(R).flatMap((r) => range(CC).map((c) => [r, c] as const));
  const decl = cells.map(([r, c]) => `  var acc${r}_${c} = vec4f(0.0);`).join('\n');
  const loadA = range(R).map((r) => `      let a${r} = textureLoad(A, vec2u(kq, m0 + ${r}u), la, 0);`).join('\n');
  // One pass of the loop over source lanes: B of the 4 steps k0 + 4 src + q, then the row groups.
  const pass: string[] = [];
  for (const q of range(4)) {
    for (const c of range(CC)) pass.push(`        let b${q}_${c} = textureLoad(B, vec2u(nq${c}, k0 + src * 4u + ${q}u), lb, 0);`);
  }
  for (let g0 = 0; g0 < R; g0 += G) {
    for (const q of range(4)) {
      for (let r = g0; r < g0 + G; r++) {
        pass.push(`        { let s = subgroupShuffle(a${r}.${comp[q]}, src);`);
        for (const c of range(CC)) pass.push(`          acc${r}_${c} += s * b${q}_${c};`);
        pass.push('        }');
      }
    }
  }
  const columns = range(CC).map((c) => `  let nq${c} = nqBase + ${c * SG}u;\n  let n${c} = nq${c} * 4u;`).join("\n");
  const store = cells.map(([r, c]) => {
    const m = `m0 + ${r}u`;
    const acc = `acc${r}_${c}`;
    if (output === 'texture') return `  textureStore(C, vec2u(nq${c}, ${m}), wg.z, ${acc});`;
    const value = output === 'strided-accumulate' ? `C[o] + ${acc}[j]` : `${acc}[j]`;
    return `  if (${m} < params.M) {
    let at = params.cBase + wg.z * params.cBatch + ((${m}) / params.rowsPerGroup) * params.groupStride + ((${m}) % params.rowsPerGroup) * params.rowStride;
    for (var j = 0u; j < 4u; j++) {
      if (n${c} + j < params.N) {
        let o = at + (n${c} + j) * params.colStride;
        C[o] = ${value};
      }
    }
  }`;
  });
  const params =
    output === 'texture' ? '' : 'cBase: u32, cBatch: u32, rowsPerGroup: u32, groupStride: u32, rowStride: u32, colStride: u32, M: u32, N: u32,';
  const cDecl = output === 'texture' ? 'var C: texture_storage_2d_array<rgba32float, write>;' : 'var<storage, read_write> C: array<f32>;';
  return /* wgsl */ `
enable subgroups;

// kBlocks: blocks of ${steps} reduction steps per layer; kLayers: layers summed. aLayers / bLayers: first layer of
// batch item z is z * aLayers (0: shared operand). tilesN: column tiles (workgroups are numbered column-fastest
// over x and y). The output's addressing (M, N: rows and columns stored) is described at the top of
// texture-gemm.wgsl.ts.
struct Params {
  kBlocks: u32, kLayers: u32, aLayers: u32, bLayers: u32, tilesN: u32, tiles: u32,
  ${params}
}
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var A: texture_2d_array<f32>;
@group(0) @binding(2) var B: texture_2d_array<f32>;
@group(0) @binding(3) ${cDecl}

@compute @workgroup_size(${SG})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lane: u32) {
  // A workgroup computes tiles first, first + groups, ... of its batch item (llvmpipe pays a fixed cost per
  // workgroup, so the host launches a bounded number of them).
  let groups = nwg.x * nwg.y;
  for (var tile = wg.x + wg.y * nwg.x; tile < params.tiles; tile += groups) {
  let m0 = (tile / params.tilesN) * ${R}u;
  let nqBase = (tile % params.tilesN) * ${SG * CC}u + lane;
${columns}
${decl}
  for (var l = 0u; l < params.kLayers; l++) {
    let la = wg.z * params.aLayers + l;
    let lb = wg.z * params.bLayers + l;
    for (var kb = 0u; kb < params.kBlocks; kb++) {
      let kq = kb * ${SG}u + lane;
      let k0 = kb * ${steps}u;
${loadA}
      for (var src = 0u; src < ${SG}u; src++) {
${pass.join('\n')}
      }
    }
  }
${store.join('\n')}
  }
}
`;
}

/**
 * An operand of the texture GEMM from any strided 3-D view of a buffer: texel (cq, r) of layer l holds
 * src[l * ls + row(r) + col(c)] for c = 4cq .. 4cq+3, zero for r >= rows or c >= cols (the padding of a GEMM
 * operand), where row(r) = (r / rg) * rgs + (r % rg) * rs and col(c) = (c / cg) * cgs + (c % cg) * cs: rows (or
 * columns) in groups, for operands that stack several samples along one dimension (rows r = n * P + p of sample n,
 * position p). Without groups (rg = cg = 0xffffffff) row(r) = r * rs. Used for matrices in either orientation, conv
 * weights ([Cout][K] read as rows k or rows co) and output gradients ([n][Cout][P] read as rows p or rows co).
 */
export const stridedTextureWgsl: KernelDef = {
  name: 'stridedTexture',
  wgsl: /* wgsl */ `
struct Params { rows: u32, cols: u32, ls: u32, rs: u32, cs: u32, Rp: u32, Cq: u32, layers: u32, rg: u32, rgs: u32, cg: u32, cgs: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var T: texture_storage_2d_array<rgba32float, write>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * 64u;
  if (i >= params.layers * params.Rp * params.Cq) { return; }
  let cq = i % params.Cq;
  let r = (i / params.Cq) % params.Rp;
  let l = i / (params.Cq * params.Rp);
  let rc = min(r, params.rows - 1u);
  let rowAt = l * params.ls + (rc / params.rg) * params.rgs + (rc % params.rg) * params.rs;
  var v = vec4f(0.0);
  for (var j = 0u; j < 4u; j++) {
    let c = cq * 4u + j;
    let cc = min(c, params.cols - 1u);
    v[j] = select(0.0, src[rowAt + (cc / params.cg) * params.cgs + (cc % params.cg) * params.cs], r < params.rows && c < params.cols);
  }
  textureStore(T, vec2u(cq, r), l, v);
}
`,
};

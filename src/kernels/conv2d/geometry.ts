// conv2d's geometry: PyTorch's shape checks and output-size formula, the implicit GEMM's tile shape per adapter, and
// the batch slices of a call. Every lowering (lowerings.ts) takes the Conv2dGeometry this derives.
import { sliceAlignment, type BatchChunk } from '../../runtime/chunks.js';
import type { Runtime } from '../../runtime/runtime.js';

export interface Conv2dOptions {
  stride?: number | readonly [number, number];
  padding?: number | readonly [number, number];
}

export interface ConvTiling {
  tm: number;
  tnv: number;
  wg: number;
}

export interface Conv2dGeometry {
  n: number;
  cin: number;
  h: number;
  w: number;
  cout: number;
  kh: number;
  kw: number;
  sh: number;
  sw: number;
  ph: number;
  pw: number;
  oh: number;
  ow: number;
}

function pair(v: number | readonly [number, number] | undefined, dflt: number): [number, number] {
  if (v === undefined) return [dflt, dflt];
  return typeof v === 'number' ? [v, v] : [v[0], v[1]];
}

/** Checks shapes and options and derives the output size (PyTorch's floor formula). */
export function conv2dGeometry(xShape: readonly number[], wShape: readonly number[], opts: Conv2dOptions = {}): Conv2dGeometry {
  if (xShape.length !== 4 || wShape.length !== 4) {
    throw new Error(`conv2d: x must be [N, C, H, W] and w [Cout, Cin, KH, KW], got [${xShape.join(', ')}] and [${wShape.join(', ')}]`);
  }
  const [n, cin, h, w] = xShape as [number, number, number, number];
  const [cout, cinW, kh, kw] = wShape as [number, number, number, number];
  if (cinW !== cin) throw new Error(`conv2d: x has ${cin} channels but w expects ${cinW} (groups are not supported)`);
  const [sh, sw] = pair(opts.stride, 1);
  const [ph, pw] = pair(opts.padding, 0);
  if (!(sh >= 1 && sw >= 1 && ph >= 0 && pw >= 0) || ![sh, sw, ph, pw].every(Number.isInteger)) {
    throw new Error(`conv2d: invalid stride ${sh}x${sw} or padding ${ph}x${pw}`);
  }
  const oh = Math.floor((h + 2 * ph - kh) / sh) + 1;
  const ow = Math.floor((w + 2 * pw - kw) / sw) + 1;
  if (oh < 1 || ow < 1 || kh < 1 || kw < 1) throw new Error(`conv2d: a ${kh}x${kw} kernel does not fit the padded ${h}x${w} input`);
  return { n, cin, h, w, cout, kh, kw, sh, sw, ph, pw, oh, ow };
}

/**
 * Tile shape per adapter: on CPU drivers one 8-wide subgroup per workgroup with 12 positions x 8 channels per
 * invocation (measured best of 8..16 x 4..12, docs/kernels-performance.md); on GPUs a full warp or two per
 * workgroup, narrowed for few channels.
 */
export function convTiling(rt: Runtime, cols: number): ConvTiling {
  if (rt.ctx.isCpuDriver) return { tm: 12, tnv: cols > 32 ? 2 : 1, wg: 8 };
  const wg = Math.min(64, Math.max(32, 2 ** Math.ceil(Math.log2(Math.max(1, Math.ceil(cols / 4))))));
  return { tm: 8, tnv: 1, wg };
}

/**
 * Batch slices for one conv call: `bound` lists the per-sample sizes of tensors bound at slice offsets (they set
 * the offset alignment, as in chunks.ts' batchChunks), `temps` those of per-slice scratch tensors bound from
 * offset 0 (they only have to fit).
 */
export function convChunks(rt: Runtime, n: number, bound: number[], temps: number[]): BatchChunk[] {
  const largest = Math.max(1, ...bound, ...temps);
  const fit = Math.floor(rt.bindingLimit / (largest * 4));
  if (fit >= n) return [{ start: 0, count: n }];
  const unit = sliceAlignment(rt, bound);
  const count = Math.floor(fit / unit) * unit;
  if (count === 0) throw new Error(`conv2d: one sample (${largest * 4} bytes, x${unit} for alignment) exceeds the ${rt.bindingLimit}-byte binding limit`);
  const out: BatchChunk[] = [];
  for (let start = 0; start < n; start += count) out.push({ start, count: Math.min(count, n - start) });
  return out;
}

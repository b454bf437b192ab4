// conv2d's implicit GEMM lowering (conv2d.wgsl.ts' convGemmKernel / convWeightGradKernel): any shape, any adapter,
// register tiles without workgroup memory. Internal layouts, all made per call by cheap copy kernels:
// - forward: the input zero-padded into a scratch copy, weights transposed to [Cin*KH*KW, Cout] (output channels
//   contiguous, read as vec4 per invocation);
// - data gradient: weights as [Cout, KH, KW, Cin]; gx is computed per stride phase (rh, rw) = (ih mod sh, iw mod sw):
//   inside one phase only the taps kh = kh0 + sh*j with kh0 = (rh + ph) mod sh reach an output row, and
//   oh = t + c - j for ih = rh + sh*t, c = (rh + ph - kh0) / sh, so each phase is a dense stride-1 correlation of
//   the padded gy with J = ceil((KH - kh0) / sh) taps (for stride 1 it is the usual flipped-kernel convolution);
// - weight gradient: gy transposed to [N, OH, OW, Cout]; partial sums over disjoint position ranges are added in
//   a fixed order.
import type { BatchChunk } from '../../runtime/chunks.js';
import type { BufferSource, Runtime } from '../../runtime/runtime.js';
import { Tensor } from '../../runtime/tensor.js';
import { flatGrid64 } from './col2im.js';
import { convGemmKernel, convPadWgsl, convWeightGradKernel, sumPartialsWgsl, transposeWgsl } from './conv2d.wgsl.js';
import { convChunks, convTiling, type Conv2dGeometry, type ConvTiling } from './geometry.js';
import type { ConvLoweringDef } from './lowering.js';

const tables = new WeakMap<Runtime, Map<string, Tensor>>();

/** Offset tables depend only on the geometry: built once per runtime and kept. */
function table(rt: Runtime, key: string, make: () => Uint32Array): Tensor {
  let m = tables.get(rt);
  if (!m) tables.set(rt, (m = new Map()));
  let t = m.get(key);
  if (!t) {
    const made = make();
    // Never empty, and an even length so it can be bound as array<vec2u>.
    const data = new Uint32Array(Math.max(2, made.length + (made.length % 2)));
    data.set(made);
    t = Tensor.fromArray(rt, data, [data.length], 'conv2d.table');
    m.set(key, t);
  }
  return t;
}

function recordPad(
  rt: Runtime,
  src: BufferSource,
  dst: BufferSource,
  planes: number,
  srcH: number,
  srcW: number,
  dstH: number,
  dstW: number,
  top: number,
  left: number,
): void {
  const total = planes * dstH * dstW;
  rt.dispatch(convPadWgsl, flatGrid64(rt, total), { src, dst }, { total, srcH, srcW, dstH, dstW, top, left });
}

function recordTranspose(rt: Runtime, src: BufferSource, dst: BufferSource, batch: number, rows: number, cols: number): void {
  const total = batch * rows * cols;
  rt.dispatch(transposeWgsl, flatGrid64(rt, total), { src, dst }, { total, rows, cols });
}

function tiles(rt: Runtime, t: ConvTiling, rowsM: number, cols: number): { tilesM: number; tilesN: number; grid: [number, number] } {
  const tilesN = Math.ceil(cols / (t.wg * 4 * t.tnv));
  const tilesM = Math.ceil(rowsM / t.tm);
  return { tilesM, tilesN, grid: rt.grid(tilesM * tilesN) };
}

/** Zero padding of a sample's `planes` planes: each [h, w] plane copied into [hp, wp] at row `top`, column `left`. */
interface Padding {
  planes: number;
  h: number;
  w: number;
  hp: number;
  wp: number;
  top: number;
  left: number;
}

/** Elements per sample of the padded copy (none without padding). */
function paddedPer(pad: Padding | null): number {
  return pad ? pad.planes * pad.hp * pad.wp : 0;
}

/** The input as the GEMM reads it: padded copy dims and the padding, or the tensor itself when there is no padding. */
function paddedInputDims(g: Conv2dGeometry): { hs: number; ws: number; pad: Padding | null } {
  if (g.ph === 0 && g.pw === 0) return { hs: g.h, ws: g.w, pad: null };
  // Only rows/columns some window touches are kept.
  const hs = (g.oh - 1) * g.sh + g.kh;
  const ws = (g.ow - 1) * g.sw + g.kw;
  return { hs, ws, pad: { planes: g.cin, h: g.h, w: g.w, hp: hs, wp: ws, top: g.ph, left: g.pw } };
}

/**
 * An implicit GEMM's input, one batch slice at a time: the slice of `src` (`per` elements a sample) bound in place,
 * or, with `pad`, copied into a zero-padded scratch tensor (one for all slices, sized for the largest).
 */
function sliceInput(rt: Runtime, src: Tensor<'f32'>, per: number, chunks: BatchChunk[], pad: Padding | null, label: string) {
  const padPer = paddedPer(pad);
  const maxCount = Math.max(...chunks.map((c) => c.count));
  const scratch = pad ? Tensor.empty(rt, [maxCount * padPer], 'f32', label) : null;
  return {
    bind(ch: BatchChunk): BufferSource {
      const slice = src.gpuBindingRange(ch.start * per, ch.count * per);
      if (!pad || !scratch) return slice;
      const dst = scratch.gpuBindingRange(0, ch.count * padPer);
      recordPad(rt, slice, dst, ch.count * pad.planes, pad.h, pad.w, pad.hp, pad.wp, pad.top, pad.left);
      return dst;
    },
    release(): void {
      scratch?.release();
    },
  };
}

/** The implicit-GEMM kernel for `cols` output columns (channels), vec4 weight loads when `cols` allows. */
function convGemm(rt: Runtime, cols: number, bias: boolean, tiling?: ConvTiling) {
  const t = tiling ?? convTiling(rt, cols);
  const vecW = cols % 4 === 0;
  return { t, vecW, def: { ...convGemmKernel({ tm: t.tm, tnv: t.tnv, vecW, bias }), constants: { WG: t.wg } } };
}

// ---- forward ------------------------------------------------------------------------------------------------

function forward(x: Tensor<'f32'>, w: Tensor<'f32'>, b: Tensor<'f32'> | null, g: Conv2dGeometry, tiling?: ConvTiling): Tensor<'f32'> {
  const rt = x.rt;
  const { hs, ws, pad } = paddedInputDims(g);
  const kTotal = g.cin * g.kh * g.kw;
  const tab = table(rt, `fwd:${g.cin},${g.kh},${g.kw},${hs},${ws}`, () => {
    const t = new Uint32Array(kTotal * 2);
    let k = 0;
    for (let ci = 0; ci < g.cin; ci++) {
      for (let i = 0; i < g.kh; i++) {
        for (let j = 0; j < g.kw; j++, k++) {
          t[2 * k] = (ci * hs + i) * ws + j;
          t[2 * k + 1] = k;
        }
      }
    }
    return t;
  });
  const wt = Tensor.empty(rt, [kTotal, g.cout], 'f32', 'conv2d.wT');
  recordTranspose(rt, w, wt, 1, g.cout, kTotal);

  const y = Tensor.empty(rt, [g.n, g.cout, g.oh, g.ow], 'f32', 'conv2d');
  const inPer = g.cin * g.h * g.w;
  const outPer = g.cout * g.oh * g.ow;
  const chunks = convChunks(rt, g.n, [inPer, outPer], [paddedPer(pad)]);
  const input = sliceInput(rt, x, inPer, chunks, pad, 'conv2d.xpad');
  const { t, vecW, def } = convGemm(rt, g.cout, !!b, tiling);
  for (const ch of chunks) {
    const src = input.bind(ch);
    const P = ch.count * g.oh * g.ow;
    const tl = tiles(rt, t, P, g.cout);
    const buffers: Record<string, BufferSource> = { X: src, tab, [vecW ? 'Wv' : 'W']: wt, Y: y.gpuBindingRange(ch.start * outPer, ch.count * outPer) };
    if (b) buffers.bias = b;
    rt.dispatch(def, tl.grid, buffers, {
      P,
      OW: g.ow,
      OHW: g.oh * g.ow,
      cols: g.cout,
      K: kTotal,
      inBatch: g.cin * hs * ws,
      inRow: g.sh * ws,
      inCol: g.sw,
      inBase: 0,
      outBatch: outPer,
      outRow: g.ow,
      outCol: 1,
      outBase: 0,
      outChan: g.oh * g.ow,
      tilesN: tl.tilesN,
      tilesM: tl.tilesM,
    });
  }
  input.release();
  wt.release();
  return y;
}

// ---- data gradient ------------------------------------------------------------------------------------------

interface Phase {
  /** First input row/column of the phase. */
  r: number;
  /** First tap of the phase and the number of taps (stride apart). */
  k0: number;
  taps: number;
  /** oh = t + c - j for input index r + s*t and tap j. */
  c: number;
  /** Input rows/columns in the phase. */
  count: number;
}

function phases(size: number, k: number, s: number, p: number): Phase[] {
  const out: Phase[] = [];
  for (let r = 0; r < Math.min(s, size); r++) {
    const k0 = (r + p) % s;
    const taps = k0 < k ? Math.ceil((k - k0) / s) : 0;
    out.push({ r, k0, taps, c: (r + p - k0) / s, count: Math.ceil((size - r) / s) });
  }
  return out;
}

/** Padding of gy (top/left, and the padded size) so every phase reads in bounds. */
function gyPadding(ph: Phase[], outSize: number): { before: number; size: number } {
  let before = 0;
  for (const q of ph) if (q.taps > 0) before = Math.max(before, q.taps - 1 - q.c);
  let size = before + outSize;
  for (const q of ph) if (q.taps > 0) size = Math.max(size, q.count + q.c + before);
  return { before, size };
}

function data(gy: Tensor<'f32'>, w: Tensor<'f32'>, g: Conv2dGeometry, tiling?: ConvTiling): Tensor<'f32'> {
  const rt = gy.rt;
  const phH = phases(g.h, g.kh, g.sh, g.ph);
  const phW = phases(g.w, g.kw, g.sw, g.pw);
  const padH = gyPadding(phH, g.oh);
  const padW = gyPadding(phW, g.ow);
  const [hq, wq] = [padH.size, padW.size];
  const copy = !(padH.before === 0 && padW.before === 0 && hq === g.oh && wq === g.ow);
  const pad = copy ? { planes: g.cout, h: g.oh, w: g.ow, hp: hq, wp: wq, top: padH.before, left: padW.before } : null;
  const khw = g.kh * g.kw;

  // Weights as [Cout, KH*KW, Cin]: rows (co, kh, kw), the input channel contiguous.
  const wb = Tensor.empty(rt, [g.cout * khw, g.cin], 'f32', 'conv2d.wB');
  recordTranspose(rt, w, wb, g.cout, g.cin, khw);

  const gx = Tensor.empty(rt, [g.n, g.cin, g.h, g.w], 'f32', 'conv2d.gx');
  const gyPer = g.cout * g.oh * g.ow;
  const gxPer = g.cin * g.h * g.w;
  const chunks = convChunks(rt, g.n, [gyPer, gxPer], [paddedPer(pad)]);
  const input = sliceInput(rt, gy, gyPer, chunks, pad, 'conv2d.gypad');
  const { t, vecW, def } = convGemm(rt, g.cin, false, tiling);
  for (const ch of chunks) {
    const src = input.bind(ch);
    const dst = gx.gpuBindingRange(ch.start * gxPer, ch.count * gxPer);
    for (const a of phH) {
      for (const bq of phW) {
        const kTotal = g.cout * a.taps * bq.taps;
        const tab = table(rt, `bwd:${g.cout},${g.kh},${g.kw},${g.sh},${g.sw},${hq},${wq},${a.k0},${a.taps},${bq.k0},${bq.taps}`, () => {
          const tb = new Uint32Array(kTotal * 2);
          let k = 0;
          for (let co = 0; co < g.cout; co++) {
            for (let i = 0; i < a.taps; i++) {
              for (let j = 0; j < bq.taps; j++, k++) {
                tb[2 * k] = (co * hq + (a.taps - 1 - i)) * wq + (bq.taps - 1 - j);
                tb[2 * k + 1] = co * khw + (a.k0 + g.sh * i) * g.kw + (bq.k0 + g.sw * j);
              }
            }
          }
          return tb;
        });
        const P = ch.count * a.count * bq.count;
        const tl = tiles(rt, t, P, g.cin);
        rt.dispatch(def, tl.grid, { X: src, tab, [vecW ? 'Wv' : 'W']: wb, Y: dst }, {
          P,
          OW: bq.count,
          OHW: a.count * bq.count,
          cols: g.cin,
          K: kTotal,
          inBatch: g.cout * hq * wq,
          inRow: wq,
          inCol: 1,
          // Taps are stored reversed (offset taps-1-j), so the window starts taps-1 rows above oh = t + c.
          inBase: (a.c + padH.before - Math.max(a.taps - 1, 0)) * wq + (bq.c + padW.before - Math.max(bq.taps - 1, 0)),
          outBatch: gxPer,
          outRow: g.sh * g.w,
          outCol: g.sw,
          outBase: a.r * g.w + bq.r,
          outChan: g.h * g.w,
          tilesN: tl.tilesN,
          tilesM: tl.tilesM,
        });
      }
    }
  }
  input.release();
  wb.release();
  return gx;
}

// ---- weight gradient ----------------------------------------------------------------------------------------

function weight(gy: Tensor<'f32'>, x: Tensor<'f32'>, g: Conv2dGeometry, tiling?: ConvTiling): Tensor<'f32'> {
  const rt = gy.rt;
  const { hs, ws, pad } = paddedInputDims(g);
  const R = g.cin * g.kh * g.kw;
  const xtab = table(rt, `wgrad:${g.cin},${g.kh},${g.kw},${hs},${ws}`, () => {
    const tb = new Uint32Array(R);
    let r = 0;
    for (let ci = 0; ci < g.cin; ci++) for (let i = 0; i < g.kh; i++) for (let j = 0; j < g.kw; j++, r++) tb[r] = (ci * hs + i) * ws + j;
    return tb;
  });
  const gw = Tensor.empty(rt, [g.cout, g.cin, g.kh, g.kw], 'f32', 'conv2d.gw');
  const inPer = g.cin * g.h * g.w;
  const gyPer = g.cout * g.oh * g.ow;
  const chunks = convChunks(rt, g.n, [inPer, gyPer], [paddedPer(pad)]);
  const maxCount = Math.max(...chunks.map((c) => c.count));
  const input = sliceInput(rt, x, inPer, chunks, pad, 'conv2d.xpad');
  const gyT = Tensor.empty(rt, [maxCount * gyPer], 'f32', 'conv2d.gyT');
  const t = tiling ?? convTiling(rt, g.cout);
  const vecG = g.cout % 4 === 0;
  const def = { ...convWeightGradKernel({ tm: t.tm, tnv: t.tnv, vecG }), constants: { WG: t.wg } };
  const tl = tiles(rt, t, R, g.cout);
  // Enough workgroups to keep every thread busy: split the positions when the output has few tiles.
  const rowsTotalMax = maxCount * g.oh;
  const wantSplits = Math.ceil(256 / (tl.tilesM * tl.tilesN));
  // (Capped so the partial sums stay bindable.)
  const splits = Math.max(1, Math.min(wantSplits, rowsTotalMax, Math.floor(rt.bindingLimit / (4 * g.cout * R))));
  const part = splits > 1 || chunks.length > 1 ? Tensor.empty(rt, [splits * g.cout * R], 'f32', 'conv2d.gwPart') : null;
  chunks.forEach((ch, idx) => {
    const src = input.bind(ch);
    const gT = gyT.gpuBindingRange(0, ch.count * gyPer);
    recordTranspose(rt, gy.gpuBindingRange(ch.start * gyPer, ch.count * gyPer), gT, ch.count, g.cout, g.oh * g.ow);
    const rowsTotal = ch.count * g.oh;
    const s = Math.min(splits, rowsTotal);
    const rowsPerSplit = Math.ceil(rowsTotal / s);
    const usedSplits = Math.ceil(rowsTotal / rowsPerSplit);
    rt.dispatch(def, [tl.grid[0], tl.grid[1], usedSplits], { X: src, xtab, [vecG ? 'Gv' : 'G']: gT, part: part ?? gw }, {
      R,
      cols: g.cout,
      OH: g.oh,
      OW: g.ow,
      inBatch: g.cin * hs * ws,
      inRow: g.sh * ws,
      inCol: g.sw,
      rowsTotal,
      rowsPerSplit,
      tilesN: tl.tilesN,
      tilesM: tl.tilesM,
    });
    if (part) {
      const n = g.cout * R;
      rt.dispatch(sumPartialsWgsl, flatGrid64(rt, n), { part, out: gw }, { n, splits: usedSplits, accumulate: idx > 0 ? 1 : 0 });
    }
  });
  part?.release();
  gyT.release();
  input.release();
  return gw;
}

export const implicitLowering: ConvLoweringDef<'implicit'> = {
  name: 'implicit',
  unsupported: () => null,
  takesTiling: true,
  forward,
  data,
  weight,
};

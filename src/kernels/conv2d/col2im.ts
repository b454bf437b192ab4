// Host helpers shared by the conv2d lowerings (conv2d.ts, im2col.ts, winograd.ts): the grid of their flat,
// 64-invocation kernels, and col2im, which sums a data gradient's columns back into gx for the storage-GEMM and
// im2col lowerings.
import type { BufferSource, Runtime } from '../../runtime/runtime.js';
import type { Conv2dGeometry } from './geometry.js';
import { col2imWgsl } from './conv2d.wgsl.js';

/** Workgroups for `total` invocations of a kernel with @workgroup_size(64). */
export function flatGrid64(rt: Runtime, total: number): [number, number] {
  return rt.grid(Math.ceil(total / 64));
}

/**
 * gx[n] (Cin x H x W, `count` samples) = the sum over taps of cols[n] (Cin*KH*KW rows x OH*OW positions, samples back
 * to back), as conv2d.wgsl.ts's col2im kernel (one invocation per element of gx, no atomics).
 */
export function recordCol2im(rt: Runtime, g: Conv2dGeometry, cols: BufferSource, gx: BufferSource, count: number): void {
  const total = count * g.cin * g.h * g.w;
  rt.dispatch(col2imWgsl, flatGrid64(rt, total), { cols, gx }, {
    total,
    C: g.cin,
    H: g.h,
    W: g.w,
    KH: g.kh,
    KW: g.kw,
    SH: g.sh,
    SW: g.sw,
    PH: g.ph,
    PW: g.pw,
    OH: g.oh,
    OW: g.ow,
  });
}

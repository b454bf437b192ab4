// Float64 CPU references for conv2d (tests only): direct loops over the definition, NCHW / OIHW.
import type { Conv2dGeometry } from './geometry.js';

/** Calls tap(xi, wi) with the x and w indices of every tap of output (n, co, oy, ox) that lands inside the input. */
function forEachTap(g: Conv2dGeometry, n: number, co: number, oy: number, ox: number, tap: (xi: number, wi: number) => void): void {
  for (let ci = 0; ci < g.cin; ci++) {
    for (let i = 0; i < g.kh; i++) {
      const iy = oy * g.sh - g.ph + i;
      if (iy < 0 || iy >= g.h) continue;
      for (let j = 0; j < g.kw; j++) {
        const ix = ox * g.sw - g.pw + j;
        if (ix < 0 || ix >= g.w) continue;
        tap(((n * g.cin + ci) * g.h + iy) * g.w + ix, ((co * g.cin + ci) * g.kh + i) * g.kw + j);
      }
    }
  }
}

export function conv2dRef(x: Float64Array, w: Float64Array, b: Float64Array | null, g: Conv2dGeometry): Float64Array {
  const y = new Float64Array(g.n * g.cout * g.oh * g.ow);
  for (let n = 0; n < g.n; n++) {
    for (let co = 0; co < g.cout; co++) {
      for (let oy = 0; oy < g.oh; oy++) {
        for (let ox = 0; ox < g.ow; ox++) {
          let s = b ? b[co]! : 0;
          forEachTap(g, n, co, oy, ox, (xi, wi) => {
            s += x[xi]! * w[wi]!;
          });
          y[((n * g.cout + co) * g.oh + oy) * g.ow + ox] = s;
        }
      }
    }
  }
  return y;
}

/** The three gradients of sum(y * gy): scattered straight from the forward loop nest. */
export function conv2dBackwardRef(
  x: Float64Array,
  w: Float64Array,
  gy: Float64Array,
  g: Conv2dGeometry,
): { gx: Float64Array; gw: Float64Array; gb: Float64Array } {
  const gx = new Float64Array(x.length);
  const gw = new Float64Array(w.length);
  const gb = new Float64Array(g.cout);
  for (let n = 0; n < g.n; n++) {
    for (let co = 0; co < g.cout; co++) {
      for (let oy = 0; oy < g.oh; oy++) {
        for (let ox = 0; ox < g.ow; ox++) {
          const d = gy[((n * g.cout + co) * g.oh + oy) * g.ow + ox]!;
          gb[co]! += d;
          forEachTap(g, n, co, oy, ox, (xi, wi) => {
            gx[xi]! += d * w[wi]!;
            gw[wi]! += d * x[xi]!;
          });
        }
      }
    }
  }
  return { gx, gw, gb };
}

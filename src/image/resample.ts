/**
 * Bilinear resizing that reproduces Pillow's `Image.resize(size, Image.BILINEAR)` on 8-bit RGB
 * images bit for bit (Pillow 9.x, libImaging/Resample.c): a separable convolution whose triangle
 * filter is widened by the downscaling factor (so downscaling averages over the whole footprint,
 * i.e. it antialiases), coefficients rounded to 22-bit fixed point, horizontal pass first over
 * only the rows the vertical pass needs, each pass rounding and clipping to uint8.
 *
 * torchvision 0.14 resizes PIL images with exactly this, so Resize / RandomResizedCrop /
 * resized_crop match torchvision's PIL path. sharp's own resize (libvips reduce with shrink-on-load
 * and a different kernel normalisation) is close but not identical; see the measurements in
 * test/data/transforms-torchvision.test.ts.
 */
import type { Box, RgbImage } from './image.js';

const PRECISION_BITS = 32 - 8 - 2;
const ONE = 1 << PRECISION_BITS;
const HALF = 1 << (PRECISION_BITS - 1);
const CLIP_HIGH = ONE * 256; // (1 << PRECISION_BITS) << 8

interface Coeffs {
  /** Kernel width (taps reserved per output pixel). */
  ksize: number;
  /** Per output pixel: first input index (relative to the region) and number of taps. */
  bounds: Int32Array;
  /** Fixed-point weights, `ksize` per output pixel. */
  kk: Int32Array;
}

function bilinearFilter(x: number): number {
  if (x < 0) x = -x;
  return x < 1 ? 1 - x : 0;
}

/** Pillow's precompute_coeffs + normalize_coeffs_8bpc for a box [0, inSize) of an axis of length inSize. */
function precomputeCoeffs(inSize: number, outSize: number): Coeffs {
  const scale = inSize / outSize;
  const filterscale = scale < 1 ? 1 : scale;
  const support = 1 * filterscale; // bilinear support is 1
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const kk = new Int32Array(outSize * ksize);
  const pre = new Float64Array(ksize);
  const ss = 1 / filterscale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const w = bilinearFilter((x + xmin - center + 0.5) * ss);
      pre[x] = w;
      ww += w;
    }
    for (let x = 0; x < xmax; x++) {
      const k = ww !== 0 ? pre[x]! / ww : pre[x]!;
      kk[xx * ksize + x] = k < 0 ? Math.trunc(-0.5 + k * ONE) : Math.trunc(0.5 + k * ONE);
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { ksize, bounds, kk };
}

function clip8(ss: number): number {
  if (ss >= CLIP_HIGH) return 255;
  if (ss <= 0) return 0;
  return ss >> PRECISION_BITS;
}

/**
 * Resizes the `region` of `img` (default: all of it) to outWidth x outHeight, as Pillow does for
 * `img.crop(region).resize((outWidth, outHeight), BILINEAR)`. The region must lie inside the image.
 */
export function resizeBilinear(img: RgbImage, outWidth: number, outHeight: number, region?: Box): RgbImage {
  const box = region ?? { top: 0, left: 0, height: img.height, width: img.width };
  if (box.top < 0 || box.left < 0 || box.top + box.height > img.height || box.left + box.width > img.width) {
    throw new RangeError(`resize region ${JSON.stringify(box)} is outside the ${img.width}x${img.height} image`);
  }
  if (box.width <= 0 || box.height <= 0) throw new RangeError(`resize of an empty region ${box.width}x${box.height}`);
  if (!Number.isInteger(outWidth) || !Number.isInteger(outHeight) || outWidth <= 0 || outHeight <= 0) {
    throw new RangeError(`bad output size ${outWidth}x${outHeight}`);
  }
  const srcStride = img.width * 3;
  const src = img.data;

  // Pillow returns a copy when nothing changes.
  if (outWidth === box.width && outHeight === box.height) {
    const out = new Uint8Array(outWidth * outHeight * 3);
    for (let y = 0; y < outHeight; y++) {
      const s = (box.top + y) * srcStride + box.left * 3;
      out.set(src.subarray(s, s + outWidth * 3), y * outWidth * 3);
    }
    return { width: outWidth, height: outHeight, data: out };
  }

  const needHorizontal = outWidth !== box.width;
  const needVertical = outHeight !== box.height;
  const horiz = precomputeCoeffs(box.width, outWidth);
  const vert = precomputeCoeffs(box.height, outHeight);

  // Rows of the region that the vertical pass reads.
  const yFirst = vert.bounds[0]!;
  const yLast = vert.bounds[outHeight * 2 - 2]! + vert.bounds[outHeight * 2 - 1]!;

  // Intermediate image: either the horizontally resampled rows [yFirst, yLast) of the region, or
  // (no horizontal pass) the region itself read in place.
  let mid: Uint8Array;
  let midStride: number;
  let midOffset: number; // byte offset of region row 0, column 0 inside `mid`
  if (needHorizontal) {
    const rows = yLast - yFirst;
    midStride = outWidth * 3;
    mid = new Uint8Array(rows * midStride);
    midOffset = -yFirst * midStride;
    const { ksize, bounds, kk } = horiz;
    for (let y = 0; y < rows; y++) {
      const rowStart = (box.top + yFirst + y) * srcStride + box.left * 3;
      const outRow = y * midStride;
      for (let xx = 0; xx < outWidth; xx++) {
        const xmin = bounds[xx * 2]!;
        const xmax = bounds[xx * 2 + 1]!;
        const k0 = xx * ksize;
        let ss0 = HALF;
        let ss1 = HALF;
        let ss2 = HALF;
        let p = rowStart + xmin * 3;
        for (let x = 0; x < xmax; x++, p += 3) {
          const k = kk[k0 + x]!;
          ss0 += src[p]! * k;
          ss1 += src[p + 1]! * k;
          ss2 += src[p + 2]! * k;
        }
        const o = outRow + xx * 3;
        mid[o] = clip8(ss0);
        mid[o + 1] = clip8(ss1);
        mid[o + 2] = clip8(ss2);
      }
    }
  } else {
    mid = src;
    midStride = srcStride;
    midOffset = box.top * srcStride + box.left * 3;
  }

  if (!needVertical) {
    // Only the horizontal pass was needed: its rows are the output (yFirst = 0, all rows).
    return { width: outWidth, height: outHeight, data: mid };
  }

  const out = new Uint8Array(outWidth * outHeight * 3);
  const rowBytes = outWidth * 3;
  const { ksize, bounds, kk } = vert;
  for (let yy = 0; yy < outHeight; yy++) {
    const ymin = bounds[yy * 2]!;
    const ymax = bounds[yy * 2 + 1]!;
    const k0 = yy * ksize;
    const outRow = yy * rowBytes;
    const base = midOffset + ymin * midStride;
    for (let xb = 0; xb < rowBytes; xb++) {
      let ss = HALF;
      let p = base + xb;
      for (let y = 0; y < ymax; y++, p += midStride) ss += mid[p]! * kk[k0 + y]!;
      out[outRow + xb] = clip8(ss);
    }
  }
  return { width: outWidth, height: outHeight, data: out };
}

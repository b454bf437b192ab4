/** An 8-bit RGB image, rows top to bottom, pixels interleaved (HWC): `data.length === width * height * 3`. */
export interface RgbImage {
  readonly width: number;
  readonly height: number;
  readonly data: Uint8Array;
}

/** A rectangle inside an image, in pixels (torchvision's crop parameters are top, left, height, width). */
export interface Box {
  readonly top: number;
  readonly left: number;
  readonly height: number;
  readonly width: number;
}

export function checkImage(img: RgbImage): void {
  if (!Number.isInteger(img.width) || !Number.isInteger(img.height) || img.width <= 0 || img.height <= 0) {
    throw new RangeError(`bad image size ${img.width}x${img.height}`);
  }
  if (img.data.length !== img.width * img.height * 3) {
    throw new RangeError(`image data holds ${img.data.length} bytes, expected ${img.width}x${img.height}x3`);
  }
}

/** Copies a box out of an image; parts of the box outside the image are black (like PIL's crop). */
export function crop(img: RgbImage, box: Box): RgbImage {
  const { top, left, height, width } = box;
  if (width <= 0 || height <= 0) throw new RangeError(`crop of empty size ${width}x${height}`);
  const out = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const sy = top + y;
    if (sy < 0 || sy >= img.height) continue;
    const x0 = Math.max(0, -left);
    const x1 = Math.min(width, img.width - left);
    if (x1 <= x0) continue;
    const srcStart = (sy * img.width + left + x0) * 3;
    out.set(img.data.subarray(srcStart, srcStart + (x1 - x0) * 3), (y * width + x0) * 3);
  }
  return { width, height, data: out };
}

/** Mirrors an image left to right. */
export function flipHorizontal(img: RgbImage): RgbImage {
  const { width, height, data } = img;
  const out = new Uint8Array(data.length);
  for (let y = 0; y < height; y++) {
    const row = y * width * 3;
    for (let x = 0; x < width; x++) {
      const s = row + x * 3;
      const d = row + (width - 1 - x) * 3;
      out[d] = data[s]!;
      out[d + 1] = data[s + 1]!;
      out[d + 2] = data[s + 2]!;
    }
  }
  return { width, height, data: out };
}

/**
 * An RGBA pixel array (a canvas's ImageData) as an RgbImage: alpha is dropped, not composited, as PIL's
 * convert('RGB') does.
 */
export function rgbFromRgba(width: number, height: number, rgba: ArrayLike<number>): RgbImage {
  if (rgba.length !== width * height * 4) throw new RangeError(`RGBA data holds ${rgba.length} bytes, expected ${width}x${height}x4`);
  const data = new Uint8Array(width * height * 3);
  for (let p = 0, s = 0, d = 0; p < width * height; p++, s += 4, d += 3) {
    data[d] = rgba[s]!;
    data[d + 1] = rgba[s + 1]!;
    data[d + 2] = rgba[s + 2]!;
  }
  const img = { width, height, data };
  checkImage(img);
  return img;
}

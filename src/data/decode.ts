/**
 * Image decoding to 8-bit RGB, as torchvision's `pil_loader` does (`Image.open(f).convert('RGB')`):
 * - greyscale is replicated into R, G and B;
 * - palette images are expanded through their palette;
 * - alpha (RGBA, LA, palette transparency) is dropped, not composited over a background;
 * - CMYK JPEGs use Pillow's naive formula R = (255 - C)(255 - K) / 255 (no ICC profile), which is
 *   what `.convert('RGB')` does, rather than libvips' colour-managed conversion;
 * - no EXIF auto-rotation (PIL does not apply the orientation tag either);
 * - 16-bit images are scaled to 8 bits (value >> 8); Pillow keeps only the high byte of 16-bit
 *   RGB PNGs (the same), but clips 16-bit greyscale to 0..255 instead of scaling it.
 *
 * JPEG, PNG, WebP, TIFF and GIF go through sharp (libvips, on its own threads); PPM/PGM and BMP,
 * which torchvision accepts but sharp's prebuilt libvips cannot read, through small decoders in
 * netpbm.ts and bmp.ts. A corrupt or truncated file throws a DecodeError naming the file.
 */
import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import sharp, { type SharpOptions } from 'sharp';
import { decodeBmp } from './bmp.js';
import type { RgbImage } from '../image/image.js';
import { decodeNetpbm } from './netpbm.js';

export class DecodeError extends Error {
  readonly file: string;
  constructor(file: string, cause: unknown) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    super(`cannot decode image ${file}: ${reason.trim()}`, { cause });
    this.name = 'DecodeError';
    this.file = file;
  }
}

/** Pillow's MULDIV255: round(a * b / 255) with integer arithmetic. */
function mulDiv255(a: number, b: number): number {
  const tmp = a * b + 128;
  return ((tmp >> 8) + tmp) >> 8;
}

/** Pillow's cmyk2rgb (Convert.c). */
function cmykToRgb(cmyk: Uint8Array, pixels: number): Uint8Array {
  const out = new Uint8Array(pixels * 3);
  for (let i = 0, s = 0, d = 0; i < pixels; i++, s += 4, d += 3) {
    const nk = 255 - cmyk[s + 3]!;
    out[d] = Math.max(0, nk - mulDiv255(cmyk[s]!, nk));
    out[d + 1] = Math.max(0, nk - mulDiv255(cmyk[s + 1]!, nk));
    out[d + 2] = Math.max(0, nk - mulDiv255(cmyk[s + 2]!, nk));
  }
  return out;
}

function toUint8(buf: Buffer): Uint8Array {
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

/**
 * Whether the image may be CMYK: JPEGs whose frame header has 4 components, and TIFFs (asked of
 * libvips). Other formats are never CMYK, which saves a metadata call for most images.
 */
async function mayBeCmyk(bytes: Buffer, options: SharpOptions): Promise<boolean> {
  if (bytes[0] === 0xff && bytes[1] === 0xd8) {
    let p = 2;
    while (p + 9 < bytes.length) {
      if (bytes[p] !== 0xff) return false; // malformed: let libvips report it
      const marker = bytes[p + 1]!;
      if (marker === 0xff) {
        p++;
        continue;
      }
      const isSof = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
      if (isSof) return bytes[p + 9] === 4;
      if (marker === 0xd9 || marker === 0xda) return false;
      p += 2 + bytes.readUInt16BE(p + 2);
    }
    return false;
  }
  const tiff = (bytes[0] === 0x49 && bytes[1] === 0x49) || (bytes[0] === 0x4d && bytes[1] === 0x4d);
  return tiff && (await sharp(bytes, options).metadata()).space === 'cmyk';
}

async function decodeWithSharp(bytes: Buffer): Promise<RgbImage> {
  const options = { failOn: 'truncated' as const, pages: 1 };
  if (await mayBeCmyk(bytes, options)) {
    const { data, info } = await sharp(bytes, options)
      .pipelineColourspace('cmyk')
      .toColourspace('cmyk')
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 4) throw new Error(`expected 4 CMYK channels, got ${info.channels}`);
    return { width: info.width, height: info.height, data: cmykToRgb(toUint8(data), info.width * info.height) };
  }
  const { data, info } = await sharp(bytes, options)
    .removeAlpha()
    .toColourspace('srgb')
    .raw({ depth: 'uchar' })
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 3) throw new Error(`expected 3 channels after conversion to RGB, got ${info.channels}`);
  return { width: info.width, height: info.height, data: toUint8(data) };
}

/** Decodes encoded image bytes; `name` is used in error messages and to pick PPM/BMP decoders. */
export async function decodeImageBuffer(bytes: Buffer, name: string): Promise<RgbImage> {
  try {
    if (bytes.length === 0) throw new Error('the file is empty');
    const ext = extname(name).toLowerCase();
    const magic = bytes.subarray(0, 2).toString('latin1');
    if (/^P[1-6]$/.test(magic) || ext === '.ppm' || ext === '.pgm' || ext === '.pbm') return decodeNetpbm(bytes);
    if (magic === 'BM' || ext === '.bmp') return decodeBmp(bytes);
    return await decodeWithSharp(bytes);
  } catch (err) {
    throw err instanceof DecodeError ? err : new DecodeError(name, err);
  }
}

/** Reads and decodes an image file to RGB. */
export async function decodeImage(file: string): Promise<RgbImage> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (err) {
    throw new DecodeError(file, err);
  }
  return decodeImageBuffer(bytes, file);
}

/**
 * Windows BMP decoding to RGB: torchvision lists .bmp among its image extensions, but sharp's
 * prebuilt libvips has no BMP loader. Supports uncompressed 1/4/8-bit palette, 16-bit (5-5-5 or
 * bit fields), 24-bit and 32-bit (BI_RGB or bit fields) images, bottom-up or top-down; alpha is
 * dropped as `.convert('RGB')` does. RLE-compressed and embedded JPEG/PNG BMPs are rejected.
 */
import type { RgbImage } from '../image/image.js';

const BI_RGB = 0;
const BI_BITFIELDS = 3;
const BI_ALPHABITFIELDS = 6;

function maskShift(mask: number): { shift: number; max: number } {
  if (mask === 0) return { shift: 0, max: 0 };
  let shift = 0;
  while (((mask >>> shift) & 1) === 0) shift++;
  return { shift, max: mask >>> shift };
}

export function decodeBmp(bytes: Uint8Array): RgbImage {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 26 || bytes[0] !== 0x42 || bytes[1] !== 0x4d) throw new Error('not a BMP file');
  const dataOffset = view.getUint32(10, true);
  const headerSize = view.getUint32(14, true);
  let width: number;
  let rawHeight: number;
  let bpp: number;
  let compression = BI_RGB;
  let colorsUsed = 0;
  if (headerSize === 12) {
    width = view.getUint16(18, true);
    rawHeight = view.getInt16(20, true);
    bpp = view.getUint16(24, true);
  } else if (headerSize >= 40) {
    if (bytes.length < 14 + 40) throw new Error('truncated BMP header');
    width = view.getInt32(18, true);
    rawHeight = view.getInt32(22, true);
    bpp = view.getUint16(28, true);
    compression = view.getUint32(30, true);
    colorsUsed = view.getUint32(46, true);
  } else {
    throw new Error(`unsupported BMP header size ${headerSize}`);
  }
  const topDown = rawHeight < 0;
  const height = Math.abs(rawHeight);
  if (width <= 0 || height <= 0) throw new Error(`bad BMP size ${width}x${height}`);

  let masks: [number, number, number] | undefined;
  if (compression === BI_BITFIELDS || compression === BI_ALPHABITFIELDS) {
    // Masks follow a 40-byte header, or live inside a V2+ header at the same offset.
    const at = 14 + 40;
    if (bytes.length < at + 12) throw new Error('truncated BMP bit fields');
    masks = [view.getUint32(at, true), view.getUint32(at + 4, true), view.getUint32(at + 8, true)];
  } else if (compression !== BI_RGB) {
    throw new Error(`unsupported BMP compression ${compression} (only uncompressed BMPs are supported)`);
  }
  if (!masks && bpp === 16) masks = [0x7c00, 0x03e0, 0x001f];
  if (!masks && bpp === 32) masks = [0x00ff0000, 0x0000ff00, 0x000000ff];

  let palette: Uint8Array | undefined;
  if (bpp <= 8) {
    const entries = colorsUsed || 1 << bpp;
    const entrySize = headerSize === 12 ? 3 : 4;
    const start = 14 + headerSize + (masks && headerSize === 40 ? 12 : 0);
    if (bytes.length < start + entries * entrySize) throw new Error('truncated BMP palette');
    palette = new Uint8Array(256 * 3);
    for (let i = 0; i < entries && i < 256; i++) {
      const p = start + i * entrySize;
      palette[i * 3] = bytes[p + 2]!;
      palette[i * 3 + 1] = bytes[p + 1]!;
      palette[i * 3 + 2] = bytes[p]!;
    }
  } else if (bpp !== 16 && bpp !== 24 && bpp !== 32) {
    throw new Error(`unsupported BMP bit depth ${bpp}`);
  }

  const rowBytes = Math.ceil((width * bpp) / 32) * 4;
  if (bytes.length < dataOffset + rowBytes * height) {
    throw new Error(`truncated BMP pixel data: ${Math.max(0, bytes.length - dataOffset)} of ${rowBytes * height} bytes`);
  }
  const fields = masks?.map(maskShift);
  const out = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const row = dataOffset + (topDown ? y : height - 1 - y) * rowBytes;
    for (let x = 0; x < width; x++) {
      const d = (y * width + x) * 3;
      if (palette) {
        const bitPos = x * bpp;
        const byte = bytes[row + (bitPos >> 3)]!;
        const index = (byte >> (8 - bpp - (bitPos & 7))) & ((1 << bpp) - 1);
        out[d] = palette[index * 3]!;
        out[d + 1] = palette[index * 3 + 1]!;
        out[d + 2] = palette[index * 3 + 2]!;
      } else if (bpp === 24) {
        const p = row + x * 3;
        out[d] = bytes[p + 2]!;
        out[d + 1] = bytes[p + 1]!;
        out[d + 2] = bytes[p]!;
      } else {
        const v = bpp === 16 ? view.getUint16(row + x * 2, true) : view.getUint32(row + x * 4, true);
        for (let c = 0; c < 3; c++) {
          const f = fields![c]!;
          out[d + c] = f.max === 0 ? 0 : Math.round((((v & masks![c]!) >>> f.shift) * 255) / f.max);
        }
      }
    }
  }
  return { width, height, data: out };
}

/**
 * Netpbm (PBM/PGM/PPM, plain and raw) decoding to RGB: torchvision lists .ppm and .pgm among
 * its image extensions, but sharp's prebuilt libvips has no PPM loader. Samples are scaled from
 * 0..maxval to 0..255 (rounded); bitmaps map 1 to black.
 */
import type { RgbImage } from '../image/image.js';

class Reader {
  pos = 0;
  constructor(private readonly bytes: Uint8Array) {}

  private skipSpaceAndComments(): void {
    const b = this.bytes;
    while (this.pos < b.length) {
      const c = b[this.pos]!;
      if (c === 0x23) {
        while (this.pos < b.length && b[this.pos] !== 0x0a && b[this.pos] !== 0x0d) this.pos++;
      } else if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d || c === 0x0b || c === 0x0c) {
        this.pos++;
      } else {
        return;
      }
    }
  }

  int(what: string): number {
    this.skipSpaceAndComments();
    const start = this.pos;
    while (this.pos < this.bytes.length && this.bytes[this.pos]! >= 0x30 && this.bytes[this.pos]! <= 0x39) this.pos++;
    if (this.pos === start) throw new Error(`bad netpbm header: expected ${what} at byte ${start}`);
    return Number(Buffer.from(this.bytes.subarray(start, this.pos)).toString('latin1'));
  }

  /** Plain PBM allows bits without separators. */
  bit(): number {
    this.skipSpaceAndComments();
    const c = this.bytes[this.pos];
    if (c !== 0x30 && c !== 0x31) throw new Error(`bad plain PBM data at byte ${this.pos}`);
    this.pos++;
    return c - 0x30;
  }
}

export function decodeNetpbm(bytes: Uint8Array): RgbImage {
  if (bytes[0] !== 0x50 || bytes[1]! < 0x31 || bytes[1]! > 0x36) throw new Error('not a netpbm file (no P1-P6 magic)');
  const kind = bytes[1]! - 0x30;
  const r = new Reader(bytes);
  r.pos = 2;
  const width = r.int('width');
  const height = r.int('height');
  const maxval = kind === 1 || kind === 4 ? 1 : r.int('maxval');
  if (width <= 0 || height <= 0) throw new Error(`bad netpbm size ${width}x${height}`);
  if (maxval <= 0 || maxval > 65535) throw new Error(`bad netpbm maxval ${maxval}`);
  const channels = kind === 3 || kind === 6 ? 3 : 1;
  const n = width * height;
  const out = new Uint8Array(n * 3);
  const scale = (v: number): number => (maxval === 255 ? v : Math.round((Math.min(v, maxval) * 255) / maxval));
  const put = (pixel: number, channel: number, v: number): void => {
    if (channels === 1) {
      out[pixel * 3] = out[pixel * 3 + 1] = out[pixel * 3 + 2] = v;
    } else {
      out[pixel * 3 + channel] = v;
    }
  };

  if (kind <= 3) {
    for (let p = 0; p < n; p++) {
      for (let c = 0; c < channels; c++) {
        put(p, c, kind === 1 ? (r.bit() ? 0 : 255) : scale(r.int('sample')));
      }
    }
    return { width, height, data: out };
  }

  // Raw formats: exactly one whitespace byte after the header.
  let pos = r.pos + 1;
  if (kind === 4) {
    const rowBytes = Math.ceil(width / 8);
    if (bytes.length < pos + rowBytes * height) throw new Error('truncated PBM data');
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const bit = (bytes[pos + y * rowBytes + (x >> 3)]! >> (7 - (x & 7))) & 1;
        put(y * width + x, 0, bit ? 0 : 255);
      }
    }
    return { width, height, data: out };
  }
  const sampleBytes = maxval < 256 ? 1 : 2;
  const need = n * channels * sampleBytes;
  if (bytes.length < pos + need) throw new Error(`truncated netpbm data: ${bytes.length - pos} of ${need} bytes`);
  for (let p = 0; p < n; p++) {
    for (let c = 0; c < channels; c++, pos += sampleBytes) {
      const v = sampleBytes === 1 ? bytes[pos]! : (bytes[pos]! << 8) | bytes[pos + 1]!;
      put(p, c, scale(v));
    }
  }
  return { width, height, data: out };
}

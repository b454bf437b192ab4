/** Awkward and broken inputs: each either decodes correctly or fails with an error naming the file. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DecodeError, decodeImage } from '../../src/data/decode.js';
import { Random } from '../../src/util/random.js';
import { evalTransform, trainTransform, type TensorImage } from '../../src/image/transforms.js';

let dir: string;
const W = 40;
const H = 30;
const rgb = Buffer.alloc(W * H * 3);
for (let y = 0; y < H; y++) {
  for (let x = 0; x < W; x++) {
    const p = (y * W + x) * 3;
    rgb[p] = x * 6;
    rgb[p + 1] = y * 8;
    rgb[p + 2] = 128;
  }
}
const raw = { raw: { width: W, height: H, channels: 3 as const } };

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'bad-images-'));
  const jpeg = await sharp(rgb, raw).jpeg({ quality: 90 }).toBuffer();
  writeFileSync(join(dir, 'good.jpg'), jpeg);
  writeFileSync(join(dir, 'truncated.jpg'), jpeg.subarray(0, Math.floor(jpeg.length / 2)));
  writeFileSync(join(dir, 'text.jpg'), 'this is not an image\n');
  writeFileSync(join(dir, 'empty.png'), '');
  writeFileSync(join(dir, 'one.png'), await sharp(Buffer.from([200, 100, 50]), { raw: { width: 1, height: 1, channels: 3 } }).png().toBuffer());
  // 16-bit RGB PNG whose high bytes are the 8-bit test pattern (low bytes vary).
  const deep = new Uint16Array(W * H * 3);
  for (let i = 0; i < deep.length; i++) deep[i] = rgb[i]! * 256 + (i % 7) * 30;
  writeFileSync(
    join(dir, 'deep.png'),
    await sharp(deep, { raw: { width: W, height: H, channels: 3 } }) // a Uint16Array: 16-bit samples
      .toColourspace('rgb16')
      .png()
      .toBuffer(),
  );
  writeFileSync(join(dir, 'cmyk.jpg'), await sharp(rgb, raw).toColourspace('cmyk').jpeg({ quality: 95 }).toBuffer());
  // EXIF orientation 6 ("rotate 90 CW to display"): PIL does not apply it, nor do we.
  writeFileSync(join(dir, 'rotated.jpg'), await sharp(rgb, raw).jpeg().withMetadata({ orientation: 6 }).toBuffer());
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function decodeError(file: string): Promise<DecodeError> {
  try {
    await decodeImage(file);
  } catch (err) {
    expect(err).toBeInstanceOf(DecodeError);
    return err as DecodeError;
  }
  throw new Error(`${file} decoded without error`);
}

function meanAbs(a: Uint8Array, b: Uint8Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i]! - b[i]!);
  return s / a.length;
}

describe('bad and unusual images', () => {
  it('decodes a good JPEG', async () => {
    const img = await decodeImage(join(dir, 'good.jpg'));
    expect([img.width, img.height]).toEqual([W, H]);
    expect(meanAbs(img.data, rgb)).toBeLessThan(3);
  });

  it('a truncated JPEG is an error naming the file', async () => {
    const err = await decodeError(join(dir, 'truncated.jpg'));
    expect(err.file).toBe(join(dir, 'truncated.jpg'));
    expect(err.message).toContain(join(dir, 'truncated.jpg'));
    expect(err.message).toMatch(/premature end|truncat/i);
  });

  it('a text file named .jpg is an error naming the file', async () => {
    const err = await decodeError(join(dir, 'text.jpg'));
    expect(err.message).toContain(join(dir, 'text.jpg'));
    expect(err.message).toMatch(/unsupported image format/i);
    expect((await decodeError(join(dir, 'empty.png'))).message).toContain('empty');
    expect((await decodeError(join(dir, 'missing.jpg'))).message).toContain('missing.jpg');
  });

  it('a 1x1 image decodes and goes through both transforms', async () => {
    const img = await decodeImage(join(dir, 'one.png'));
    expect(img).toEqual({ width: 1, height: 1, data: Uint8Array.from([200, 100, 50]) });
    const train = trainTransform(224).apply(img, new Random(1)) as TensorImage;
    expect([train.channels, train.height, train.width]).toEqual([3, 224, 224]);
    const ev = evalTransform(224, 256).apply(img, new Random(1)) as TensorImage;
    expect([ev.channels, ev.height, ev.width]).toEqual([3, 224, 224]);
    // A constant image stays constant: (200/255 - 0.485) / 0.229 everywhere in channel 0.
    expect(ev.data[0]).toBeCloseTo((200 / 255 - 0.485) / 0.229, 5);
    expect(ev.data[224 * 224 - 1]).toBeCloseTo((200 / 255 - 0.485) / 0.229, 5);
  });

  it('a 16-bit PNG decodes to the high bytes', async () => {
    const meta = await sharp(join(dir, 'deep.png')).metadata();
    expect(meta.depth).toBe('ushort');
    const img = await decodeImage(join(dir, 'deep.png'));
    expect([img.width, img.height]).toEqual([W, H]);
    expect(Array.from(img.data)).toEqual(Array.from(rgb));
  });

  it('a CMYK JPEG decodes to RGB with PIL formula', async () => {
    const meta = await sharp(join(dir, 'cmyk.jpg')).metadata();
    expect(meta.space).toBe('cmyk');
    const img = await decodeImage(join(dir, 'cmyk.jpg'));
    expect(img.data.length).toBe(W * H * 3);
    // The CMYK values come from libvips' colour-managed RGB -> CMYK, PIL's naive CMYK -> RGB
    // brings them back only roughly; fixtures/transforms/decode/cmyk.jpg checks PIL exactly.
    const cmyk = await sharp(join(dir, 'cmyk.jpg')).pipelineColourspace('cmyk').toColourspace('cmyk').raw().toBuffer();
    for (let p = 0; p < W * H; p += 97) {
      const nk = 255 - cmyk[p * 4 + 3]!;
      for (let c = 0; c < 3; c++) expect(Math.abs(img.data[p * 3 + c]! - ((255 - cmyk[p * 4 + c]!) * nk) / 255)).toBeLessThanOrEqual(1);
    }
    expect(meanAbs(img.data, rgb)).toBeLessThan(40);
  });

  it('does not apply EXIF orientation (as PIL does not)', async () => {
    expect((await sharp(join(dir, 'rotated.jpg')).metadata()).orientation).toBe(6);
    const img = await decodeImage(join(dir, 'rotated.jpg'));
    expect([img.width, img.height]).toEqual([W, H]);
    expect(meanAbs(img.data, rgb)).toBeLessThan(3);
  });
});

describe('PPM/PGM and BMP (not readable by sharp)', () => {
  it('decodes binary and plain netpbm files', async () => {
    const px = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120];
    writeFileSync(join(dir, 'a.ppm'), Buffer.concat([Buffer.from('P6\n# comment\n2 2\n255\n'), Buffer.from(px)]));
    expect(await decodeImage(join(dir, 'a.ppm'))).toEqual({ width: 2, height: 2, data: Uint8Array.from(px) });
    writeFileSync(join(dir, 'b.pgm'), Buffer.concat([Buffer.from('P5 3 1 15 '), Buffer.from([0, 15, 5])]));
    expect(Array.from((await decodeImage(join(dir, 'b.pgm'))).data)).toEqual([0, 0, 0, 255, 255, 255, 85, 85, 85]);
    writeFileSync(join(dir, 'c.ppm'), 'P3 1 1 255 1 2 3\n');
    expect(Array.from((await decodeImage(join(dir, 'c.ppm'))).data)).toEqual([1, 2, 3]);
    writeFileSync(join(dir, 'd.ppm'), Buffer.concat([Buffer.from('P6 4 4 255\n'), Buffer.alloc(10)]));
    expect((await decodeError(join(dir, 'd.ppm'))).message).toMatch(/d\.ppm.*truncated/);
  });

  it('decodes 24-bit and 8-bit palette BMPs, bottom-up', async () => {
    const bmp = (bpp: number, w: number, h: number, rows: number[][], palette: number[][] = []): Buffer => {
      const rowBytes = Math.ceil((w * bpp) / 32) * 4;
      const off = 14 + 40 + palette.length * 4;
      const b = Buffer.alloc(off + rowBytes * h);
      b.write('BM', 0, 'latin1');
      b.writeUInt32LE(b.length, 2);
      b.writeUInt32LE(off, 10);
      b.writeUInt32LE(40, 14);
      b.writeInt32LE(w, 18);
      b.writeInt32LE(h, 22);
      b.writeUInt16LE(1, 26);
      b.writeUInt16LE(bpp, 28);
      b.writeUInt32LE(palette.length, 46);
      palette.forEach((c, i) => b.set([c[2]!, c[1]!, c[0]!, 0], 54 + i * 4));
      rows.forEach((r, y) => b.set(r, off + (h - 1 - y) * rowBytes)); // stored bottom-up
      return b;
    };
    // Top row: red, green; bottom row: blue, white. BGR order in the file.
    writeFileSync(join(dir, 'e.bmp'), bmp(24, 2, 2, [[0, 0, 255, 0, 255, 0], [255, 0, 0, 255, 255, 255]]));
    expect(Array.from((await decodeImage(join(dir, 'e.bmp'))).data)).toEqual([255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255]);
    writeFileSync(join(dir, 'f.bmp'), bmp(8, 3, 1, [[1, 0, 1]], [[9, 8, 7], [1, 2, 3]]));
    expect(Array.from((await decodeImage(join(dir, 'f.bmp'))).data)).toEqual([1, 2, 3, 9, 8, 7, 1, 2, 3]);
    writeFileSync(join(dir, 'g.bmp'), bmp(24, 2, 2, [[0, 0, 255, 0, 255, 0], [255, 0, 0, 255, 255, 255]]).subarray(0, 60));
    expect((await decodeError(join(dir, 'g.bmp'))).message).toMatch(/g\.bmp.*truncated/);
    const bytes = await readFile(join(dir, 'e.bmp'));
    expect(bytes.subarray(0, 2).toString('latin1')).toBe('BM');
  });
});

import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeImage } from '../../src/data/decode.js';
import { compareCodePoints, DatasetError, hasImageExtension, ImageFolder } from '../../src/data/image-folder.js';

const dirs: string[] = [];
function tree(files: string[], folders: string[] = []): string {
  const root = mkdtempSync(join(tmpdir(), 'imagefolder-'));
  dirs.push(root);
  for (const f of folders) mkdirSync(join(root, f), { recursive: true });
  for (const f of files) {
    mkdirSync(join(root, f, '..'), { recursive: true });
    writeFileSync(join(root, f), 'x');
  }
  return root;
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('ImageFolder', () => {
  it('sorts classes like Python (code points) and labels them by index', () => {
    const root = tree(['b/1.jpg', 'B/1.jpg', 'a/1.jpg', 'a_b/1.jpg', 'a b/1.jpg', 'Ä/1.jpg', 'z/1.jpg', '\u{1F32D}/1.jpg', '\uFF21/1.jpg']);
    const ds = new ImageFolder(root);
    // Python: sorted(['b','B','a','a_b','a b','Ä','z','🌭','Ａ'])
    expect(ds.classes).toEqual(['B', 'a', 'a b', 'a_b', 'b', 'z', 'Ä', '\uFF21', '\u{1F32D}']);
    expect(ds.samples.map((s) => s.label)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);
    expect(ds.classToIdx.get('z')).toBe(5);
    // UTF-16 order would put U+1F32D (surrogates D83C...) before U+FF21.
    expect(compareCodePoints('\u{1F32D}', '\uFF21')).toBeGreaterThan(0);
  });

  it("keeps torchvision's extensions case-insensitively, walks sub-folders in sorted order, skips hidden and other files", () => {
    const root = tree([
      'cat/b.JPG',
      'cat/a.png',
      'cat/c.jpeg',
      'cat/d.Webp',
      'cat/e.tif',
      'cat/f.TIFF',
      'cat/g.bmp',
      'cat/h.ppm',
      'cat/i.pgm',
      'cat/notes.txt',
      'cat/.hidden.jpg',
      'cat/.DS_Store',
      'cat/noext',
      'cat/x.gif', // not in torchvision's IMG_EXTENSIONS
      'cat/sub/z.jpg',
      'cat/sub b/y.jpg',
      'cat/.ipynb_checkpoints/k.jpg',
      'dog/1.jpg',
      '.hiddenclass/1.jpg',
    ]);
    const ds = new ImageFolder(root);
    expect(ds.classes).toEqual(['cat', 'dog']);
    const rel = ds.samples.map((s) => s.path.slice(root.length + 1));
    // sorted(os.walk(...)) orders directories by path: 'cat' < 'cat/sub' < 'cat/sub b'.
    expect(rel).toEqual([
      'cat/a.png',
      'cat/b.JPG',
      'cat/c.jpeg',
      'cat/d.Webp',
      'cat/e.tif',
      'cat/f.TIFF',
      'cat/g.bmp',
      'cat/h.ppm',
      'cat/i.pgm',
      'cat/sub/z.jpg',
      'cat/sub b/y.jpg',
      'dog/1.jpg',
    ]);
    expect(rel.indexOf('cat/sub/z.jpg')).toBeLessThan(rel.indexOf('cat/sub b/y.jpg'));
    expect(ds.samples.at(-1)).toEqual({ path: join(root, 'dog/1.jpg'), label: 1 });
    expect(hasImageExtension('A.JPEG')).toBe(true);
    expect(hasImageExtension('jpg')).toBe(false);
  });

  it('follows symlinked class folders', () => {
    const root = tree(['real/1.jpg'], ['data']);
    symlinkSync(join(root, 'real'), join(root, 'data', 'linked'));
    const ds = new ImageFolder(join(root, 'data'));
    expect(ds.classes).toEqual(['linked']);
    expect(ds.length).toBe(1);
  });

  it('names the path in its errors', () => {
    const missing = join(tmpdir(), 'definitely-missing-imagefolder-xyz');
    expect(() => new ImageFolder(missing)).toThrow(new RegExp(`dataset folder .*definitely-missing-imagefolder-xyz does not exist`));
    const noClasses = tree(['loose.jpg']);
    expect(() => new ImageFolder(noClasses)).toThrow(`couldn't find any class folder in ${noClasses}`);
    const emptyClass = tree(['a/1.jpg', 'b/readme.txt'], ['c']);
    let err: unknown;
    try {
      new ImageFolder(emptyClass);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DatasetError);
    expect((err as Error).message).toContain(join(emptyClass, 'b'));
    expect((err as Error).message).toContain(join(emptyClass, 'c'));
    expect((err as Error).message).toContain('.jpg');
    const d2l = tree(['train/hotdog/1.jpg', 'train/not-hotdog/1.jpg']);
    expect(ImageFolder.split(d2l, 'train').classes).toEqual(['hotdog', 'not-hotdog']);
    expect(() => ImageFolder.split(d2l, 'test')).toThrow(`split folder ${join(d2l, 'test')} does not exist`);
  });

  it("reads d2l's hot-dog layout (train/test splits of real JPEG and PNG images, written here with sharp)", async () => {
    // hotdog/{train,test}/{hotdog,not-hotdog}/*, like d2l's hotdog.zip and the hotdog-mini sample, in miniature.
    // Each image is one flat colour whose red channel encodes its position in the listing (by 20 steps).
    const root = tree([]);
    const layout: [string, string, number][] = [
      ['train', 'hotdog', 3],
      ['train', 'not-hotdog', 2],
      ['test', 'hotdog', 1],
      ['test', 'not-hotdog', 2],
    ];
    const written: { file: string; width: number; red: number; label: number }[] = [];
    for (const [split, cls, count] of layout) {
      mkdirSync(join(root, split, cls), { recursive: true });
      for (let k = 0; k < count; k++) {
        const red = 20 * written.length + 10;
        const width = 9 + k;
        const img = sharp({ create: { width, height: 7, channels: 3, background: { r: red, g: 100, b: 200 } } });
        // Both formats d2l's archive and users' folders hold; the upper-case extension too.
        const [ext, bytes] = k % 2 === 0 ? ['.jpg', await img.jpeg({ quality: 100 }).toBuffer()] : ['.PNG', await img.png().toBuffer()];
        const file = join(root, split, cls, `${100 + k}${ext}`);
        writeFileSync(file, bytes);
        written.push({ file, width, red, label: cls === 'hotdog' ? 0 : 1 });
      }
    }
    const train = ImageFolder.split(root, 'train');
    const test = ImageFolder.split(root, 'test');
    for (const ds of [train, test]) expect(ds.classes).toEqual(['hotdog', 'not-hotdog']);
    expect(train.samples).toEqual(written.slice(0, 5).map(({ file, label }) => ({ path: file, label })));
    expect(test.samples).toEqual(written.slice(5).map(({ file, label }) => ({ path: file, label })));
    // The listed files are the images written, and decode as such (JPEG at quality 100: within 2 levels).
    for (const [i, s] of [...train.samples, ...test.samples].entries()) {
      const img = await decodeImage(s.path);
      expect([img.width, img.height]).toEqual([written[i]!.width, 7]);
      expect(Math.abs(img.data[0]! - written[i]!.red)).toBeLessThanOrEqual(2);
    }
  });
});

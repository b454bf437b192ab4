// A small generated image folder (train/ and test/, one sub-folder per class) for tests of the main job: PNGs
// written with sharp, each class with its own colour pattern plus per-image noise, so a run has something to learn.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { Random } from '../../src/util/random.js';

export interface TinyFolderOptions {
  classes?: readonly string[];
  /** Images per class: one number for every class, or one per class. */
  trainPerClass?: number | readonly number[];
  testPerClass?: number | readonly number[];
  /** Width and height of the images (they differ, as real photos do). */
  size?: readonly [number, number];
  seed?: number;
}

export async function writeImage(path: string, width: number, height: number, classIndex: number, g: Random): Promise<void> {
  const px = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const stripe = classIndex === 0 ? (x >> 2) & 1 : (y >> 2) & 1;
      const o = (y * width + x) * 3;
      px[o] = Math.min(255, (classIndex === 0 ? 200 : 40) * stripe + g.randint(0, 40));
      px[o + 1] = Math.min(255, 90 + g.randint(0, 60));
      px[o + 2] = Math.min(255, (classIndex === 0 ? 30 : 190) * (1 - stripe) + g.randint(0, 40));
    }
  }
  await sharp(px, { raw: { width, height, channels: 3 } }).png().toFile(path);
}

/** Writes root/train/<class>/<i>.png and root/test/<class>/<i>.png; returns root. */
export async function writeTinyImageFolder(root: string, options: TinyFolderOptions = {}): Promise<string> {
  const classes = options.classes ?? ['hotdog', 'not-hotdog'];
  const [w, h] = options.size ?? [40, 36];
  const g = new Random(options.seed ?? 7);
  for (const [split, n] of [['train', options.trainPerClass ?? 4], ['test', options.testPerClass ?? 2]] as const) {
    for (const [ci, cls] of classes.entries()) {
      const dir = join(root, split, cls);
      mkdirSync(dir, { recursive: true });
      const count = typeof n === 'number' ? n : n[ci]!;
      for (let i = 0; i < count; i++) await writeImage(join(dir, `${i}.png`), w, h, ci, g);
    }
  }
  return root;
}

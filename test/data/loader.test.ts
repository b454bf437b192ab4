import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DecodeError } from '../../src/data/decode.js';
import { ImageFolder } from '../../src/data/image-folder.js';
import { DataLoader, type Batch } from '../../src/data/loader.js';
import type { Random } from '../../src/util/random.js';
import {
  CenterCrop,
  Compose,
  RandomHorizontalFlip,
  RandomResizedCrop,
  Resize,
  ToTensor,
  trainTransform,
  type Sample,
  type Transform,
} from '../../src/image/transforms.js';

let root: string;
const N_PER_CLASS = [7, 6]; // 13 images: batches of 4 leave a partial batch of 1
const CLASSES = ['cat', 'dog'];

/** Each image is a flat colour that encodes its id: R = 10 * id, G = 255 - 10 * id, B = class. */
function colourOf(id: number, label: number): [number, number, number] {
  return [10 * id, 255 - 10 * id, label * 200];
}

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'loader-'));
  let id = 0;
  for (let label = 0; label < 2; label++) {
    mkdirSync(join(root, CLASSES[label]!));
    for (let k = 0; k < N_PER_CLASS[label]!; k++, id++) {
      const [r, g, b] = colourOf(id, label);
      const png = await sharp({ create: { width: 48 + k, height: 40, channels: 3, background: { r, g, b } } }).png().toBuffer();
      writeFileSync(join(root, CLASSES[label]!, `img${String(id).padStart(2, '0')}.png`), png);
    }
  }
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

const plain = (): Transform => new Compose([new Resize(16), new CenterCrop(16), new ToTensor()]);

async function collect(loader: DataLoader, epoch: number): Promise<Batch[]> {
  const out: Batch[] = [];
  for await (const b of loader.epoch(epoch)) out.push(b);
  return out;
}

function idOf(batch: Batch, k: number): number {
  const [, c, h, w] = batch.shape;
  return Math.round((batch.images[k * c * h * w]! * 255) / 10);
}

describe('DataLoader', () => {
  it('visits every image once per epoch with the right labels, keeping the last partial batch', async () => {
    const ds = new ImageFolder(root);
    const loader = new DataLoader(ds, { batchSize: 4, shuffle: true, seed: 5, transform: plain() });
    expect(loader.length).toBe(4);
    for (const epoch of [0, 1]) {
      const batches = await collect(loader, epoch);
      expect(batches.map((b) => b.shape[0])).toEqual([4, 4, 4, 1]);
      const seen: number[] = [];
      for (const b of batches) {
        expect(b.shape.slice(1)).toEqual([3, 16, 16]);
        expect(b.images.length).toBe(b.shape[0] * 3 * 16 * 16);
        for (let k = 0; k < b.shape[0]; k++) {
          const id = idOf(b, k);
          seen.push(id);
          const expectedLabel = id < N_PER_CLASS[0]! ? 0 : 1;
          expect(b.labels[k]).toBe(expectedLabel);
          expect(b.indices[k]).toBe(id); // ImageFolder order is img00..img12
          // Blue channel encodes the class too.
          expect(Math.round(b.images[(k * 3 + 2) * 256]! * 255)).toBe(expectedLabel * 200);
        }
      }
      expect([...seen].sort((a, b) => a - b)).toEqual(Array.from({ length: 13 }, (_, i) => i));
    }
    const dropLast = new DataLoader(ds, { batchSize: 4, transform: plain(), dropLast: true });
    expect((await collect(dropLast, 0)).map((b) => b.shape[0])).toEqual([4, 4, 4]);
    const unshuffled = await collect(new DataLoader(ds, { batchSize: 5, transform: plain() }), 3);
    expect(Array.from(unshuffled[0]!.indices)).toEqual([0, 1, 2, 3, 4]);
  });

  it('is deterministic for a seed, whatever the concurrency, prefetch or workers', async () => {
    const ds = new ImageFolder(root);
    const t = (): Transform => new Compose([new RandomResizedCrop(12), new RandomHorizontalFlip(), new ToTensor()]);
    const run = async (seed: number, epoch: number, extra: object = {}): Promise<Batch[]> => {
      const loader = new DataLoader(ds, { batchSize: 4, shuffle: true, seed, transform: t(), ...extra });
      try {
        return await collect(loader, epoch);
      } finally {
        await loader.close();
      }
    };
    const a = await run(11, 0);
    const b = await run(11, 0, { concurrency: 1, prefetch: 0 });
    const c = await run(11, 0, { concurrency: 13, prefetch: 4 });
    const w = await run(11, 0, { workers: 2 });
    for (const other of [b, c, w]) {
      expect(other.map((x) => Array.from(x.indices))).toEqual(a.map((x) => Array.from(x.indices)));
      expect(other.map((x) => Array.from(x.images))).toEqual(a.map((x) => Array.from(x.images)));
    }
    const nextEpoch = await run(11, 1);
    const otherSeed = await run(12, 0);
    expect(nextEpoch.map((x) => Array.from(x.indices))).not.toEqual(a.map((x) => Array.from(x.indices)));
    expect(otherSeed.map((x) => Array.from(x.indices))).not.toEqual(a.map((x) => Array.from(x.indices)));
  });

  it('keeps at most prefetch + 1 batches in the making (back-pressure)', async () => {
    const ds = new ImageFolder(root);
    let applied = 0;
    const counting: Transform = {
      spec: { name: 'ToTensor' },
      apply: (x: Sample, rng: Random) => {
        applied++;
        return plain().apply(x, rng);
      },
    };
    expect(() => new DataLoader(ds, { batchSize: 2, transform: counting, workers: 1 })).toThrow(/built-in transforms/);
    const loader = new DataLoader(ds, { batchSize: 2, transform: counting, prefetch: 2 });
    const it = loader.epoch(0)[Symbol.asyncIterator]();
    await it.next(); // consumer holds batch 0 and does not ask for more
    await new Promise((r) => setTimeout(r, 300));
    expect(applied).toBe(2 * 3); // batch 0 + two batches ahead, not the whole epoch (13 images)
    await it.next();
    await new Promise((r) => setTimeout(r, 200));
    expect(applied).toBe(2 * 4);
    await it.return(undefined);
  });

  it('prepares the next batches while the consumer works (times overlap)', async () => {
    // Larger JPEGs so that loading takes measurable time.
    const big = mkdtempSync(join(tmpdir(), 'loader-big-'));
    try {
      mkdirSync(join(big, 'a'));
      const noise = Buffer.alloc(640 * 480 * 3);
      for (let i = 0; i < noise.length; i++) noise[i] = (i * 2654435761) >>> 24;
      const jpeg = await sharp(noise, { raw: { width: 640, height: 480, channels: 3 } }).jpeg({ quality: 95 }).toBuffer();
      for (let k = 0; k < 24; k++) writeFileSync(join(big, 'a', `${k}.jpg`), jpeg);
      const ds = new ImageFolder(big);
      const make = (prefetch: number): DataLoader => new DataLoader(ds, { batchSize: 4, transform: trainTransform(224), prefetch, seed: 1 });
      await collect(make(0), 0); // warm up

      // Loading alone, one batch at a time.
      let t0 = performance.now();
      await collect(make(0), 0);
      const loadOnly = performance.now() - t0;
      const nBatches = 6;
      const work = Math.max(20, (1.5 * loadOnly) / nBatches); // consumer "GPU step" a bit longer than a batch load
      const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

      const timed = async (prefetch: number): Promise<{ total: number; waited: number }> => {
        let waited = 0;
        const start = performance.now();
        const it = make(prefetch).epoch(0)[Symbol.asyncIterator]();
        for (;;) {
          const w0 = performance.now();
          const r = await it.next();
          waited += performance.now() - w0;
          if (r.done) break;
          await sleep(work);
        }
        return { total: performance.now() - start, waited };
      };
      const serial = await timed(0);
      const overlapped = await timed(2);
      console.log(
        `overlap: load alone ${loadOnly.toFixed(0)} ms, consumer ${nBatches} x ${work.toFixed(0)} ms; ` +
          `prefetch 0: ${serial.total.toFixed(0)} ms (waited ${serial.waited.toFixed(0)}), prefetch 2: ${overlapped.total.toFixed(0)} ms (waited ${overlapped.waited.toFixed(0)})`,
      );
      // Without prefetch the consumer waits for every batch: total = loading + consumer time.
      expect(serial.total).toBeGreaterThan(serial.waited + nBatches * work * 0.95);
      // With prefetch 2 the loading hides behind the consumer's work (all but the first batch:
      // ideally 5/6 of it); require at least half of it hidden.
      expect(serial.total - overlapped.total).toBeGreaterThan(0.5 * serial.waited);
      expect(overlapped.waited).toBeLessThan(0.5 * serial.waited);
    } finally {
      rmSync(big, { recursive: true, force: true });
    }
  });

  it('fails on a corrupt image naming it, or skips and counts it with skipCorrupt', async () => {
    const bad = mkdtempSync(join(tmpdir(), 'loader-bad-'));
    try {
      mkdirSync(join(bad, 'a'));
      const png = await sharp({ create: { width: 20, height: 20, channels: 3, background: '#336699' } }).png().toBuffer();
      for (let k = 0; k < 5; k++) writeFileSync(join(bad, 'a', `${k}.png`), png);
      writeFileSync(join(bad, 'a', '2.png'), png.subarray(0, 30)); // truncated
      const ds = new ImageFolder(bad);
      const strict = new DataLoader(ds, { batchSize: 2, transform: plain() });
      const err = await collect(strict, 0).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(DecodeError);
      expect((err as DecodeError).message).toContain(join(bad, 'a', '2.png'));

      const lenient = new DataLoader(ds, { batchSize: 2, transform: plain(), skipCorrupt: true });
      const batches = await collect(lenient, 0);
      expect(batches.map((b) => b.shape[0])).toEqual([2, 1, 1]);
      expect(Array.from(batches[1]!.indices)).toEqual([3]);
      expect(lenient.report.skipped).toBe(1);
      expect(lenient.report.loaded).toBe(4);
      expect(lenient.report.skippedFiles[0]!.path).toBe(join(bad, 'a', '2.png'));
    } finally {
      rmSync(bad, { recursive: true, force: true });
    }
  });

  it('says which image does not fit the batch shape', async () => {
    const ds = new ImageFolder(root);
    const loader = new DataLoader(ds, { batchSize: 4, transform: new Compose([new Resize(16), new ToTensor()]) });
    await expect(collect(loader, 0)).rejects.toThrow(/cannot batch .*img02\.png: its transform output is 3x16x20, the batch's first image 3x16x19.*fixed output size/);
  });
});

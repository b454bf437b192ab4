import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DecodeError } from '../../src/data/decode.js';
import { ImageFolder, type ImageSample } from '../../src/data/image-folder.js';
import { DataLoader, type Batch } from '../../src/data/loader.js';
import type { Random } from '../../src/util/random.js';
import {
  CenterCrop,
  Compose,
  RandomHorizontalFlip,
  RandomResizedCrop,
  Resize,
  ToTensor,
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

/**
 * Counts the images a loader starts (it reads a sample's path once, when that image's loading starts) and
 * transforms, and waits for a number of transformed images: events instead of sleeps and clocks.
 */
function instrumented(ds: ImageFolder) {
  const count = { started: 0, applied: 0 };
  const waiting: { n: number; resolve: () => void }[] = [];
  const samples: ImageSample[] = ds.samples.map((s) => ({
    get path() {
      count.started++;
      return s.path;
    },
    label: s.label,
  }));
  const transform: Transform = {
    spec: { name: 'ToTensor' },
    apply: (x: Sample, rng: Random) => {
      const out = plain().apply(x, rng);
      count.applied++;
      for (const w of waiting) if (count.applied >= w.n) w.resolve();
      return out;
    },
  };
  const transformed = (n: number): Promise<void> => new Promise((resolve) => (count.applied >= n ? resolve() : waiting.push({ n, resolve })));
  /** Resolves once every image started so far is transformed and no new one started meanwhile (never hangs). */
  const settled = async (): Promise<void> => {
    for (;;) {
      await transformed(count.started);
      await nextTurn();
      if (count.applied >= count.started) return;
    }
  };
  return { count, samples, transform, settled };
}

/** One turn of the event loop: every promise reaction already due has run. */
const nextTurn = (): Promise<void> => new Promise((r) => setImmediate(r));

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
    const probe = instrumented(ds);
    expect(() => new DataLoader(ds, { batchSize: 2, transform: probe.transform, workers: 1 })).toThrow(/built-in transforms/);
    // Concurrency above the images in flight, so a batch's images all start as soon as the batch does.
    const loader = new DataLoader(probe.samples, { batchSize: 2, transform: probe.transform, prefetch: 2, concurrency: 13 });
    const it = loader.epoch(0)[Symbol.asyncIterator]();
    expect(probe.count.started).toBe(0);
    await it.next(); // the consumer holds batch 0 and does not ask for more
    expect(probe.count.started).toBe(2 * 3); // batch 0 and two batches ahead, not the whole epoch (13 images)
    await probe.settled(); // the two batches ahead are finished...
    expect(probe.count.started).toBe(2 * 3); // ...and nothing more was started
    await it.next();
    expect(probe.count.started).toBe(2 * 4);
    await probe.settled();
    expect(probe.count.started).toBe(2 * 4);
    await it.return(undefined);
  });

  it('prepares the next batches while the consumer works, and only when asked without prefetch', async () => {
    const ds = new ImageFolder(root);
    for (const prefetch of [0, 2]) {
      const probe = instrumented(ds);
      const loader = new DataLoader(probe.samples, { batchSize: 4, transform: probe.transform, prefetch, concurrency: 16 });
      const it = loader.epoch(0)[Symbol.asyncIterator]();
      await it.next(); // batch 0: the consumer works on it and waits for the loader, not asking for batch 1
      await probe.settled(); // whatever the loader does by itself meanwhile
      expect(probe.count.started, `prefetch ${prefetch}`).toBe(4 * (1 + prefetch));
      expect(probe.count.applied, `prefetch ${prefetch}`).toBe(4 * (1 + prefetch));
      const before = probe.count.applied;
      const second = await it.next();
      expect(second.done).toBe(false);
      // With prefetch, batch 1 was ready: handing it over transforms no image (file reads complete on a later
      // event-loop turn, so a batch loaded on demand could not be ready yet). Without, it was loaded on demand.
      expect(probe.count.applied - before, `prefetch ${prefetch}`).toBe(prefetch > 0 ? 0 : 4);
      await it.return(undefined);
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

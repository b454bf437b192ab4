/**
 * Data pipeline throughput on hotdog-mini (../shared/data/hotdog-mini relative to the repo root).
 * Run: npx tsx bench/data.bench.ts   (writes bench/results/data.json with benny's json format)
 *
 * One benchmark op is one whole epoch of a split through the DataLoader (or one image for the
 * per-image cases), so images/sec = ops/sec x images per op; the cycle lines print it.
 */
import { fileURLToPath } from 'node:url';
import b from 'benny';
import { decodeImage } from '../src/data/decode.js';
import { ImageFolder } from '../src/data/image-folder.js';
import { DataLoader } from '../src/data/loader.js';
import { Random } from '../src/util/random.js';
import { evalTransform, trainTransform } from '../src/image/transforms.js';
import type { RgbImage } from '../src/image/image.js';

const DATA = fileURLToPath(new URL('../../shared/data/hotdog-mini', import.meta.url));
const RESULTS = fileURLToPath(new URL('./results', import.meta.url));

const train = ImageFolder.split(DATA, 'train');
const test = ImageFolder.split(DATA, 'test');
const imagesPerOp = new Map<string, number>();

function epochCase(name: string, ds: ImageFolder, make: () => DataLoader): ReturnType<typeof b.add> {
  const label = `${name} [${ds.length} images/op]`;
  imagesPerOp.set(label, ds.length);
  let epoch = 0;
  const loader = make();
  return b.add(
    label,
    async () => {
      let n = 0;
      for await (const batch of loader.epoch(epoch++)) n += batch.shape[0];
      if (n !== ds.length) throw new Error(`epoch delivered ${n} images`);
    },
    { minSamples: 5, maxTime: 8 },
  );
}

const first = train.samples[0]!.path;
let decoded: RgbImage | undefined;
const rng = new Random(1);
const trainT = trainTransform(224);
const evalT = evalTransform(224);

const summary = await b.suite(
  'data pipeline (hotdog-mini)',
  // Epoch ops run at 1-5 ops/sec: keep decimals (benny rounds ops to integers by default).
  b.configure({ minDisplayPrecision: 3 }),
  epochCase('train: decode + RandomResizedCrop(224) + flip + normalise, batch 32, main thread', train, () =>
    new DataLoader(train, { batchSize: 32, shuffle: true, seed: 1, transform: trainTransform(224) }),
  ),
  epochCase('train: same, 2 worker threads', train, () =>
    new DataLoader(train, { batchSize: 32, shuffle: true, seed: 1, transform: trainTransform(224), workers: 2 }),
  ),
  epochCase('test: decode + Resize(256) + CenterCrop(224) + normalise, batch 32, main thread', test, () =>
    new DataLoader(test, { batchSize: 32, transform: evalTransform(224) }),
  ),
  (() => {
    const label = 'one image, serial: decode only (sharp) [1 images/op]';
    imagesPerOp.set(label, 1);
    return b.add(label, async () => {
      decoded = await decodeImage(first);
    });
  })(),
  (() => {
    const label = 'one image, serial: train transform only (JS) [1 images/op]';
    imagesPerOp.set(label, 1);
    return b.add(label, async () => {
      decoded ??= await decodeImage(first);
      return () => trainT.apply(decoded!, rng);
    });
  })(),
  (() => {
    const label = 'one image, serial: test transform only (JS) [1 images/op]';
    imagesPerOp.set(label, 1);
    return b.add(label, async () => {
      decoded ??= await decodeImage(first);
      return () => evalT.apply(decoded!, rng);
    });
  })(),
  b.cycle((result) => `${result.name}: ${(result.ops * (imagesPerOp.get(result.name) ?? 1)).toFixed(1)} images/sec (±${result.margin}%)`),
  b.complete(),
  b.save({ file: 'data', folder: RESULTS, format: 'json', details: false }),
);

for (const r of summary.results) console.log(`${(r.ops * (imagesPerOp.get(r.name) ?? 1)).toFixed(1).padStart(8)} images/sec  ${r.name}`);
process.exit(0); // worker threads of the DataLoaders are still alive

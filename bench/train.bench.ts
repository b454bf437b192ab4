/**
 * End-to-end examples/sec of ResNet-18 (2 classes) on this engine: one training step (forward, cross-entropy summed
 * over the batch, backward, SGD with momentum 0.9 and weight decay 1e-3) and eval-mode inference, at batch 32 and
 * 224, 112 and 64 px. The same set-up as PyTorch CPU's figures in the project notes (11.6 / 42.7 / 122 examples/sec
 * for training at 224 / 112 / 64, 29.5 for inference at 224).
 * Run: npx tsx bench/train.bench.ts   Env: BENCH_BATCH (default 32), BENCH_FILTER (substring of case names).
 * Writes bench/results/train.json (benny's json) and bench/results/train-examples.json.
 *
 * One benchmark op is one whole step with its metrics readback, so it measures GPU work. The input batch is
 * uploaded once (data loading is benchmarked separately in bench/data.bench.ts).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import b from 'benny';
import { noGrad } from '../src/autograd/grad-mode.js';
import { describeAdapter } from '../src/runtime/device.js';
import { Tensor } from '../src/runtime/tensor.js';
import { resnet18, type ResNet } from '../src/nn/resnet.js';
import { SGD } from '../src/nn/sgd.js';
import { createNodeRuntime, destroyNodeRuntime } from '../src/node/engine-node.js';
import { trainStep } from '../src/train/fit.js';

const RESULTS = fileURLToPath(new URL('./results', import.meta.url));
const BATCH = Number(process.env.BENCH_BATCH ?? 32);
const FILTER = process.env.BENCH_FILTER ?? '';
const rt = await createNodeRuntime();

function randomBatch(size: number): { images: Float32Array; labels: Int32Array; shape: [number, number, number, number] } {
  const shape: [number, number, number, number] = [BATCH, 3, size, size];
  const images = new Float32Array(BATCH * 3 * size * size);
  let s = 1;
  for (let i = 0; i < images.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    images[i] = (s / 2 ** 32 - 0.5) * 4;
  }
  return { images, labels: Int32Array.from({ length: BATCH }, (_, i) => i % 2), shape };
}

interface Info {
  name: string;
  kind: 'train' | 'inference';
  size: number;
  submitsPerOp?: number;
}
const infos = new Map<string, Info>();
let current: { model: ResNet; optimizer: SGD } | null = null;

function release(): void {
  current?.optimizer.release();
  current?.model.release();
  current = null;
}

function trainCase(size: number): ReturnType<typeof b.add> {
  const name = `train step ${size}px N${BATCH}`;
  infos.set(name, { name, kind: 'train', size });
  const batch = randomBatch(size);
  return b.add(
    name,
    async () => {
      if (!current) {
        const model = resnet18(rt, { numClasses: 2 });
        current = { model, optimizer: new SGD(model.parameters(), { lr: 1e-3, momentum: 0.9, weightDecay: 1e-3 }) };
      }
      const submits = rt.stats.submits;
      await trainStep(current.model, current.optimizer, batch);
      infos.get(name)!.submitsPerOp = rt.stats.submits - submits;
    },
    { minSamples: 2, maxTime: size >= 224 ? 1 : 5, initCount: 1 },
  );
}

function inferenceCase(size: number): ReturnType<typeof b.add> {
  const name = `inference ${size}px N${BATCH}`;
  infos.set(name, { name, kind: 'inference', size });
  const batch = randomBatch(size);
  return b.add(
    name,
    async () => {
      current ??= { model: resnet18(rt, { numClasses: 2 }), optimizer: new SGD([], { lr: 0 }) };
      const model = current.model.eval();
      const x = Tensor.fromArray(rt, batch.images, batch.shape);
      const logits = noGrad(() => model.forward(x));
      await logits.read();
      x.release();
      logits.release();
    },
    { minSamples: 2, maxTime: 3, initCount: 1 },
  );
}

mkdirSync(RESULTS, { recursive: true });
console.log(`adapter: ${describeAdapter(rt.ctx)}; LP_NUM_THREADS=${process.env.LP_NUM_THREADS ?? '(unset)'}; batch ${BATCH}`);
const cases = [
  [`train step 64px`, () => trainCase(64)],
  [`train step 112px`, () => trainCase(112)],
  [`train step 224px`, () => trainCase(224)],
  [`inference 224px`, () => inferenceCase(224)],
] as const;
const selected = cases.filter(([name]) => name.includes(FILTER)).map(([, make]) => make());
const summary = await b.suite(
  'resnet18 end to end',
  ...selected,
  b.cycle((result) => {
    release();
    return `${result.name}: ${((BATCH * 1) / result.details.median).toFixed(2)} examples/sec (median ${result.details.median.toFixed(2)} s/step, ${result.samples} samples, ${infos.get(result.name)!.submitsPerOp ?? '-'} submits/step)`;
  }),
  b.complete(),
  b.save({ file: 'train', folder: RESULTS, format: 'json', details: true }),
);
const rows = summary.results.map((r) => ({
  ...infos.get(r.name)!,
  batch: BATCH,
  medianSecondsPerStep: r.details.median,
  examplesPerSec: BATCH / r.details.median,
  samples: r.samples,
}));
writeFileSync(
  `${RESULTS}/train-examples.json`,
  JSON.stringify({ date: new Date().toISOString(), adapter: describeAdapter(rt.ctx), lpNumThreads: process.env.LP_NUM_THREADS ?? null, cases: rows }, null, 2),
);
console.log('\n| case | examples/sec | s/step |\n| --- | --- | --- |');
for (const r of rows) console.log(`| ${r.name} | ${r.examplesPerSec.toFixed(2)} | ${r.medianSecondsPerStep.toFixed(2)} |`);
destroyNodeRuntime(rt);

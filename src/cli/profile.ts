/**
 * Where a ResNet-18 training step's and an inference pass's GPU time goes, per op kind, per conv call and per kernel.
 *   npm run profile -- --size 224 --batch 32 [--warmup 1] [--timer auto|timestamp|replay] [--calls] [--kernels 15]
 *                      [--phase both|train|inference] [--json] [--out FILE]
 * The model is resnet18(num_classes=2), the step the end-to-end bench's (cross-entropy summed, SGD momentum 0.9,
 * weight decay 1e-3), on a random batch. After the warm-up steps, one step is timed by the wall clock without the
 * profiler and then one step with it (the profiled step records every dispatch in a pass of its own, so its wall
 * time is a little longer). Timestamps need the adapter's timestamp-query feature; Dawn's timestamp rounding
 * (65 us) is switched off here with its timestamp_quantization toggle. Memory: what the GPU pools hold after the
 * unprofiled step, the most they had in use during it, and the process's RSS.
 */
import { writeFileSync, renameSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { noGrad } from '../autograd/grad-mode.js';
import { describeAdapter } from '../runtime/device.js';
import { Profiler, type ProfileTimer } from '../runtime/profiling/profiler.js';
import { formatProfile, summarizeProfile, type ProfileSummary } from '../runtime/profiling/report.js';
import type { Runtime } from '../runtime/runtime.js';
import { Tensor } from '../runtime/tensor.js';
import { resnet18, type ResNet } from '../nn/resnet.js';
import { SGD } from '../nn/sgd.js';
import { createNodeRuntime, destroyNodeRuntime } from '../node/engine-node.js';
import { nodeTuningStore } from '../node/tuning-store.js';
import { trainStep, type HostBatch } from '../train/fit.js';

const USAGE = 'usage: npm run profile -- [--size 224] [--batch 32] [--warmup 1] [--timer auto|timestamp|replay] [--phase both|train|inference] [--calls] [--kernels N] [--json] [--out FILE]';

function fail(message: string): never {
  console.error(`profile: ${message}\n${USAGE}`);
  process.exit(2);
}

function positiveInt(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) fail(`--${name} must be a positive integer, got "${v}"`);
  return n;
}

let parsed;
try {
  parsed = parseArgs({
    options: {
      size: { type: 'string', default: '224' },
      batch: { type: 'string', default: '32' },
      warmup: { type: 'string', default: '1' },
      timer: { type: 'string', default: 'auto' },
      phase: { type: 'string', default: 'both' },
      calls: { type: 'boolean', default: false },
      kernels: { type: 'string', default: '12' },
      json: { type: 'boolean', default: false },
      out: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  }).values;
} catch (e) {
  fail((e as Error).message);
}
if (parsed.help) {
  console.log(USAGE);
  process.exit(0);
}
const size = positiveInt('size', parsed.size!);
const batchSize = positiveInt('batch', parsed.batch!);
const warmup = Number(parsed.warmup);
if (!Number.isInteger(warmup) || warmup < 0) fail(`--warmup must be an integer >= 0, got "${parsed.warmup}"`);
const topKernels = Number(parsed.kernels);
if (!Number.isInteger(topKernels) || topKernels < 0) fail(`--kernels must be an integer >= 0, got "${parsed.kernels}"`);
if (!['auto', 'timestamp', 'replay'].includes(parsed.timer!)) fail(`--timer must be auto, timestamp or replay, got "${parsed.timer}"`);
if (!['both', 'train', 'inference'].includes(parsed.phase!)) fail(`--phase must be both, train or inference, got "${parsed.phase}"`);
if (size < 32) fail(`--size must be at least 32 (ResNet-18 downsamples by 32), got ${size}`);

const rt = await createNodeRuntime({ dawnOptions: ['disable-dawn-features=timestamp_quantization'], tuningStore: nodeTuningStore() });
const timer: ProfileTimer = parsed.timer === 'auto' ? Profiler.defaultTimer(rt) : (parsed.timer as ProfileTimer);

function randomBatch(): HostBatch {
  const shape = [batchSize, 3, size, size] as const;
  const images = new Float32Array(batchSize * 3 * size * size);
  let s = 1;
  for (let i = 0; i < images.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    images[i] = (s / 2 ** 32 - 0.5) * 4;
  }
  return { images, labels: Int32Array.from({ length: batchSize }, (_, i) => i % 2), shape };
}

/** The pools after the unprofiled run (peaks over that run alone) and the process's resident set. */
interface MemoryFigures {
  buffersHeldBytes: number;
  buffersPeakInUseBytes: number;
  texturesHeldBytes: number;
  texturesPeakInUseBytes: number;
  rssBytes: number;
  maxRssBytes: number;
}

interface PhaseResult {
  phase: 'train' | 'inference';
  wallMs: number;
  profiledWallMs: number;
  memory: MemoryFigures;
  summary: ProfileSummary;
}

async function profilePhase(phase: 'train' | 'inference', run: () => Promise<unknown>): Promise<PhaseResult> {
  for (let i = 0; i < warmup; i++) {
    await run();
    if (rt.tuner.pendingCount) {
      await rt.tuner.tunePending((line) => console.error(line));
      // As the training loop does: the tuner's measuring runs leave operands of every variant in the pools.
      await rt.trimPools();
      await run();
    }
  }
  rt.pool.resetPeak();
  rt.textures.resetPeak();
  let t0 = performance.now();
  await run();
  const wallMs = performance.now() - t0;
  const pool = rt.pool.stats();
  const textures = rt.textures.stats();
  const memory: MemoryFigures = {
    buffersHeldBytes: pool.bytesHeld,
    buffersPeakInUseBytes: pool.peakBytesInUse,
    texturesHeldBytes: textures.bytesHeld,
    texturesPeakInUseBytes: textures.peakBytesInUse,
    rssBytes: process.memoryUsage().rss,
    maxRssBytes: process.resourceUsage().maxRSS * 1024,
  };
  const profiler = new Profiler(rt, timer).start();
  t0 = performance.now();
  try {
    await run();
  } catch (e) {
    profiler.abort();
    throw e;
  }
  const profiledWallMs = performance.now() - t0;
  const events = await profiler.finish();
  return { phase, wallMs, profiledWallMs, memory, summary: summarizeProfile(events, profiler.scopes) };
}

function inferencePass(rt: Runtime, model: ResNet, batch: HostBatch): () => Promise<unknown> {
  return async () => {
    const x = Tensor.fromArray(rt, batch.images, batch.shape, 'images');
    const logits = noGrad(() => model.forward(x));
    await logits.read();
    x.release();
    logits.release();
  };
}

const batch = randomBatch();
const model = resnet18(rt, { numClasses: 2 });
const results: PhaseResult[] = [];
if (parsed.phase !== 'inference') {
  const optimizer = new SGD(model.parameters(), { lr: 1e-3, momentum: 0.9, weightDecay: 1e-3 });
  model.train();
  results.push(await profilePhase('train', () => trainStep(model, optimizer, batch)));
  optimizer.release();
}
if (parsed.phase !== 'train') {
  model.eval();
  results.push(await profilePhase('inference', inferencePass(rt, model, batch)));
}
model.release();

const meta = {
  date: new Date().toISOString(),
  adapter: describeAdapter(rt.ctx),
  timer,
  size,
  batch: batchSize,
  warmup,
  env: Object.fromEntries(Object.entries(process.env).filter(([k]) => /^(LP_|GALLIVM_|HOTDOG_)/.test(k))),
};
const json = JSON.stringify({ ...meta, phases: results }, null, 2);
if (parsed.out) {
  const tmp = `${parsed.out}.${process.pid}.tmp`;
  writeFileSync(tmp, json);
  renameSync(tmp, parsed.out);
}
if (parsed.json) console.log(json);
else {
  console.log(`adapter: ${meta.adapter}; timer: ${timer}; env: ${JSON.stringify(meta.env)}`);
  for (const r of results) {
    const title = r.phase === 'train' ? `training step, ${size} px, batch ${batchSize}` : `inference pass (eval, no grad), ${size} px, batch ${batchSize}`;
    console.log(`\n## ${title}`);
    console.log(
      `wall clock: ${r.wallMs.toFixed(0)} ms unprofiled, ${r.profiledWallMs.toFixed(0)} ms profiled; sum of GPU times ${r.summary.gpuMs.toFixed(0)} ms ` +
        `(${r.summary.commands} commands in ${r.summary.submits} submits)`,
    );
    const mb = (b: number): string => (b / 1e6).toFixed(0);
    const m = r.memory;
    console.log(
      `memory after the unprofiled run: buffers held ${mb(m.buffersHeldBytes)} MB (peak in use ${mb(m.buffersPeakInUseBytes)}), ` +
        `textures held ${mb(m.texturesHeldBytes)} MB (peak in use ${mb(m.texturesPeakInUseBytes)}), RSS ${mb(m.rssBytes)} MB (process peak ${mb(m.maxRssBytes)})`,
    );
    console.log(formatProfile(r.summary, { calls: parsed.calls, topKernels }));
  }
}
destroyNodeRuntime(rt);

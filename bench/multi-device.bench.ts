/**
 * Micro-batches and devices (src/train/data-parallel.ts), measured:
 * 1. The chapter's step (ResNet-18, 2 classes, 224 px, batch 128, SGD weight decay 1e-3, no momentum) with
 *    --accumulate K = 1, 2, 4: seconds per step and peak RSS, each K in a process of its own (peak RSS is per
 *    process), next to PyTorch's peak RSS for the same step at batch 128 (bench/peers/torch_step.py, when
 *    /usr/bin/python3 imports torch: scripts/setup-peers.sh).
 * 2. Examples/sec at a small size (64 px, batch 32) on 1 and 2 devices of one adapter, in one process, alternated.
 * 3. What the gradient exchange costs per step on its own: every gradient of the model read back (in 8 MiB buckets),
 *    summed on the host and written back, for 2 devices.
 * Run: npx tsx bench/multi-device.bench.ts   Env: BENCH_STEPS (timed steps per K, default 2), BENCH_SKIP_224=1.
 * Writes bench/results/multi-device.json. Kernel variants: the built-in defaults (no tuning), the same for every case.
 */
import { fork } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describeAdapter } from '../src/runtime/device.js';
import { resnet18 } from '../src/nn/resnet.js';
import { SGD } from '../src/nn/sgd.js';
import { createNodeRuntimes } from '../src/node/engine-node.js';
import type { Runtime } from '../src/runtime/runtime.js';
import { dataParallelStep, replicateState, type Replica } from '../src/train/data-parallel.js';
import { trainStep, type HostBatch } from '../src/train/fit.js';
import { WorkerClient } from './lib/workers.js';
import type { PrepareReply, RssReply, RunReply } from './lib/protocol.js';

const RESULTS = fileURLToPath(new URL('./results', import.meta.url));
const SELF = fileURLToPath(import.meta.url);
const STEPS = Number(process.env.BENCH_STEPS ?? 2);

function randomBatch(n: number, size: number): HostBatch {
  const images = new Float32Array(n * 3 * size * size);
  let s = 1;
  for (let i = 0; i < images.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    images[i] = (s / 2 ** 32 - 0.5) * 4;
  }
  return { images, labels: Int32Array.from({ length: n }, (_, i) => i % 2), shape: [n, 3, size, size] };
}

function replicaOn(rt: Runtime, momentum: number): Replica {
  rt.tuner.enabled = false;
  const model = resnet18(rt, { numClasses: 2 });
  return { model, optimizer: new SGD(model.parameters(), { lr: 1e-3, momentum, weightDecay: 1e-3 }) };
}

interface AccumulateResult {
  accumulate: number;
  firstStepSeconds: number;
  secondsPerStep: number[];
  peakRssBytes: number;
  device: string;
}

/** Child process: one K at 224 px, batch 128; prints its result as JSON on the IPC channel. */
async function accumulateChild(k: number): Promise<void> {
  const [rt] = await createNodeRuntimes(1);
  const { model, optimizer } = replicaOn(rt!, 0);
  const batch = randomBatch(128, 224);
  let t0 = performance.now();
  await trainStep(model, optimizer, batch, k);
  const firstStepSeconds = (performance.now() - t0) / 1000;
  const secondsPerStep: number[] = [];
  for (let i = 0; i < STEPS; i++) {
    t0 = performance.now();
    const [loss] = await trainStep(model, optimizer, batch, k);
    if (!Number.isFinite(loss)) throw new Error(`accumulate ${k}: loss ${loss}`);
    secondsPerStep.push((performance.now() - t0) / 1000);
  }
  const result: AccumulateResult = { accumulate: k, firstStepSeconds, secondsPerStep, peakRssBytes: process.resourceUsage().maxRSS * 1024, device: describeAdapter(rt!.ctx) };
  process.send!(result);
  rt!.destroy();
}

function runChild(k: number): Promise<AccumulateResult> {
  return new Promise((resolve, reject) => {
    const child = fork(SELF, [], { execArgv: ['--import', 'tsx'], env: { ...process.env, BENCH_CHILD_ACCUMULATE: String(k) }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let result: AccumulateResult | null = null;
    child.on('message', (m) => (result = m as AccumulateResult));
    child.on('exit', (code) => (result ? resolve(result) : reject(new Error(`accumulate ${k}: the child exited with ${code}`))));
  });
}

async function torchRss(): Promise<{ peakRssBytes: number; secondsPerStep: number[]; versions: unknown } | { skipped: string }> {
  const python = '/usr/bin/python3';
  if (!existsSync(python)) return { skipped: `${python} not found` };
  const peer = WorkerClient.python('torch', python, fileURLToPath(new URL('./peers/torch_step.py', import.meta.url)), process.env);
  try {
    const info = await peer.call<{ versions: unknown }>({ op: 'info' });
    await peer.call<PrepareReply>({ op: 'prepare', spec: { type: 'train', size: 224, batch: 128, momentum: 0, weightDecay: 1e-3 } });
    const run = await peer.call<RunReply>({ op: 'run', minSeconds: 0, minRuns: STEPS, maxRuns: STEPS });
    const rss = await peer.call<RssReply>({ op: 'rss' });
    return { peakRssBytes: rss.maxRssBytes, secondsPerStep: run.seconds, versions: info.versions };
  } catch (e) {
    return { skipped: (e as Error).message };
  } finally {
    await peer.close();
  }
}

/** Examples/sec on 1 and 2 devices, alternated (machine noise hits both), plus the exchange on its own. */
async function devicesCase(size: number, batchSize: number, rounds: number): Promise<Record<string, unknown>> {
  const rts = await createNodeRuntimes(3);
  const single = replicaOn(rts[0]!, 0.9);
  const pair = [replicaOn(rts[1]!, 0.9), replicaOn(rts[2]!, 0.9)];
  await replicateState([single, ...pair]);
  const batch = randomBatch(batchSize, size);
  // Warm-up: compiles every kernel on every device.
  await trainStep(single.model, single.optimizer, batch);
  await dataParallelStep(pair, batch);
  const one: number[] = [];
  const two: number[] = [];
  for (let r = 0; r < rounds; r++) {
    let t0 = performance.now();
    await trainStep(single.model, single.optimizer, batch);
    one.push(batchSize / ((performance.now() - t0) / 1000));
    t0 = performance.now();
    await dataParallelStep(pair, batch);
    two.push(batchSize / ((performance.now() - t0) / 1000));
  }
  // The exchange alone: read every gradient of both replicas back in 8 MiB buckets, sum, write back.
  const exchange: number[] = [];
  const bytes = pair[0]!.model.parameters().reduce((n, p) => n + p.byteLength, 0);
  // Host buffers kept from round to round, as dataParallelStep keeps them.
  const hosts = pair.map(() => [] as ArrayBuffer[]);
  for (let r = 0; r < rounds + 1; r++) {
    const t0 = performance.now();
    const perReplica = await Promise.all(
      pair.map(async (rep, k) => {
        const params = rep.model.parameters();
        let bucket: { buffer: GPUBuffer; offset: number; size: number }[] = [];
        let n = 0;
        const reads: Promise<ArrayBuffer>[] = [];
        const submit = (): void => {
          const b = reads.length;
          hosts[k]![b] ??= new ArrayBuffer(n);
          reads.push(rep.model.rt.readParts(bucket, hosts[k]![b]));
          bucket = [];
          n = 0;
        };
        for (const p of params) {
          bucket.push({ buffer: p.grad!.buffer, offset: 0, size: p.grad!.byteLength });
          n += p.grad!.byteLength;
          if (n >= 8 * 1024 * 1024) submit();
        }
        if (bucket.length) submit();
        return Promise.all(reads);
      }),
    );
    perReplica[0]!.forEach((buf, b) => {
      const sum = new Float32Array(buf);
      const other = new Float32Array(perReplica[1]![b]!);
      for (let j = 0; j < sum.length; j++) sum[j] += other[j]!;
    });
    // The sum written back to every replica, one upload per bucket (as the step does).
    await Promise.all(
      pair.map(async (rep) => {
        const params = rep.model.parameters();
        let k = 0;
        for (const buf of perReplica[0]!) {
          const parts: { buffer: GPUBuffer; offset: number; size: number }[] = [];
          for (let n = 0; n < buf.byteLength; k++) {
            const p = params[k]!;
            parts.push({ buffer: p.grad!.buffer, offset: 0, size: p.grad!.byteLength });
            n += p.grad!.byteLength;
          }
          await rep.model.rt.writeParts(parts, buf);
        }
      }),
    );
    await Promise.all(pair.map((rep) => rep.model.rt.sync()));
    if (r > 0) exchange.push((performance.now() - t0) / 1000); // round 0 allocates the host buffers
  }
  for (const rt of rts) rt.destroy();
  const median = (a: number[]): number => [...a].sort((x, y) => x - y)[a.length >> 1]!;
  return {
    size,
    batch: batchSize,
    rounds,
    examples_per_sec_1_device: one.map((v) => +v.toFixed(2)),
    examples_per_sec_2_devices: two.map((v) => +v.toFixed(2)),
    median_ratio_2_vs_1: +(median(two) / median(one)).toFixed(3),
    gradient_bytes: bytes,
    exchange_seconds_2_devices: exchange.map((v) => +v.toFixed(3)),
  };
}

if (process.env.BENCH_CHILD_ACCUMULATE) {
  await accumulateChild(Number(process.env.BENCH_CHILD_ACCUMULATE));
} else {
  const result: Record<string, unknown> = { started: new Date().toISOString(), note: 'one machine shared with other jobs: times are noisy; peak RSS is what this measures' };
  console.log('devices: examples/sec at 64 px, batch 32, on 1 and 2 devices of one adapter');
  result.devices = await devicesCase(64, 32, 3);
  console.log(JSON.stringify(result.devices));
  if (process.env.BENCH_SKIP_224 !== '1') {
    const accumulate: AccumulateResult[] = [];
    for (const k of [1, 2, 4]) {
      console.log(`accumulate ${k}: 224 px, batch 128`);
      const r = await runChild(k);
      console.log(JSON.stringify(r));
      accumulate.push(r);
    }
    result.accumulate_224_b128 = accumulate;
    console.log('PyTorch: 224 px, batch 128');
    result.torch_224_b128 = await torchRss();
    console.log(JSON.stringify(result.torch_224_b128));
  }
  mkdirSync(RESULTS, { recursive: true });
  writeFileSync(`${RESULTS}/multi-device.json`, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`wrote ${RESULTS}/multi-device.json`);
}

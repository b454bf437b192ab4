// The engine's side of `npm run bench` (bench/run.ts starts it): end-to-end ResNet-18 steps, conv and matmul calls,
// and the register-only FMA loop, each prepared once (warm-up run included) and then timed on request. Kernel cases
// check sampled outputs against float64 CPU sums (bench/lib/check.ts) before they are timed.
import { noGrad } from '../../src/autograd/grad-mode.js';
import { describeAdapter } from '../../src/runtime/device.js';
import { conv2dBackwardInput, conv2dGeometry, convLowering, conv2dBackwardWeight, conv2dForward } from '../../src/kernels/conv2d/conv2d.js';
import { matmul } from '../../src/kernels/matmul/matmul.js';
import { convOperand, gemmOperand } from '../../src/kernels/workloads.js';
import { CONV_KINDS } from '../../src/runtime/profiling/op-kinds.js';
import { Profiler } from '../../src/runtime/profiling/profiler.js';
import { Tensor } from '../../src/runtime/tensor.js';
import { resnet18 } from '../../src/nn/resnet.js';
import { SGD } from '../../src/nn/sgd.js';
import { createNodeRuntime } from '../../src/node/engine-node.js';
import { nodeTuningStore } from '../../src/node/tuning-store.js';
import { trainStep, type HostBatch } from '../../src/train/fit.js';
import { fmaLoopFlop, fmaLoopKernel } from '../lib/fma.wgsl.js';
import { checkConv, checkMatmul } from '../lib/check.js';
import { timeRuns, type AdapterReport, type CaseSpec, type InfoReply, type PrepareReply, type Request, type RssReply, type RunReply } from '../lib/protocol.js';
import { pseudoRandom } from '../lib/shapes.js';
import { serve } from './serve.js';

const rt = await createNodeRuntime({ tuningStore: nodeTuningStore() });

/** The engine's end-to-end bench batch: uniform in [-2, 2), labels alternating (as bench/peers/torch_step.py). */
function randomBatch(size: number, batch: number): HostBatch {
  const shape = [batch, 3, size, size] as const;
  const images = pseudoRandom(batch * 3 * size * size, 1);
  for (let i = 0; i < images.length; i++) images[i]! *= 4;
  return { images, labels: Int32Array.from({ length: batch }, (_, i) => i % 2), shape };
}


interface Prepared {
  once: () => Promise<void>;
  release: () => void;
  /** Calls per timed run (kernel cases); seconds are reported per call. */
  calls?: number;
}

let current: Prepared | null = null;
/** Train cases: the last step's loss per example; inference: the last run's largest |logit|. */
let lastValue: number | undefined;

/**
 * A kernel case's timed run: `calls` calls, then one wait for the GPU. One call takes well under a millisecond on a
 * big GPU for some conv shapes, where a wait per call would be timed as much as the kernel: calls are repeated until
 * a run takes about 20 ms (at most 64; on CPU drivers one call already takes longer).
 */
async function kernelTiming(call: () => Tensor<'f32'>): Promise<Prepared & { calls: number }> {
  const run = async (calls: number): Promise<void> => {
    for (let i = 0; i < calls; i++) call().release();
    await rt.sync();
  };
  const timed = async (calls: number): Promise<number> => {
    const t0 = performance.now();
    await run(calls);
    return (performance.now() - t0) / 1e3;
  };
  const one = await timed(1);
  // The GPU time of a call without the wait's fixed cost (one call's whole run when that is long already).
  const perCall = one >= 0.02 ? one : Math.max((await timed(4)) - one, 1e-6) / 3;
  const calls = Math.min(64, Math.max(1, Math.ceil(0.02 / perCall)));
  return { once: () => run(calls), release: () => {}, calls };
}

function adapterReport(): AdapterReport {
  const d = rt.deviceCtx;
  const i = d.adapterInfo;
  const limits: Record<string, number> = {};
  for (const name of [
    'maxBufferSize',
    'maxStorageBufferBindingSize',
    'maxComputeWorkgroupStorageSize',
    'maxComputeInvocationsPerWorkgroup',
    'maxComputeWorkgroupSizeX',
    'maxComputeWorkgroupSizeY',
    'maxComputeWorkgroupsPerDimension',
    'maxStorageBuffersPerShaderStage',
  ] as const) {
    limits[name] = d.limits[name];
  }
  return {
    vendor: i.vendor,
    architecture: i.architecture,
    device: i.device,
    description: i.description,
    featureLevel: d.featureLevel,
    cpuDriver: d.isCpuDriver,
    kernels: rt.ctx.kernels,
    subgroupMinSize: d.subgroupMinSize,
    subgroupMaxSize: d.subgroupMaxSize,
    features: [...d.features].sort(),
    limits,
  };
}

const FMA = { chains: 8, unroll: 4 };
const FMA_INVOCATIONS = 32768;

async function prepare(spec: CaseSpec): Promise<PrepareReply> {
  release();
  const t0 = performance.now();
  const reply: PrepareReply = { seconds: 0 };
  switch (spec.type) {
    case 'train': {
      const model = resnet18(rt, { numClasses: 2 });
      const optimizer = new SGD(model.parameters(), { lr: 1e-3, momentum: spec.momentum, weightDecay: spec.weightDecay });
      const batch = randomBatch(spec.size, spec.batch);
      current = {
        once: async () => {
          const [lossSum] = await trainStep(model, optimizer, batch);
          lastValue = lossSum / spec.batch;
        },
        release: () => {
          optimizer.release();
          model.release();
        },
      };
      // The warm-up step also counts the step's conv FLOPs from the op scopes (no timing: recording unchanged).
      const counter = new Profiler(rt, 'none').start();
      try {
        await current.once();
      } finally {
        counter.abort();
      }
      reply.value = lastValue;
      // Kernel variants are measured (or taken from the tuning cache) before anything is timed.
      await rt.tuner.tunePending();
      reply.convGflop = {};
      for (const kind of CONV_KINDS) {
        reply.convGflop[kind] = counter.scopes.filter((s) => s.kind === kind).reduce((a, s) => a + s.flop, 0) / 1e9;
      }
      break;
    }
    case 'inference': {
      const model = resnet18(rt, { numClasses: 2 }).eval();
      const batch = randomBatch(spec.size, spec.batch);
      current = {
        once: async () => {
          const x = Tensor.fromArray(rt, batch.images, batch.shape, 'images');
          const logits = noGrad(() => model.forward(x));
          lastValue = (await logits.read()).reduce((m, v) => Math.max(m, Math.abs(v)), 0);
          x.release();
          logits.release();
        },
        release: () => model.release(),
      };
      await current.once();
      await rt.tuner.tunePending();
      reply.value = lastValue;
      break;
    }
    case 'conv': {
      const { shape: c, direction, batch } = spec;
      const opts = { stride: c.stride, padding: c.padding };
      const xShape = [batch, c.cin, c.hw, c.hw];
      const wShape = [c.cout, c.cin, c.k, c.k];
      // The operands as the tuner and the profiler see them (src/kernels/workloads.ts), random, with host copies.
      const g = conv2dGeometry(xShape, wShape, opts);
      const x = direction === 'backward-data' ? null : convOperand(rt, g, 'x', 'random');
      const w = direction === 'backward-weight' ? null : convOperand(rt, g, 'w', 'random');
      const gy = direction === 'forward' ? null : convOperand(rt, g, 'gy', 'random');
      const call =
        direction === 'forward'
          ? () => conv2dForward(x!.t, w!.t, null, opts)
          : direction === 'backward-data'
            ? () => conv2dBackwardInput(gy!.t, w!.t, xShape, opts)
            : () => conv2dBackwardWeight(gy!.t, x!.t, wShape, opts);
      const releaseInputs = (): void => [x, w, gy].forEach((v) => v?.t.release());
      current = { once: async () => (call().release(), await rt.sync()), release: releaseInputs };
      await current.once();
      // The lowering the tuner picks for this shape (measured now unless the tuning cache knows it).
      await rt.tuner.tunePending();
      // The tuned call's output, checked before anything is timed.
      const y = call();
      const out = await y.read();
      y.release();
      reply.check = checkConv(out, c, direction, batch, { x: x?.host ?? null, w: w?.host ?? null, gy: gy?.host ?? null });
      current = { ...(await kernelTiming(call)), release: releaseInputs };
      reply.callsPerRun = current.calls;
      const pass = direction === 'forward' ? 'forward' : direction === 'backward-data' ? 'data' : 'weight';
      reply.lowering = convLowering(rt, g, pass);
      break;
    }
    case 'matmul': {
      const shape = { M: spec.n, N: spec.n, K: spec.n, transA: false, transB: false, batch: 1 };
      const [a, b] = [gemmOperand(rt, shape, 'a', 'random'), gemmOperand(rt, shape, 'b', 'random')];
      for (const v of [a, b]) {
        const flat = v.t;
        v.t = flat.view([spec.n, spec.n]);
        flat.release();
      }
      const call = (): Tensor<'f32'> => matmul(a.t, b.t);
      const releaseInputs = (): void => [a, b].forEach((v) => v.t.release());
      current = { once: async () => (call().release(), await rt.sync()), release: releaseInputs };
      await current.once();
      await rt.tuner.tunePending();
      const c = call();
      const out = await c.read();
      c.release();
      reply.check = checkMatmul(out, a.host!, b.host!, spec.n);
      current = { ...(await kernelTiming(call)), release: releaseInputs };
      reply.callsPerRun = current.calls;
      // The tuner's choices for this shape (texture or storage GEMM on CPU drivers, the tiled variant on GPUs).
      const n = spec.n;
      const chosen = Object.entries(rt.tuner.usedChoices()).filter(([k]) => k.includes(` 1x${n}x${n}x${n} `));
      reply.lowering = chosen.map(([, v]) => v).join(' / ') || undefined;
      break;
    }
    case 'fma': {
      const def = { ...fmaLoopKernel(FMA), constants: { WG: spec.wg } };
      const out = Tensor.empty(rt, [FMA_INVOCATIONS]);
      let iters = 64;
      const run = async (): Promise<void> => {
        rt.dispatch(def, FMA_INVOCATIONS / spec.wg, { out }, { iters, seed: 0.5, mul: 0.99990004, add: 1e-4 });
        await rt.sync();
      };
      await run(); // compile
      // Calibrate to about 0.25 s per run.
      const t1 = performance.now();
      await run();
      const s = (performance.now() - t1) / 1e3;
      iters = Math.max(64, Math.round((iters * 0.25) / Math.max(s, 1e-4)));
      current = { once: run, release: () => out.release() };
      const check = new Float32Array(await out.read());
      if (!check.every(Number.isFinite)) throw new Error('fma loop produced non-finite values');
      reply.flop = fmaLoopFlop(FMA, FMA_INVOCATIONS, iters);
      break;
    }
  }
  reply.seconds = (performance.now() - t0) / 1e3;
  return reply;
}

function release(): void {
  current?.release();
  current = null;
  lastValue = undefined;
  rt.pool.trim();
}

async function handle(request: Request): Promise<unknown> {
  switch (request.op) {
    case 'info':
      return { adapter: describeAdapter(rt.ctx), versions: { node: process.version }, adapterInfo: adapterReport() } satisfies InfoReply;
    case 'prepare':
      return prepare(request.spec);
    case 'run': {
      if (!current) throw new Error('run before prepare');
      const calls = current.calls ?? 1;
      const seconds = (await timeRuns(current.once, request)).map((s) => s / calls);
      return { seconds, ...(lastValue !== undefined ? { value: lastValue } : {}) } satisfies RunReply;
    }
    case 'release':
      release();
      return {};
    case 'rss':
      return { maxRssBytes: process.resourceUsage().maxRSS * 1024 } satisfies RssReply;
  }
}

serve(handle);

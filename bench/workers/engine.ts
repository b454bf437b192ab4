// The engine's side of `npm run bench` (bench/run.ts starts it): end-to-end ResNet-18 steps, conv and matmul calls,
// and the register-only FMA loop, each prepared once (warm-up run included) and then timed on request.
import { noGrad } from '../../src/autograd/grad-mode.js';
import { describeAdapter } from '../../src/runtime/device.js';
import { conv2dBackwardInput, conv2dGeometry, convLowering, conv2dBackwardWeight, conv2dForward } from '../../src/kernels/conv2d/conv2d.js';
import { matmul } from '../../src/kernels/matmul/matmul.js';
import { CONV_KINDS } from '../../src/runtime/profiling/op-kinds.js';
import { Profiler } from '../../src/runtime/profiling/profiler.js';
import { Tensor } from '../../src/runtime/tensor.js';
import { resnet18 } from '../../src/nn/resnet.js';
import { SGD } from '../../src/nn/sgd.js';
import { createNodeRuntime } from '../../src/node/engine-node.js';
import { nodeTuningStore } from '../../src/node/tuning-store.js';
import { trainStep, type HostBatch } from '../../src/train/fit.js';
import { fmaLoopFlop, fmaLoopKernel } from '../lib/fma.wgsl.js';
import { timeRuns, type CaseSpec, type InfoReply, type PrepareReply, type Request, type RssReply } from '../lib/protocol.js';
import { convOutSize, pseudoRandom } from '../lib/shapes.js';
import { serve } from './serve.js';

const rt = await createNodeRuntime({ tuningStore: nodeTuningStore() });

/** The engine's end-to-end bench batch: uniform in [-2, 2), labels alternating (as bench/peers/torch_step.py). */
function randomBatch(size: number, batch: number): HostBatch {
  const shape = [batch, 3, size, size] as const;
  const images = pseudoRandom(batch * 3 * size * size, 1);
  for (let i = 0; i < images.length; i++) images[i]! *= 4;
  return { images, labels: Int32Array.from({ length: batch }, (_, i) => i % 2), shape };
}

function tensor(shape: number[], seed: number): Tensor<'f32'> {
  return Tensor.fromArray(rt, pseudoRandom(shape.reduce((a, b) => a * b, 1), seed), shape);
}

interface Prepared {
  once: () => Promise<void>;
  release: () => void;
}

let current: Prepared | null = null;

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
        once: async () => void (await trainStep(model, optimizer, batch)),
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
          await logits.read();
          x.release();
          logits.release();
        },
        release: () => model.release(),
      };
      await current.once();
      await rt.tuner.tunePending();
      break;
    }
    case 'conv': {
      const { shape: c, direction, batch } = spec;
      const opts = { stride: c.stride, padding: c.padding };
      const o = convOutSize(c);
      const xShape = [batch, c.cin, c.hw, c.hw];
      const wShape = [c.cout, c.cin, c.k, c.k];
      const x = direction === 'backward-data' ? null : tensor(xShape, 1);
      const w = direction === 'backward-weight' ? null : tensor(wShape, 2);
      const gy = direction === 'forward' ? null : tensor([batch, c.cout, o, o], 3);
      const call =
        direction === 'forward'
          ? () => conv2dForward(x!, w!, null, opts)
          : direction === 'backward-data'
            ? () => conv2dBackwardInput(gy!, w!, xShape, opts)
            : () => conv2dBackwardWeight(gy!, x!, wShape, opts);
      current = {
        once: async () => {
          call().release();
          await rt.sync();
        },
        release: () => [x, w, gy].forEach((t) => t?.release()),
      };
      await current.once();
      // The lowering the tuner picks for this shape (measured now unless the tuning cache knows it).
      await rt.tuner.tunePending();
      await current.once();
      const pass = direction === 'forward' ? 'forward' : direction === 'backward-data' ? 'data' : 'weight';
      reply.lowering = convLowering(rt, conv2dGeometry(xShape, wShape, opts), pass);
      break;
    }
    case 'matmul': {
      const a = tensor([spec.n, spec.n], 1);
      const b = tensor([spec.n, spec.n], 2);
      current = {
        once: async () => {
          matmul(a, b).release();
          await rt.sync();
        },
        release: () => [a, b].forEach((t) => t.release()),
      };
      await current.once();
      await rt.tuner.tunePending();
      await current.once();
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
  rt.pool.trim();
}

async function handle(request: Request): Promise<unknown> {
  switch (request.op) {
    case 'info':
      return { adapter: describeAdapter(rt.ctx), versions: { node: process.version } } satisfies InfoReply;
    case 'prepare':
      return prepare(request.spec);
    case 'run': {
      if (!current) throw new Error('run before prepare');
      return { seconds: await timeRuns(current.once, request) };
    }
    case 'release':
      release();
      return {};
    case 'rss':
      return { maxRssBytes: process.resourceUsage().maxRSS * 1024 } satisfies RssReply;
  }
}

serve(handle);

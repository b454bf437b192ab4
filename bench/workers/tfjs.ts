// The tfjs-backend-webgpu peer of `npm run bench` (bench/run.ts starts it), on the engine's Dawn instance and
// adapter (src/node/webgpu-node.ts: same LP_NUM_THREADS and Dawn options): matmul and conv2d forward.
// tfjs is NHWC with [KH, KW, Cin, Cout] filters; explicit padding matches PyTorch's symmetric padding.
// A run ends with a wait on a 4-byte copy submitted after tfjs' work (mapAsync, like the engine's rt.sync()).
import { describeAdapter } from '../../src/runtime/device.js';
import { nodeGpu } from '../../src/node/webgpu-node.js';
import { timeRuns, type CaseSpec, type InfoReply, type PrepareReply, type Request, type RssReply } from '../lib/protocol.js';
import { convOutSize, pseudoRandom } from '../lib/shapes.js';
import { serve } from './serve.js';

const gpu = await nodeGpu();
Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
const tf = await import('@tensorflow/tfjs-core');
await import('@tensorflow/tfjs-backend-webgpu');
if (!(await tf.setBackend('webgpu'))) throw new Error('tfjs: the webgpu backend did not initialise');
await tf.ready();

interface WebGpuBackendInternals {
  device: GPUDevice;
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
}
const backend = tf.backend() as unknown as WebGpuBackendInternals;
const device = backend.device;
const fenceSource = device.createBuffer({ size: 4, usage: GPUBufferUsage.COPY_SRC });
const fence = device.createBuffer({ size: 4, usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ });

async function sync(): Promise<void> {
  backend.ensureCommandEncoderReady();
  backend.endComputePassEncoder();
  backend.submitQueue();
  const enc = device.createCommandEncoder();
  enc.copyBufferToBuffer(fenceSource, 0, fence, 0, 4);
  device.queue.submit([enc.finish()]);
  await fence.mapAsync(GPUMapMode.READ);
  fence.unmap();
}

let current: { once: () => Promise<void>; release: () => void } | null = null;

function randomTensor(shape: number[], seed: number) {
  return tf.tensor(pseudoRandom(shape.reduce((a, b) => a * b, 1), seed), shape, 'float32');
}

/** Compares 16 sampled outputs with a float64 sum on the CPU, so a timed run is known to compute the result. */
function spotCheck(what: string, got: Float32Array, count: number, ref: (i: number) => number): void {
  let s = 7;
  for (let k = 0; k < 16; k++) {
    s = (s * 1103515245 + 12345) >>> 0;
    const i = s % count;
    const want = ref(i);
    if (!(Math.abs(got[i]! - want) <= 1e-4 * (1 + Math.abs(want)))) throw new Error(`tfjs ${what}: output ${i} is ${got[i]}, expected ${want}`);
  }
}

async function prepare(spec: CaseSpec): Promise<PrepareReply> {
  release();
  const t0 = performance.now();
  if (spec.type === 'matmul') {
    const a = randomTensor([spec.n, spec.n], 1);
    const b = randomTensor([spec.n, spec.n], 2);
    current = {
      once: async () => {
        tf.matMul(a, b).dispose();
        await sync();
      },
      release: () => tf.dispose([a, b]),
    };
    const c = tf.matMul(a, b);
    const [av, bv] = [pseudoRandom(spec.n * spec.n, 1), pseudoRandom(spec.n * spec.n, 2)];
    spotCheck('matMul', (await c.data()) as Float32Array, spec.n * spec.n, (i) => {
      const [r, col] = [Math.floor(i / spec.n), i % spec.n];
      let acc = 0;
      for (let k = 0; k < spec.n; k++) acc += av[r * spec.n + k]! * bv[k * spec.n + col]!;
      return acc;
    });
    c.dispose();
  } else if (spec.type === 'conv' && spec.direction === 'forward') {
    const { shape: c, batch } = spec;
    const x = randomTensor([batch, c.hw, c.hw, c.cin], 1) as import('@tensorflow/tfjs-core').Tensor4D;
    const w = randomTensor([c.k, c.k, c.cin, c.cout], 2) as import('@tensorflow/tfjs-core').Tensor4D;
    const p = c.padding;
    const pad: [[number, number], [number, number], [number, number], [number, number]] = [[0, 0], [p, p], [p, p], [0, 0]];
    current = {
      once: async () => {
        const y = tf.conv2d(x, w, c.stride, pad, 'NHWC');
        const o = convOutSize(c);
        if (y.shape[1] !== o || y.shape[2] !== o) throw new Error(`tfjs conv2d output ${y.shape} is not ${o}x${o}`);
        y.dispose();
        await sync();
      },
      release: () => tf.dispose([x, w]),
    };
    const o = convOutSize(c);
    const y = tf.conv2d(x, w, c.stride, pad, 'NHWC');
    const [xv, wv] = [pseudoRandom(batch * c.hw * c.hw * c.cin, 1), pseudoRandom(c.k * c.k * c.cin * c.cout, 2)];
    spotCheck('conv2d', (await y.data()) as Float32Array, batch * o * o * c.cout, (i) => {
      const co = i % c.cout;
      const ox = Math.floor(i / c.cout) % o;
      const oy = Math.floor(i / (c.cout * o)) % o;
      const n = Math.floor(i / (c.cout * o * o));
      let acc = 0;
      for (let ky = 0; ky < c.k; ky++) {
        const iy = oy * c.stride - p + ky;
        if (iy < 0 || iy >= c.hw) continue;
        for (let kx = 0; kx < c.k; kx++) {
          const ix = ox * c.stride - p + kx;
          if (ix < 0 || ix >= c.hw) continue;
          for (let ci = 0; ci < c.cin; ci++) acc += xv[((n * c.hw + iy) * c.hw + ix) * c.cin + ci]! * wv[((ky * c.k + kx) * c.cin + ci) * c.cout + co]!;
        }
      }
      return acc;
    });
    y.dispose();
  } else {
    throw new Error(`the tfjs peer does not run ${JSON.stringify(spec)}`);
  }
  await current.once();
  return { seconds: (performance.now() - t0) / 1e3 };
}

function release(): void {
  current?.release();
  current = null;
}

async function handle(request: Request): Promise<unknown> {
  switch (request.op) {
    case 'info': {
      const adapter = await gpu.requestAdapter();
      const info = adapter?.info;
      const described = info ? describeAdapter({ adapterInfo: info } as Parameters<typeof describeAdapter>[0]) : 'unknown';
      return { adapter: described, versions: { 'tfjs-core': tf.version_core, node: process.version } } satisfies InfoReply;
    }
    case 'prepare':
      return prepare(request.spec);
    case 'run':
      if (!current) throw new Error('run before prepare');
      return { seconds: await timeRuns(current.once, request) };
    case 'release':
      release();
      return {};
    case 'rss':
      return { maxRssBytes: process.resourceUsage().maxRSS * 1024 } satisfies RssReply;
  }
}

serve(handle);

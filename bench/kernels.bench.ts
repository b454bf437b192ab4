/**
 * GEMM and conv2d kernel throughput in GFLOP/s (2 FLOPs per multiply-add) at ResNet-18's conv shapes, batch 32,
 * 224x224 input, plus matmul 1024^3 and 2048^3.
 * Run: npx tsx bench/kernels.bench.ts   (on a shared machine, under its GPU lock, so no other GPU job competes)
 * Takes about 1.5 minutes on lavapipe with 2 cores.
 * Env: BENCH_BATCH (default 32), BENCH_FILTER (substring of case names to run).
 * Writes bench/results/kernels-<suite>.json (benny's json), bench/results/kernels.json (all suites' summaries)
 * and bench/results/kernels-gflops.json (GFLOP/s per case).
 *
 * One benchmark op records the kernel's dispatches for one call and waits for the GPU (rt.sync()), so an op
 * measures GPU work, not just recording. Kernels are compiled before timing (benny runs each case once while
 * preparing it).
 */
import { writeFileSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import b from 'benny';
import type { Summary } from 'benny/lib/internal/common-types.js';
import { createNodeRuntime, destroyNodeRuntime } from '../src/node/engine-node.js';
import { describeAdapter } from '../src/runtime/device.js';
import { Tensor } from '../src/runtime/tensor.js';
import { matmul } from '../src/kernels/matmul/matmul.js';
import {
  conv2dBackwardInput,
  conv2dBackwardWeight,
  conv2dForward,
  conv2dGeometry,
  type Conv2dOptions,
} from '../src/kernels/conv2d/conv2d.js';
import { convFlop, convOperand, gemmFlop, gemmOperand } from '../src/kernels/workloads.js';
import { RESNET18_CONVS } from './lib/shapes.js';

const RESULTS = fileURLToPath(new URL('./results', import.meta.url));
const BATCH = Number(process.env.BENCH_BATCH ?? 32);
const FILTER = process.env.BENCH_FILTER ?? '';

const rt = await createNodeRuntime();

interface CaseInfo {
  suite: string;
  name: string;
  flop: number;
  shape: string;
}
const infos = new Map<string, CaseInfo>();
const cleanups = new Map<string, () => void>();

// benny prepares every case of a suite at once (and calls each case function during preparation); one chain
// keeps the GPU work of all calls strictly one after another.
let chain: Promise<unknown> = Promise.resolve();
function serial(fn: () => Promise<void>): Promise<void> {
  const next = chain.then(fn);
  chain = next.catch(() => undefined);
  return next;
}

type Setup = () => { run: () => Tensor; release: () => void };

function gpuCase(suite: string, name: string, flop: number, shape: string, setup: Setup, slow: boolean): ReturnType<typeof b.add> {
  infos.set(name, { suite, name, flop, shape });
  let state: ReturnType<Setup> | null = null;
  cleanups.set(name, () => {
    state?.release();
    state = null;
  });
  return b.add(
    name,
    () =>
      serial(async () => {
        state ??= setup();
        state.run().release();
        await rt.sync();
      }),
    slow ? { minSamples: 2, maxTime: 1, initCount: 1 } : { minSamples: 3, maxTime: 1, initCount: 1 },
  );
}


type ConvOp = 'forward' | 'backward-data' | 'backward-weight';

function convCases(op: ConvOp): ReturnType<typeof b.add>[] {
  const out: ReturnType<typeof b.add>[] = [];
  for (const { label, cin, cout, hw, k, stride: s, padding: p } of RESNET18_CONVS) {
    const name = `conv2d ${op} ${label} N${BATCH}`;
    if (!name.includes(FILTER)) continue;
    const opts: Conv2dOptions = { stride: s, padding: p };
    const xShape = [BATCH, cin, hw, hw];
    const wShape = [cout, cin, k, k];
    const g = conv2dGeometry(xShape, wShape, opts);
    const flop = convFlop(g);
    const setup: Setup = () => {
      // The tuner's and the profiler's operands (src/kernels/workloads.ts), random.
      const x = op === 'backward-data' ? null : convOperand(rt, g, 'x', 'random').t;
      const w = op === 'backward-weight' ? null : convOperand(rt, g, 'w', 'random').t;
      const gy = op === 'forward' ? null : convOperand(rt, g, 'gy', 'random').t;
      const run =
        op === 'forward'
          ? () => conv2dForward(x!, w!, null, opts)
          : op === 'backward-data'
            ? () => conv2dBackwardInput(gy!, w!, xShape, opts)
            : () => conv2dBackwardWeight(gy!, x!, wShape, opts);
      return { run, release: () => [x, w, gy].forEach((t) => t?.release()) };
    };
    out.push(gpuCase(`conv2d ${op}`, name, flop, `x[${xShape}] w[${wShape}] s${s} p${p}`, setup, flop > 5e9));
  }
  return out;
}

function matmulCases(): ReturnType<typeof b.add>[] {
  const out: ReturnType<typeof b.add>[] = [];
  for (const n of [1024, 2048]) {
    const name = `matmul ${n}x${n}x${n}`;
    if (!name.includes(FILTER)) continue;
    const shape = { M: n, N: n, K: n, transA: false, transB: false, batch: 1 };
    const setup: Setup = () => {
      const [a, c] = (['a', 'b'] as const).map((which) => {
        const flat = gemmOperand(rt, shape, which, 'random').t;
        const t = flat.view([n, n]);
        flat.release();
        return t;
      }) as [Tensor<'f32'>, Tensor<'f32'>];
      return { run: () => matmul(a, c), release: () => [a, c].forEach((t) => t.release()) };
    };
    out.push(gpuCase('matmul', name, gemmFlop(shape), `[${n}, ${n}] @ [${n}, ${n}]`, setup, n >= 2048));
  }
  return out;
}

mkdirSync(RESULTS, { recursive: true });
const summaries: Summary[] = [];
const suites: [string, string, ReturnType<typeof b.add>[]][] = [
  ['matmul', 'matmul', matmulCases()],
  ['conv2d forward', 'conv2d-forward', convCases('forward')],
  ['conv2d backward-data', 'conv2d-backward-data', convCases('backward-data')],
  ['conv2d backward-weight', 'conv2d-backward-weight', convCases('backward-weight')],
];
console.log(`adapter: ${describeAdapter(rt.ctx)}; LP_NUM_THREADS=${process.env.LP_NUM_THREADS ?? '(unset)'}; batch ${BATCH}`);
for (const [title, file, cases] of suites) {
  if (!cases.length) continue;
  summaries.push(
    await b.suite(
      title,
      ...cases,
      b.cycle((result) => {
        cleanups.get(result.name)?.();
        const info = infos.get(result.name)!;
        return `${result.name}: ${(info.flop / result.details.median / 1e9).toFixed(2)} GFLOP/s (median ${(result.details.median * 1e3).toFixed(1)} ms, ${result.samples} samples)`;
      }),
      b.complete(),
      b.save({ file: `kernels-${file}`, folder: RESULTS, format: 'json', details: true }),
    ),
  );
}

const rows = summaries.flatMap((s) =>
  s.results.map((r) => {
    const info = infos.get(r.name)!;
    return {
      suite: info.suite,
      name: r.name,
      shape: info.shape,
      gflop: info.flop / 1e9,
      medianMs: r.details.median * 1e3,
      gflops: info.flop / r.details.median / 1e9,
      samples: r.samples,
    };
  }),
);
const meta = { date: new Date().toISOString(), adapter: describeAdapter(rt.ctx), lpNumThreads: process.env.LP_NUM_THREADS ?? null, batch: BATCH };
writeFileSync(`${RESULTS}/kernels.json`, JSON.stringify({ ...meta, suites: summaries }, null, 2));
writeFileSync(`${RESULTS}/kernels-gflops.json`, JSON.stringify({ ...meta, cases: rows }, null, 2));
console.log('\n| case | GFLOP/s | median ms |\n| --- | --- | --- |');
for (const r of rows) console.log(`| ${r.name} | ${r.gflops.toFixed(2)} | ${r.medianMs.toFixed(1)} |`);
destroyNodeRuntime(rt);

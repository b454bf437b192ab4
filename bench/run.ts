/**
 * `npm run bench`: the engine and its peers in one run, interleaved (engine case, peer case, engine case, ...) so
 * machine noise hits both alike; medians. Writes bench/results/latest.json (after each part, so a run cut short
 * keeps what it measured).
 *
 *   npm run bench -- [--only fma,kernels,e2e,recipe,data] [--filter TEXT] [--rounds 3] [--batch 32] [--recipe]
 *                    [--sizes 1024,2048,4096] [--gpu-cases]
 *
 * A partial run (--filter, or --only without all of fma, kernels and e2e) writes bench/results/partial.json instead.
 * Parts (all but recipe by default; BENCH_ONLY=... works like --only):
 * - fma:     register-only multiply-add loop, workgroups of 8/16/32/64: the WGSL ALU ceiling of the adapter.
 * - kernels: conv2d at ResNet-18's shapes (forward, data gradient, weight gradient) and matmul 1024^3 / 2048^3
 *            (and 4096^3 on a GPU adapter), next to tfjs-backend-webgpu (forward convs, matmul 1024^3) on the same
 *            Dawn adapter. Each case's output is checked at sampled entries against float64 sums on the CPU
 *            (bench/lib/check.ts) before it is timed; a failed check leaves the case without a figure.
 * - e2e:     ResNet-18 (2 classes) train step at 64/112/224 px and inference at 224 px, batch 32 (on a GPU adapter
 *            also the recipe's step, 224 px batch 128), next to PyTorch doing the identical step
 *            (bench/peers/torch_step.py); each case in fresh processes, whose peak RSS is recorded. Checked: the
 *            loss (train) or the logits (inference) are finite at the warm-up and the last timed run.
 * - recipe:  the chapter's recipe step, 224 px batch 128 (SGD without momentum), engine and PyTorch: seconds per
 *            step and peak RSS. Slow on CPU drivers (about 25 s per engine step): only with --recipe or --only
 *            recipe; on a GPU adapter the e2e part already runs it.
 * - data:    the data pipeline benchmark (bench/data.bench.ts), when ../shared/data/hotdog-mini exists.
 * --filter keeps the kernel and e2e cases whose name contains TEXT (e.g. --only kernels --filter layer1).
 * --sizes sets the matmul sizes; --gpu-cases takes a GPU adapter's cases (matmul 4096^3, the batch-128 step in e2e)
 * on any adapter. Which adapter counts as a GPU: the real one (HOTDOG_KERNELS=gpu changes the kernels, not this).
 * Env: BENCH_PYTHON (the PyTorch peer's interpreter, default /usr/bin/python3), BENCH_TORCH_DEVICE (cpu or cuda,
 * default cpu), BENCH_RESULTS_DIR (default bench/results), BENCH_CHECK_BOUND (the kernel check's bound, default 1e-3).
 */
import { spawnSync } from 'node:child_process';
import { cpus, totalmem } from 'node:os';
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DEFAULT_LP_NUM_THREADS } from '../src/node/webgpu-node.js';
import type { CaseSpec, InfoReply, PrepareReply, RssReply, RunReply } from './lib/protocol.js';
import { CONV_DIRECTIONS, convFlop, RESNET18_CONVS } from './lib/shapes.js';
import { WorkerClient } from './lib/workers.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
// Bundled (scripts/stage-device.sh), this file is .dev/bench.mjs and its workers .dev/workers/*.mjs, run by node.
const BUNDLED = !import.meta.url.endsWith('.ts');
const RESULTS = process.env.BENCH_RESULTS_DIR || fileURLToPath(new URL('./results', import.meta.url));
const PYTHON = process.env.BENCH_PYTHON || '/usr/bin/python3';
const PARTS = ['fma', 'kernels', 'e2e', 'recipe', 'data'] as const;
type Part = (typeof PARTS)[number];
const USAGE = [
  'usage: npm run bench -- [--only fma,kernels,e2e,recipe,data] [--filter TEXT] [--rounds N] [--batch N] [--recipe]',
  '                        [--sizes 1024,2048,4096] [--gpu-cases]',
  '  --sizes N,...  matmul sizes (default 1024,2048; plus 4096 on a GPU adapter)',
  '  --gpu-cases    a GPU adapter\'s cases on any adapter: matmul 4096^3 and the 224 px batch-128 step in e2e',
].join('\n');

function fail(message: string): never {
  console.error(`bench: ${message}\n${USAGE}`);
  process.exit(2);
}

let args;
try {
  args = parseArgs({
    options: {
      only: { type: 'string' },
      filter: { type: 'string', default: process.env.BENCH_FILTER ?? '' },
      rounds: { type: 'string', default: '3' },
      batch: { type: 'string', default: process.env.BENCH_BATCH ?? '32' },
      recipe: { type: 'boolean', default: false },
      sizes: { type: 'string' },
      'gpu-cases': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  }).values;
} catch (e) {
  fail((e as Error).message);
}
if (args.help) {
  console.log(USAGE);
  process.exit(0);
}
const rounds = Number(args.rounds);
if (!Number.isInteger(rounds) || rounds < 1) fail(`--rounds must be a positive integer, got "${args.rounds}"`);
const batch = Number(args.batch);
if (!Number.isInteger(batch) || batch < 1) fail(`--batch must be a positive integer, got "${args.batch}"`);
const onlyText = args.only ?? process.env.BENCH_ONLY;
const parts = new Set<Part>(
  onlyText
    ? onlyText.split(',').map((p) => {
        const t = p.trim() as Part;
        if (!PARTS.includes(t)) fail(`--only: unknown part "${p}" (parts: ${PARTS.join(', ')})`);
        return t;
      })
    : PARTS.filter((p) => p !== 'recipe'),
);
if (args.recipe) parts.add('recipe');
const filter = args.filter!;
const sizes = args.sizes?.split(',').map((t) => {
  const n = Number(t.trim());
  if (!Number.isInteger(n) || n < 1) fail(`--sizes: "${t}" is not a positive integer`);
  return n;
});

// Every worker inherits one environment, so engine and peers see the same driver settings.
process.env.LP_NUM_THREADS ??= DEFAULT_LP_NUM_THREADS;
const env = { ...process.env };
const ENV_RECORDED = /^(LP_|GALLIVM_|MESA_|VK_|HOTDOG_|OMP_|MKL_|TORCH_|BENCH_)/;

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const round = (v: number | null, digits = 3): number | null => (v === null || !Number.isFinite(v) ? null : Number(v.toPrecision(digits + 1)));
const skipped: string[] = [];
function skip(line: string): void {
  skipped.push(line);
  console.log(`SKIPPED ${line}`);
}

function torchAvailable(): boolean {
  const r = spawnSync(PYTHON, ['-c', 'import torch, torchvision'], { stdio: 'ignore' });
  return r.status === 0;
}

const workerFile = (name: string): string => fileURLToPath(new URL(`./workers/${name}.${BUNDLED ? 'mjs' : 'ts'}`, import.meta.url));
const engineWorker = (): WorkerClient => WorkerClient.node('engine', workerFile('engine'), env);
const tfjsWorker = (): WorkerClient => WorkerClient.node('tfjs', workerFile('tfjs'), env, { holdStderr: true });
const torchWorker = (): WorkerClient => WorkerClient.python('torch', PYTHON, fileURLToPath(new URL('./peers/torch_step.py', import.meta.url)), env);

interface Timed {
  engine: number[];
  peer: number[];
}

/**
 * Prepares the case on both, then alternates timed runs: engine, peer, engine, peer, ... A case whose engine
 * output fails its check is not timed.
 */
async function interleaved(
  engine: WorkerClient,
  peer: WorkerClient | null,
  spec: CaseSpec,
  run: { minSeconds: number; minRuns: number; maxRuns: number },
  peerRun = run,
): Promise<Timed & { prepare: PrepareReply; peerError: string | null; lastValue: number | null }> {
  const prepare = await engine.call<PrepareReply>({ op: 'prepare', spec });
  const out: Timed = { engine: [], peer: [] };
  if (prepare.check && !prepare.check.ok) {
    await engine.call({ op: 'release' });
    return { ...out, prepare, peerError: null, lastValue: null };
  }
  let peerOk = peer !== null;
  let peerError: string | null = null;
  if (peer) {
    try {
      await peer.call<PrepareReply>({ op: 'prepare', spec });
    } catch (e) {
      peerOk = false;
      peerError = (e as Error).message.split('\n')[0]!;
    }
  }
  let lastValue: number | null = null;
  for (let r = 0; r < rounds; r++) {
    const reply = await engine.call<RunReply>({ op: 'run', ...run });
    out.engine.push(...reply.seconds);
    lastValue = reply.value ?? null;
    if (!peerOk) continue;
    try {
      out.peer.push(...(await peer!.call<RunReply>({ op: 'run', ...peerRun })).seconds);
    } catch (e) {
      // A failing peer (out of memory, a crash) costs its figure, not the engine's.
      peerOk = false;
      peerError = (e as Error).message.split('\n')[0]!;
      out.peer.length = 0;
    }
  }
  await engine.call({ op: 'release' });
  if (peerOk) await peer!.call({ op: 'release' });
  if (peerError) console.log(`${peer!.name} peer failed on ${JSON.stringify(spec)}: ${peerError}`);
  return { ...out, prepare, peerError, lastValue };
}

const firstLine = (e: unknown): string => (e instanceof Error ? e.message : String(e)).split('\n')[0]!;

const result: Record<string, unknown> = {
  date: new Date().toISOString(),
  machine: { cpus: cpus().length, cpu_model: cpus()[0]?.model ?? null, memory_gib: round(totalmem() / 2 ** 30) },
  env: Object.fromEntries(Object.entries(env).filter(([k]) => ENV_RECORDED.test(k))),
  options: { parts: [...parts], rounds, batch, filter, sizes: sizes ?? null, gpu_cases: args['gpu-cases'], bundled: BUNDLED },
};
// A partial run (--filter, or --only leaving out a main part) leaves the last full run's latest.json alone; the data
// part is left out where its images are absent anyway.
const partial = Boolean(filter) || !(['fma', 'kernels', 'e2e'] as const).every((p) => parts.has(p));
const resultsName = partial ? 'partial.json' : 'latest.json';

/** Writes the results so far (atomically): after each part, so a run cut short keeps what it measured. */
function writeResults(): void {
  result.skipped = skipped;
  mkdirSync(RESULTS, { recursive: true });
  const file = join(RESULTS, resultsName);
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(result, null, 2)}\n`);
  renameSync(tmp, file);
}

// ---- the adapter: one engine worker, kept for fma and kernels ---------------------------------------------

let engine: WorkerClient | null = null;
let gpuCases = args['gpu-cases'];
if (parts.has('fma') || parts.has('kernels') || parts.has('e2e') || parts.has('recipe')) {
  engine = engineWorker();
  const info = await engine.call<InfoReply>({ op: 'info' });
  result.adapter = info.adapter;
  result.adapter_info = info.adapterInfo;
  result.kernel_mode = info.adapterInfo?.kernels ?? null;
  if (info.adapterInfo && !info.adapterInfo.cpuDriver) gpuCases = true;
  result.gpu_cases = gpuCases;
  const a = info.adapterInfo;
  console.log(`adapter: ${info.adapter}; env: ${JSON.stringify(result.env)}; rounds ${rounds}`);
  if (a) {
    console.log(`  ${a.cpuDriver ? 'CPU driver' : 'GPU'}, kernel mode ${a.kernels}, subgroups ${a.subgroupMinSize}-${a.subgroupMaxSize}; features: ${a.features.join(' ')}`);
    console.log(`  limits: ${Object.entries(a.limits).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  }
  if (!parts.has('fma') && !parts.has('kernels')) {
    await engine.close();
    engine = null;
  }
}

// ---- fma and kernels: one engine worker, one tfjs worker ---------------------------------------------------

let fmaCeiling: number | null = null;
if (engine && parts.has('fma')) {
  const byWg: Record<string, number> = {};
  const samples = new Map<number, number[]>();
  for (let r = 0; r < rounds; r++) {
    for (const wg of [8, 16, 32, 64]) {
      const prep = await engine.call<PrepareReply>({ op: 'prepare', spec: { type: 'fma', wg } });
      const { seconds } = await engine.call<RunReply>({ op: 'run', minSeconds: 0, minRuns: 2, maxRuns: 2 });
      samples.set(wg, [...(samples.get(wg) ?? []), ...seconds.map((s) => prep.flop! / s / 1e9)]);
    }
  }
  await engine.call({ op: 'release' });
  for (const [wg, g] of samples) byWg[wg] = round(median(g))!;
  const best = Object.entries(byWg).sort((a, b) => b[1] - a[1])[0]!;
  fmaCeiling = best[1];
  result.fma = { kernel: 'fmaLoop_8x4 (8 vec4 chains, 4x unrolled)', gflops_by_workgroup: byWg, best_workgroup: Number(best[0]) };
  result.fma_ceiling_gflops = fmaCeiling;
  console.log(`fma ceiling: ${fmaCeiling} GFLOP/s (workgroup ${best[0]}); by workgroup ${JSON.stringify(byWg)}`);
  writeResults();
}

if (engine && parts.has('kernels')) {
  let tfjs: WorkerClient | null = tfjsWorker();
  try {
    const tinfo = await tfjs.call<InfoReply>({ op: 'info' });
    result.tfjs = { versions: tinfo.versions, adapter: tinfo.adapter };
  } catch (e) {
    skip(`tfjs-backend-webgpu peer: ${firstLine(e)}`);
    await tfjs.close();
    tfjs = null;
  }
  const rows: Record<string, unknown>[] = [];
  result.kernels = rows;
  const kernelRun = { minSeconds: 0.5, minRuns: 1, maxRuns: 8 };
  const cases: { name: string; direction: string; shape: string | null; flop: number; spec: CaseSpec; peer: boolean }[] = [];
  for (const n of sizes ?? (gpuCases ? [1024, 2048, 4096] : [1024, 2048])) {
    cases.push({ name: `matmul ${n}x${n}x${n}`, direction: 'matmul', shape: null, flop: 2 * n ** 3, spec: { type: 'matmul', n }, peer: n === 1024 });
  }
  for (const direction of CONV_DIRECTIONS) {
    for (const shape of RESNET18_CONVS) {
      const spec: CaseSpec = { type: 'conv', shape, direction, batch };
      cases.push({ name: `conv2d ${direction} ${shape.label} N${batch}`, direction, shape: shape.label, flop: convFlop(shape, batch), spec, peer: direction === 'forward' });
    }
  }
  for (const c of cases.filter((k) => k.name.includes(filter))) {
    try {
      const t = await interleaved(engine, c.peer ? tfjs : null, c.spec, kernelRun);
      rows.push(kernelRow(c.name, c.direction, c.shape, c.flop, t));
    } catch (e) {
      // One broken case (a kernel that fails to build, a lost device) costs its row, not the rest of the run.
      rows.push({ name: c.name, direction: c.direction, shape: c.shape, gflops: null, check: 'error', error: firstLine(e) });
      console.log(`${c.name}: ERROR ${firstLine(e)}`);
      await engine.close();
      engine = engineWorker();
    }
    writeResults();
  }
  await tfjs?.close();
}
await engine?.close();

function kernelRow(
  name: string,
  direction: string,
  shape: string | null,
  flop: number,
  t: Timed & { peerError: string | null; prepare: PrepareReply },
): Record<string, unknown> {
  const check = t.prepare.check;
  const checked = {
    check: check ? (check.ok ? 'passed' : 'failed') : 'none',
    check_samples: check?.samples ?? 0,
    check_max_error: check ? round(check.maxError, 2) : null,
    check_bound: check?.bound ?? null,
    ...(check?.error ? { check_error: check.error } : {}),
  };
  const lowering = t.prepare.lowering ? { lowering: t.prepare.lowering } : {};
  if (check && !check.ok) {
    console.log(`${name}: CHECK FAILED, not timed: ${check.error}`);
    return { name, direction, shape, gflop: round(flop / 1e9), ...lowering, median_ms: null, gflops: null, runs: 0, ...checked };
  }
  const gflops = flop / median(t.engine) / 1e9;
  const tfjsGflops = t.peer.length ? flop / median(t.peer) / 1e9 : null;
  const row = {
    name,
    direction,
    shape,
    gflop: round(flop / 1e9),
    ...lowering,
    median_ms: round(median(t.engine) * 1e3),
    gflops: round(gflops),
    runs: t.engine.length,
    calls_per_run: t.prepare.callsPerRun ?? 1,
    ...checked,
    tfjs_gflops: round(tfjsGflops),
    ratio_vs_tfjs: tfjsGflops ? round(gflops / tfjsGflops) : null,
    ...(t.peerError ? { tfjs_error: t.peerError } : {}),
  };
  const checkText = check ? `, check passed (max error ${check.maxError.toExponential(1)} <= ${check.bound}, ${check.samples} entries)` : '';
  console.log(
    `${name}: ${row.gflops} GFLOP/s${t.prepare.lowering ? ` (${t.prepare.lowering})` : ''}${checkText}` +
      (tfjsGflops ? `, tfjs ${row.tfjs_gflops} (x${row.ratio_vs_tfjs})` : ''),
  );
  return row;
}

// ---- end to end and the recipe: fresh processes per case ---------------------------------------------------

const haveTorch = parts.has('e2e') || parts.has('recipe') ? torchAvailable() : false;
if ((parts.has('e2e') || parts.has('recipe')) && !haveTorch) {
  skip(`PyTorch peer: ${PYTHON} cannot import torch and torchvision (install Debian's python3-torch and python3-torchvision: bash scripts/setup-peers.sh; or set BENCH_PYTHON)`);
}

interface E2eCase {
  name: string;
  spec: CaseSpec & { type: 'train' | 'inference' };
}

const RECIPE_CASE: E2eCase = {
  name: 'train step 224px N128 (recipe: SGD wd 1e-3 without momentum)',
  spec: { type: 'train', size: 224, batch: 128, momentum: 0, weightDecay: 1e-3 },
};

async function e2eCase(c: E2eCase, run: { minSeconds: number; minRuns: number; maxRuns: number }): Promise<Record<string, unknown>> {
  const engine = engineWorker();
  const torch = haveTorch ? torchWorker() : null;
  try {
    await engine.call<InfoReply>({ op: 'info' });
    if (torch && !result.torch) {
      const t = await torch.call<InfoReply>({ op: 'info' });
      result.torch = { versions: t.versions, threads: t.threads, device: t.adapter };
    }
    const t = await interleaved(engine, torch, c.spec, run, { ...run, maxRuns: 50 });
    const engineRss = (await engine.call<RssReply>({ op: 'rss' })).maxRssBytes;
    const torchRss = t.peer.length ? (await torch!.call<RssReply>({ op: 'rss' })).maxRssBytes : null;
    const s = median(t.engine);
    const ts = t.peer.length ? median(t.peer) : null;
    const n = c.spec.batch;
    const conv = t.prepare.convGflop;
    const convTotal = conv ? Object.values(conv).reduce((a, b) => a + b, 0) : null;
    const effective = convTotal !== null ? convTotal / s : null;
    // The check: the loss (train) or the largest |logit| (inference) is finite at the warm-up and the last run.
    const first = t.prepare.value ?? null;
    const last = t.lastValue;
    const checkOk = first !== null && last !== null && Number.isFinite(first) && Number.isFinite(last);
    const what = c.spec.type === 'train' ? 'loss per example' : 'max |logit|';
    const row = {
      name: c.name,
      kind: c.spec.type,
      size: c.spec.size,
      batch: n,
      seconds_per_step: checkOk ? round(s) : null,
      examples_per_sec: checkOk ? round(n / s) : null,
      steps: t.engine.length,
      check: checkOk ? 'passed' : 'failed',
      check_what: `${what} finite at the warm-up and the last timed run`,
      check_first: round(first, 5),
      check_last: round(last, 5),
      torch_seconds_per_step: round(ts),
      torch_examples_per_sec: ts ? round(n / ts) : null,
      torch_steps: t.peer.length,
      ratio_vs_torch: ts && checkOk ? round(ts / s) : null,
      ...(conv
        ? {
            conv_gflop_per_step: Object.fromEntries(Object.entries(conv).map(([k, v]) => [k, round(v, 4)])),
            effective_gflops: checkOk ? round(effective) : null,
            ratio_to_fma_ceiling: checkOk && fmaCeiling && effective ? round(effective / fmaCeiling) : null,
          }
        : {}),
      peak_rss_bytes: engineRss,
      torch_peak_rss_bytes: torchRss,
      rss_ratio_vs_torch: torchRss ? round(engineRss / torchRss) : null,
      ...(t.peerError ? { torch_error: t.peerError } : {}),
    };
    console.log(
      `${c.name}: ${row.examples_per_sec} ex/s (${round(s)} s/step), ${what} ${row.check_first} -> ${row.check_last} (check ${row.check})` +
        (ts ? `, PyTorch ${row.torch_examples_per_sec} ex/s, ratio ${row.ratio_vs_torch}` : '') +
        (effective ? `, conv ${round(effective)} GFLOP/s effective` : '') +
        `, peak RSS ${(engineRss / 2 ** 30).toFixed(2)} GiB${torchRss ? ` (PyTorch ${(torchRss / 2 ** 30).toFixed(2)})` : ''}`,
    );
    return row;
  } catch (e) {
    console.log(`${c.name}: ERROR ${firstLine(e)}`);
    return { name: c.name, kind: c.spec.type, size: c.spec.size, batch: c.spec.batch, examples_per_sec: null, check: 'error', error: firstLine(e) };
  } finally {
    await engine.close();
    await torch?.close();
  }
}

let recipeDone = false;
if (parts.has('e2e')) {
  // The recipe's step first: on a GPU machine it is the figure a run cut short should still have.
  const cases: E2eCase[] = [
    ...(gpuCases ? [RECIPE_CASE] : []),
    ...[64, 112, 224].map((size) => ({
      name: `train step ${size}px N${batch}`,
      spec: { type: 'train' as const, size, batch, momentum: 0.9, weightDecay: 1e-3 },
    })),
    { name: `inference 224px N${batch}`, spec: { type: 'inference' as const, size: 224, batch } },
  ].filter((c) => c.name.includes(filter));
  const rows: Record<string, unknown>[] = [];
  result.e2e = rows;
  for (const c of cases) {
    const row = await e2eCase(c, { minSeconds: 3, minRuns: 1, maxRuns: 10 });
    rows.push(row);
    if (c === RECIPE_CASE) {
      result.recipe = row;
      recipeDone = true;
    }
    writeResults();
  }
  const main = rows.find((r) => r.kind === 'train' && r.size === 224 && r.name !== RECIPE_CASE.name);
  if (main) {
    result.train_step_224 = {
      effective_gflops: main.effective_gflops ?? null,
      ratio_to_fma_ceiling: main.ratio_to_fma_ceiling ?? null,
      conv_gflop_per_step: main.conv_gflop_per_step ?? null,
    };
    result.peak_rss_224_b32 = { engine_bytes: main.peak_rss_bytes, torch_bytes: main.torch_peak_rss_bytes, ratio: main.rss_ratio_vs_torch };
  }
}

if (parts.has('recipe') && !recipeDone) {
  result.recipe = await e2eCase(RECIPE_CASE, { minSeconds: 0, minRuns: 1, maxRuns: 1 });
}

// The figures the GPU targets are stated in (README, "Benchmarks on a GPU machine").
{
  const kernels = (result.kernels as Record<string, unknown>[] | undefined) ?? [];
  const mm4096 = kernels.find((r) => r.name === 'matmul 4096x4096x4096');
  const recipe = result.recipe as Record<string, unknown> | undefined;
  result.headline = {
    matmul_4096_gflops: mm4096?.gflops ?? null,
    train_224_b128_sgd_examples_per_sec: recipe?.examples_per_sec ?? null,
    checks_failed: [...kernels, ...((result.e2e as Record<string, unknown>[] | undefined) ?? []), ...(recipe && !recipeDone ? [recipe] : [])]
      .filter((r) => r.check === 'failed' || r.check === 'error')
      .map((r) => r.name),
  };
}

// ---- data pipeline -----------------------------------------------------------------------------------------

if (parts.has('data')) {
  if (BUNDLED) {
    skip('data pipeline bench: not in the bundle (npm run bench:data in a checkout)');
  } else if (!existsSync(fileURLToPath(new URL('../../shared/data/hotdog-mini', import.meta.url)))) {
    skip('data pipeline bench: ../shared/data/hotdog-mini (relative to the repository root) is absent');
  } else {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'bench/data.bench.ts'], { cwd: ROOT, env, stdio: 'inherit' });
    result.data = { status: r.status, results: 'bench/results/data.json' };
  }
}

// ---- write -------------------------------------------------------------------------------------------------

writeResults();
console.log(`\nwrote ${join(RESULTS, resultsName)}${partial ? ' (a partial run; latest.json keeps the last full run)' : ''}`);
printSummary();

function printSummary(): void {
  const e2e = (result.e2e as Record<string, unknown>[] | undefined) ?? [];
  if (e2e.length) {
    console.log('\n| case | engine ex/s | check | PyTorch ex/s | ratio | effective conv GFLOP/s | peak RSS GiB (engine / PyTorch) |\n| --- | --- | --- | --- | --- | --- | --- |');
    for (const r of e2e) {
      const gib = (b: unknown): string => (typeof b === 'number' ? (b / 2 ** 30).toFixed(2) : '-');
      console.log(`| ${r.name} | ${r.examples_per_sec ?? '-'} | ${r.check} | ${r.torch_examples_per_sec ?? '-'} | ${r.ratio_vs_torch ?? '-'} | ${r.effective_gflops ?? '-'} | ${gib(r.peak_rss_bytes)} / ${gib(r.torch_peak_rss_bytes)} |`);
    }
  }
  const kernels = (result.kernels as Record<string, unknown>[] | undefined) ?? [];
  if (kernels.length) {
    console.log('\n| kernel case | GFLOP/s | check | tfjs GFLOP/s | ratio vs tfjs |\n| --- | --- | --- | --- | --- |');
    for (const r of kernels) console.log(`| ${r.name} | ${r.gflops ?? '-'} | ${r.check} | ${r.tfjs_gflops ?? '-'} | ${r.ratio_vs_tfjs ?? '-'} |`);
  }
  if (fmaCeiling !== null) console.log(`\nfma_ceiling_gflops: ${fmaCeiling}`);
  console.log(`headline: ${JSON.stringify(result.headline)}`);
  if (skipped.length) console.log(`\nskipped: ${skipped.join('; ')}`);
}

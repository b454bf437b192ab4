// npm run finetune and npm run predict on a generated image folder (32 px, batch 4 over 7 images, so every epoch
// ends on a smaller batch), as child processes: the --json output and run folder, exit status 2 for bad input
// found before training; and exact resume: a run killed (SIGKILL) in its second epoch, resumed, ends with the same
// metrics, kernel choices and bit-identical weights as the same run left alone. Then the guards, each resuming its
// own copy of the finished run in-process (no test depends on another's leftovers): a checkpoint write that fails
// half way (the disk filling up, injected into node:fs/promises under the real atomic-write code) leaves the previous
// checkpoint readable, and a NaN/inf loss stops the run naming epoch, batch and lr with the last good checkpoint
// intact and no model.safetensors written.
import type { FileHandle } from 'node:fs/promises';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Classifier } from '../../src/classifier/classifier.js';
import { parseFinetuneArgs } from '../../src/cli/finetune-options.js';
import { decodeImage } from '../../src/data/decode.js';
import { runFinetune } from '../../src/cli/finetune-run.js';
import { readSafetensorsFile } from '../../src/node/weights-file.js';
import { parseCheckpoint } from '../../src/train/checkpoint.js';
import { NonFiniteLossError } from '../../src/train/fit.js';
import type { EpochRecord, RunRecord } from '../../src/train/run-record.js';
import { textureGemmSupported } from '../../src/kernels/matmul/texture-gemm.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import { runCli, startCli, type CliResult } from '../helpers/cli-process.js';
import { testRuntime } from '../helpers/gpu.js';
import { writeTinyImageFolder } from '../helpers/tiny-image-folder.js';

const disk = vi.hoisted(() => ({ full: false }));

vi.mock('node:fs/promises', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs/promises')>();
  const open: typeof real.open = async (...args: Parameters<typeof real.open>) => {
    const fh = await real.open(...args);
    if (!disk.full || args[1] !== 'wx' || !String(args[0]).includes('.checkpoint.safetensors.')) return fh;
    return new Proxy(fh, {
      get(target, prop, receiver): unknown {
        if (prop === 'write') {
          return async (buf: Uint8Array, off: number, len: number) => {
            await target.write(buf, off, Math.max(1, len >> 1)); // part of the file reaches the disk, then it is full
            throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
          };
        }
        const v: unknown = Reflect.get(target, prop, receiver);
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    }) as FileHandle;
  };
  return { ...real, default: { ...real, open }, open };
});

/** The CLI's run, in this process (sharing the test runtime): for resuming and for the injected disk failure. */
async function runInProcess(argv: string[]): Promise<RunRecord> {
  const command = parseFinetuneArgs(argv);
  if (command.kind === 'help') throw new Error('help');
  return (await runFinetune(command, { output: { write: () => undefined }, argv, runtime: await testRuntime() })).record;
}

async function checkpointEpoch(dir: string): Promise<number> {
  const { tensors, metadata } = await readSafetensorsFile(join(dir, 'checkpoint.safetensors'));
  return parseCheckpoint(tensors, metadata, dir).state.epoch;
}

let tmp: string;
let data: string;
let runtime: Runtime;
/** The test runtime: the in-process runs' (runInProcess). */
const rt = (): Runtime => runtime;
const readRecord = (dir: string): RunRecord => JSON.parse(readFileSync(join(dir, 'run.json'), 'utf8')) as RunRecord;

beforeAll(async () => {
  runtime = await testRuntime();
  tmp = mkdtempSync(join(tmpdir(), 'finetune-cli-'));
  // The child runs keep their measured kernel choices here, not in the user's cache: the uninterrupted run measures
  // them, the run that is killed and resumed finds and uses the same ones (src/runtime/autotune.ts).
  process.env.HOTDOG_CACHE_DIR = join(tmp, 'cache');
  data = await writeTinyImageFolder(join(tmp, 'data'), { trainPerClass: [4, 3], testPerClass: 2 });
  await writeTinyImageFolder(join(tmp, 'other'), { classes: ['cat', 'hotdog'], trainPerClass: 1, testPerClass: 1 });
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

// 3 epochs, momentum (so the optimizer state matters on resume), augmentation and shuffling on.
const recipe = (): string[] => ['--data', data, '--weights', 'none', '--image-size', '32', '--batch-size', '4', '--epochs', '3', '--momentum', '0.9', '--seed', '5'];

describe('npm run finetune: bad input stops before training with exit status 2', () => {
  const cases: [string, () => string[], RegExp][] = [
    ['an unknown option', () => ['--bogus'], /finetune: Unknown option '--bogus'/],
    ['a bad value', () => ['--data', data, '--epochs', '0'], /finetune: --epochs: '0' is not a positive integer/],
    ['a replaced option', () => ['--data', data, '--freeze'], /finetune: --freeze is now --mode frozen/],
    ['a missing folder', () => ['--data', join(tmp, 'nope'), '--weights', 'none'], /finetune: --data: the folder .*nope[/\\]train does not exist/],
    [
      'train and test class lists that differ',
      () => ['--train', join(data, 'train'), '--test', join(tmp, 'other', 'test'), '--weights', 'none'],
      /finetune: the train classes \(hotdog, not-hotdog\) in .* and the test classes \(cat, hotdog\) in .* differ/,
    ],
    ['an --out that cannot be written', () => [...recipe(), '--out', join(tmp, 'a-file', 'run')], /finetune: --out .*a-file[/\\]run: cannot write there/],
  ];
  // These never reach the GPU, so they run side by side.
  let results: CliResult[];
  beforeAll(async () => {
    writeFileSync(join(tmp, 'a-file'), 'not a folder');
    // Each gets its own --out (unless it sets one): a run stopped before it started leaves no folder behind.
    results = await Promise.all(cases.map(([, args], i) => runCli('finetune', [...(args().includes('--out') ? [] : ['--out', join(tmp, `bad-${i}`)]), ...args()])));
  });
  cases.forEach(([what, , message], i) => {
    it(what, () => {
      const r = results[i]!;
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stdout).not.toMatch(/epoch|device:/);
      expect(existsSync(join(tmp, `bad-${i}`))).toBe(false);
    });
  });
});

describe('npm run finetune: a run, its record, and exact resume', () => {
  let whole: string;
  let wholeOut: string;
  /** A copy of the finished run (3 epochs) in its own folder, for a test that resumes or changes it. */
  const copyOfWhole = (name: string): string => {
    const dir = join(tmp, name);
    expect(existsSync(dir), `${dir} is used by one test only`).toBe(false);
    cpSync(whole, dir, { recursive: true });
    return dir;
  };

  beforeAll(async () => {
    whole = join(tmp, 'whole');
    // --expose-gc: the run then measures memory after a full collection.
    const r = await runCli('finetune', [...recipe(), '--json', '--out', whole], ['--expose-gc']);
    expect(r.code, r.stderr).toBe(0);
    wholeOut = r.stdout;
    // 600 s: this run tunes its kernels, and on a fresh machine (no Mesa shader cache) each variant it measures is a
    // first compile: with HOTDOG_KERNELS=gpu on lavapipe (the GPU GEMM's many variants) it took 69 s with a warm
    // cache and over 120 s with an empty one on a 2-core Zen 3.
  }, 600_000);

  it('prints one JSON object per epoch and one with the files, nothing else', () => {
    const lines = wholeOut.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toHaveLength(4);
    const record = readRecord(whole);
    expect(lines.slice(0, 3)).toEqual(record.epochs);
    expect(lines[3]).toEqual({
      files: {
        dir: whole,
        runJson: join(whole, 'run.json'),
        curves: join(whole, 'curves.svg'),
        checkpoint: join(whole, 'checkpoint.safetensors'),
        model: join(whole, 'model.safetensors'),
      },
    });
    for (const [i, m] of (lines.slice(0, 3) as unknown as EpochRecord[]).entries()) {
      expect(m.epoch).toBe(i + 1);
      expect(m.examples).toBe(7); // 4 + 3
      expect(m.loss).toBeGreaterThan(0);
      expect(Number.isFinite(m.loss)).toBe(true);
      expect([0, 1, 2, 3, 4, 5, 6, 7].map((k) => k / 7)).toContain(m.trainAcc);
      expect([0, 1, 2, 3, 4].map((k) => k / 4)).toContain(m.testAcc);
      expect(m.examplesPerSec).toBeCloseTo(m.examples / m.trainSeconds, 9);
      expect(m.testSeconds).toBeGreaterThan(0);
    }
  });

  it('keeps a run record with the options, data, device, versions, epochs and trace', () => {
    const r = readRecord(whole);
    expect(r).toMatchObject({
      format: 'hotdog-webgpu-run/1',
      status: 'finished',
      seed: 5,
      options: { mode: 'scratch', weights: 'none', imageSize: 32, batchSize: 4, epochs: 3, lr: 5e-4, headLrMult: 1, momentum: 0.9, weightDecay: 1e-3, seed: 5, maxBatches: null, out: whole },
      data: { classes: ['hotdog', 'not-hotdog'], trainImages: 7, testImages: 4, batchesPerEpoch: 2 },
      model: { mode: 'scratch', weights: 'random init (from scratch)', parameters: 11177538, trainableParameters: 11177538 },
      resumes: [],
    });
    expect(r.engine).toMatch(/^hotdog-webgpu \d+\.\d+\.\d+/);
    expect(r.device.name.length).toBeGreaterThan(0);
    expect(r.device.limits!.maxStorageBufferBindingSize).toBeGreaterThan(0);
    // HOTDOG_KERNELS=gpu (the CI step that runs the GPU kernel choices on lavapipe) reaches the CLI: its record
    // says so, it measured the GPU GEMM kernels for the linear layer, and chose no texture kernel anywhere.
    const gpuMode = process.env.HOTDOG_KERNELS === 'gpu';
    expect(r.device.name.includes('GPU kernel choices')).toBe(gpuMode);
    if (gpuMode) {
      const choices = r.kernelChoices ?? {};
      expect(Object.keys(choices).some((k) => k.startsWith('gemm '))).toBe(true);
      // The texture GEMM's lowerings by name; their GPU counterparts (winograd4Tiled, im2colTiled...) may be chosen.
      expect(Object.values(choices).filter((c) => /^(texture|winograd[24]|im2col)$/.test(c))).toEqual([]);
      expect(Object.keys(choices).some((k) => k.startsWith('conv2d.'))).toBe(true);
    }
    expect(Object.keys(r.versions)).toEqual(expect.arrayContaining(['node', 'webgpu', 'sharp', 'vega', 'vega-lite']));
    // Two batches an epoch: a trace point after each, at fractional epochs; the last equals the epoch's figures.
    expect(r.trace.map((t) => [t.epoch, t.batch, t.examples])).toEqual([1, 2, 3].flatMap((e) => [[e - 0.5, 1, 4], [e, 2, 7]]));
    for (const e of r.epochs) {
      const last = r.trace.find((t) => t.epoch === e.epoch)!;
      expect(last.loss).toBeCloseTo(e.loss, 12);
      expect(last.trainAcc).toBe(e.trainAcc);
    }
    expect(readFileSync(join(whole, 'curves.svg'), 'utf8')).toMatch(/^<svg[\s\S]*train loss[\s\S]*test acc[\s\S]*epoch[\s\S]*<\/svg>$/);
  });

  it('holds GPU pool bytes and live JS memory flat from epoch 2 on, and records the process RSS', () => {
    const mem = readRecord(whole).epochs.map((e) => e.memory);
    expect(mem[2]!.gpuPoolBytesHeld).toBe(mem[1]!.gpuPoolBytesHeld);
    expect(mem[2]!.gpuBuffers).toBe(mem[1]!.gpuBuffers);
    expect(mem.every((m) => m.afterGc && m.rssBytes > 0)).toBe(true);
    // The peak in use: above what is in use between epochs, at most what the pool ever made (held, or trimmed after
    // tuning, so only the lower bound is exact).
    expect(mem.every((m) => m.gpuPoolPeakBytesInUse! > m.gpuPoolBytesInUse! && m.gpuTexturePoolPeakBytesInUse! > 0)).toBe(true);
    // After a full collection the live JS heap + typed arrays grow by about 0.2-0.6 MB an epoch here, whatever the
    // number of batches; a leaked model or checkpoint copy would be 45 MB. RSS swings by tens of MB with the
    // allocator, so only the collected figure is held to a bound.
    expect(Math.abs(mem[2]!.jsHeapBytes! - mem[1]!.jsHeapBytes!)).toBeLessThan(2 ** 20);
  });

  it('writes model.safetensors with the class names and image size', async () => {
    const { tensors, metadata } = await readSafetensorsFile(join(whole, 'model.safetensors'));
    expect(metadata).toMatchObject({ classes: '["hotdog","not-hotdog"]', image_size: '32', mode: 'scratch' });
    expect(tensors.get('fc.weight')!.shape).toEqual([2, 512]);
  });

  it('resumes a run killed in its second epoch to the same metrics, kernel choices and bit-identical weights', async () => {
    const killed = join(tmp, 'killed');
    let sawEpoch2 = false;
    // Plain (non-TTY) progress: one line per batch here. The child blocks for good right after reporting epoch 2's
    // first batch (HOTDOG_TEST_BLOCK_AFTER_BATCH, src/cli/finetune-run.ts), so the kill cannot race epoch 2's
    // checkpoint however slowly this process reacts.
    const run = startCli(
      'finetune',
      [...recipe(), '--out', killed],
      (line, child) => {
        if (!sawEpoch2 && line.startsWith('epoch 2/3 batch 1/2:')) {
          sawEpoch2 = true;
          child.kill('SIGKILL');
        }
      },
      [],
      { HOTDOG_TEST_BLOCK_AFTER_BATCH: '2/1' },
    );
    const r = await run.result;
    expect(r.signal, r.stdout + r.stderr).toBe('SIGKILL');
    expect(sawEpoch2).toBe(true);
    const ckpt = await readSafetensorsFile(join(killed, 'checkpoint.safetensors'));
    expect(ckpt.metadata?.epoch).toBe('1'); // killed before epoch 2's checkpoint
    expect(readRecord(killed).status).toBe('running');

    // The run's kernel choices (measured by the uninterrupted run, found in the cache by the killed one). This
    // process is first made to prefer other variants for every one of those shapes, so a resume that did not
    // compute with the run's own choices would show in the record (and in the weights).
    const a = readRecord(whole);
    const choices = a.kernelChoices ?? {};
    expect(Object.keys(choices).length, 'the run recorded its kernel choices').toBeGreaterThan(0);
    expect(readRecord(killed).kernelChoices).toEqual(choices);
    const other = (v: string): string => (v !== 'implicit' ? 'implicit' : textureGemmSupported(rt()) ? 'im2col' : v);
    rt().tuner.pin(Object.fromEntries(Object.entries(choices).map(([k, v]) => [k, other(v)])));

    const resumed = await runInProcess(['--resume', killed]);
    expect(resumed.epochs.map((e) => e.epoch)).toEqual([1, 2, 3]);

    const b = readRecord(killed);
    expect(b.kernelChoices, 'the resumed run computed with the first run\'s kernel choices').toEqual(choices);
    const figures = (r: RunRecord) => r.epochs.map((e) => [e.epoch, e.loss, e.trainAcc, e.testAcc, e.examples]);
    expect(figures(b)).toEqual(figures(a));
    expect(b.trace).toEqual(a.trace);
    expect(b.status).toBe('finished');
    expect(b.resumes).toEqual([{ afterEpoch: 1, at: expect.any(String) as string, changed: {} }]);

    const wa = await readSafetensorsFile(join(whole, 'model.safetensors'));
    const wb = await readSafetensorsFile(join(killed, 'model.safetensors'));
    expect([...wb.tensors.keys()]).toEqual([...wa.tensors.keys()]);
    for (const [name, t] of wa.tensors) {
      const u = wb.tensors.get(name)!;
      expect(Buffer.from(u.data.buffer, u.data.byteOffset, u.data.byteLength).equals(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)), name).toBe(true);
    }
    expect(readdirSync(killed).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('a checkpoint write that fails (disk full) leaves the previous checkpoint readable', async () => {
    const dir = copyOfWhole('disk-full'); // 3 epochs done
    disk.full = true;
    try {
      await expect(runInProcess(['--resume', dir, '--epochs', '4'])).rejects.toThrow(/checkpoint\.safetensors: cannot write file: ENOSPC: no space left on device/);
    } finally {
      disk.full = false;
    }
    expect(await checkpointEpoch(dir)).toBe(3);
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    const record = readRecord(dir);
    expect(record.status).toBe('failed');
    expect(record.error).toMatch(/ENOSPC/);
    expect(record.epochs).toHaveLength(4); // epoch 4 trained; its checkpoint is what was lost
    expect(record.resumes.map((r) => [r.afterEpoch, r.changed])).toEqual([[3, { epochs: 4 }]]);
    // And the run goes on from that checkpoint.
    const again = await runInProcess(['--resume', dir, '--epochs', '4']);
    expect(again.epochs.map((e) => e.epoch)).toEqual([1, 2, 3, 4]);
    expect(again.resumes.map((r) => [r.afterEpoch, r.changed])).toEqual([[3, { epochs: 4 }], [3, { epochs: 4 }]]);
  });

  it('a NaN/inf loss stops the run naming epoch, batch and lr; the last good checkpoint stays intact, no model is written', async () => {
    const dir = copyOfWhole('nan-loss'); // 3 epochs done
    // The finished run's model goes, so that any model.safetensors afterwards was written by the failing run.
    rmSync(join(dir, 'model.safetensors'));
    const before = readFileSync(join(dir, 'checkpoint.safetensors'));
    // At this learning rate the first step overflows f32, so the second batch's loss is not finite.
    const err = await runInProcess(['--resume', dir, '--epochs', '4', '--lr', '1e38']).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NonFiniteLossError);
    expect((err as Error).message).toBe(`the loss became ${(err as NonFiniteLossError).loss} in epoch 4, batch 2 (lr 1e+38)`);
    expect(String((err as NonFiniteLossError).loss)).toMatch(/^(NaN|Infinity|-Infinity)$/);
    expect(readFileSync(join(dir, 'checkpoint.safetensors')).equals(before)).toBe(true);
    expect(existsSync(join(dir, 'model.safetensors')), 'a model.safetensors written after the NaN guard stopped the run').toBe(false);
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    const record = readRecord(dir);
    expect(record.status).toBe('failed');
    expect(record.error).toBe((err as Error).message);
    expect(record.resumes.map((r) => [r.afterEpoch, r.changed])).toEqual([[3, { epochs: 4, lr: 1e38 }]]);
  });

  it('refuses to start a new run in a folder that holds one', async () => {
    await expect(runInProcess([...recipe(), '--out', whole])).rejects.toThrow(/already holds a run \(run\.json\); continue it with --resume/);
  });

  it('npm run compare-runs: both runs in one SVG, their epochs side by side', async () => {
    const svg = join(tmp, 'compare.svg');
    const r = await runCli('compare-runs', [whole, copyOfWhole('again'), '--out', svg]);
    expect(r.code, r.stderr).toBe(0);
    const rows = r.stdout.split('\n').filter((l) => /^\| \d+ \|/.test(l));
    expect(rows).toHaveLength(3);
    expect(r.stdout).toContain('| epoch | whole (hotdog-webgpu, scratch) | again (hotdog-webgpu, scratch) |');
    const text = readFileSync(svg, 'utf8');
    for (const label of ['whole (hotdog-webgpu, scratch)', 'again (hotdog-webgpu, scratch)', 'epoch', 'train loss (cross-entropy per example, nats)', 'accuracy (% of images correct)', 'test acc']) {
      expect(text).toContain(label);
    }
    const bad = await runCli('compare-runs', [join(tmp, 'data')]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/data[/\\]run\.json: cannot read/);
  });

  it('npm run predict: probabilities per image with the class names, and a per-file error for a bad image', async () => {
    const bad = join(tmp, 'broken.png');
    writeFileSync(bad, 'not an image');
    const r = await runCli('predict', ['--weights', join(whole, 'model.safetensors'), '--json', join(data, 'test'), bad]);
    expect(r.code, r.stderr).toBe(1);
    const out = JSON.parse(r.stdout) as { classes: string[]; imageSize: number; predictions: { file: string; probabilities?: Record<string, number>; predicted?: string; error?: string }[] };
    expect(out.classes).toEqual(['hotdog', 'not-hotdog']);
    expect(out.imageSize).toBe(32);
    expect(out.predictions.map((p) => p.file)).toEqual([
      join(data, 'test', 'hotdog', '0.png'),
      join(data, 'test', 'hotdog', '1.png'),
      join(data, 'test', 'not-hotdog', '0.png'),
      join(data, 'test', 'not-hotdog', '1.png'),
      bad,
    ]);
    // The run's test pass, recomputed in this process from model.safetensors with the run's kernel choices pinned:
    // it reproduces the run's last test accuracy exactly. predict measures nothing and computes with the default
    // kernel variants, which round differently (Winograd against im2col or the implicit GEMM: about 1e-6 of the
    // logits), so its probabilities are held to PREDICT_TOL of these, and its verdicts to theirs wherever the two
    // classes are further apart than that.
    const PREDICT_TOL = 1e-5;
    const record = readRecord(whole);
    rt().tuner.pin(record.kernelChoices ?? {});
    const model = Classifier.fromBytes(rt(), 'model.safetensors', new Uint8Array(readFileSync(join(whole, 'model.safetensors'))));
    const engine: number[][] = [];
    try {
      for (const p of out.predictions.slice(0, 4)) engine.push((await model.predict(await decodeImage(p.file), 32)).probabilities);
    } finally {
      model.release();
    }
    const verdict = (probs: number[]): string => out.classes[probs.indexOf(Math.max(...probs))]!;
    const engineRight = out.predictions.slice(0, 4).filter((p, k) => basename(dirname(p.file)) === verdict(engine[k]!)).length;
    expect(engineRight / 4, "the run's test pass, recomputed").toBe(record.epochs[2]!.testAcc);
    let worst = 0;
    out.predictions.slice(0, 4).forEach((p, k) => {
      expect(Object.keys(p.probabilities!)).toEqual(['hotdog', 'not-hotdog']);
      const probs = Object.values(p.probabilities!);
      const diff = Math.max(...probs.map((v, j) => Math.abs(v - engine[k]![j]!)));
      worst = Math.max(worst, diff);
      expect(diff, p.file).toBeLessThan(PREDICT_TOL);
      if (Math.abs(engine[k]![0]! - engine[k]![1]!) > 2 * PREDICT_TOL) expect(p.predicted, p.file).toBe(verdict(engine[k]!));
    });
    console.log(`predict vs the run's test pass (its kernel choices): probabilities within ${worst.toExponential(2)}`);
    expect(out.predictions[4]!.error).toMatch(/broken\.png/);
  });
});

// One fine-tuning run, fresh or resumed: prepares the run folder, data and model, trains with fit(), and keeps
// the run's files up to date (see FINETUNE_HELP). Everything that can be checked before training is: a bad
// folder, an unwritable --out or differing class lists stop the run before the GPU is touched.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { DataLoader, DatasetError, DownloadError, ImageFolder, download, downloadExtract, evalTransform, trainTransform } from '../data/index.js';
import type { Batch } from '../data/loader.js';
import { describeAdapter } from '../kernels/device.js';
import type { Runtime } from '../kernels/runtime.js';
import { resnet18, type ResNet } from '../nn/resnet.js';
import { SGD } from '../nn/sgd.js';
import { writeFileAtomic } from '../node/atomic-file.js';
import { createNodeRuntime, destroyNodeRuntime } from '../node/engine-node.js';
import { nodeTuningStore } from '../node/tuning-store.js';
import { engineVersion, runtimeVersions } from '../node/versions.js';
import { readSafetensorsFile, readStateDictFile, writeSafetensorsFile } from '../node/weights-file.js';
import { checkpointContents, checkFinite, parseCheckpoint, type Checkpoint } from '../train/checkpoint.js';
import { renderCurvesSvg, runLabel } from '../train/curves-chart.js';
import { fit, type HostBatch } from '../train/fit.js';
import { createModel, parameterGroups, type Mode } from '../train/modes.js';
import { checkRunRecord, isTracePoint, RUN_FORMAT, type EpochRecord, type MemorySample, type RunOptions, type RunRecord } from '../train/run-record.js';
import { UsageError, type FinetuneOptions, type ResumeRequest } from './finetune-options.js';
import { createProgress, type Output, type Progress } from './progress.js';

export const RUN_FILES = { runJson: 'run.json', curves: 'curves.svg', checkpoint: 'checkpoint.safetensors', model: 'model.safetensors' } as const;

export interface RunEnvironment {
  output: Output;
  /** The command line, for the record. */
  argv: readonly string[];
  /** A runtime to use (tests share one); by default one is created and destroyed. */
  runtime?: Runtime;
}

export interface RunResult {
  dir: string;
  record: RunRecord;
}

/** A folder of new runs: `runs/<UTC date-time>`, made unique. */
function defaultRunDir(): string {
  const stamp = new Date().toISOString().slice(0, 19).replace(/:/g, '-');
  let dir = resolve('runs', stamp);
  for (let i = 2; existsSync(dir); i++) dir = resolve('runs', `${stamp}-${i}`);
  return dir;
}

/** Creates the run folder and proves it can be written, before any training. Returns whether it created it. */
function prepareRunDir(dir: string, flag: string, fresh: boolean): boolean {
  if (fresh && existsSync(join(dir, RUN_FILES.runJson))) {
    throw new UsageError(`${flag} ${dir}: the folder already holds a run (run.json); continue it with --resume ${dir}, or choose another --out`);
  }
  const probe = join(dir, `.write-test-${process.pid}`);
  const existed = existsSync(dir);
  try {
    mkdirSync(dir, { recursive: true });
    writeFileSync(probe, 'ok');
    rmSync(probe);
  } catch (e) {
    throw new UsageError(`${flag} ${dir}: cannot write there (${(e as Error).message})`);
  }
  return !existed;
}

function removeIfEmpty(dir: string): void {
  try {
    rmdirSync(dir);
  } catch {
    // not empty, or already gone: leave it
  }
}

function imageFolder(dir: string, flag: string): ImageFolder {
  if (!existsSync(dir)) throw new UsageError(`${flag}: the folder ${dir} does not exist`);
  try {
    return new ImageFolder(dir);
  } catch (e) {
    if (e instanceof DatasetError) throw new UsageError(`${flag}: ${e.message}`);
    throw e;
  }
}

function checkSameClasses(train: ImageFolder, test: ImageFolder): void {
  if (train.classes.join('\n') !== test.classes.join('\n')) {
    throw new UsageError(
      `the train classes (${train.classes.join(', ')}) in ${train.root} and the test classes (${test.classes.join(', ')}) in ${test.root} differ`,
    );
  }
}

/** The training data's identity: its files (relative to the folder) and labels. */
function fingerprint(folder: ImageFolder): string {
  const h = createHash('sha256');
  for (const s of folder.samples) h.update(`${s.label}\t${relative(folder.root, s.path)}\n`);
  return `sha256:${h.digest('hex')} (${folder.samples.length} images)`;
}

/** Adds the command-line way out to a download failure. */
async function withHint<T>(p: Promise<T>, hint: string): Promise<T> {
  try {
    return await p;
  } catch (e) {
    if (e instanceof DownloadError) throw new Error(`${e.message}; ${hint}`, { cause: e });
    throw e;
  }
}

async function dataFolders(o: FinetuneOptions): Promise<{ train: ImageFolder; test: ImageFolder }> {
  let root = o.data;
  if (!root && !(o.train && o.test)) {
    root = await withHint(downloadExtract('hotdog', { cacheDir: o.cacheDir ?? undefined }), 'or pass --data DIR (a folder with train/ and test/ class folders)');
  }
  const train = imageFolder(resolve(o.train ?? join(root!, 'train')), o.train ? '--train' : '--data');
  const test = imageFolder(resolve(o.test ?? join(root!, 'test')), o.test ? '--test' : '--data');
  checkSameClasses(train, test);
  return { train, test };
}

async function pretrainedWeights(o: FinetuneOptions): Promise<{ dict: Awaited<ReturnType<typeof readStateDictFile>>; source: string; file: string } | undefined> {
  if (o.mode === 'scratch') return undefined;
  let file: string;
  if (o.weights === 'imagenet') {
    file = await withHint(download('resnet18', { cacheDir: o.cacheDir ?? undefined }), 'or pass --weights FILE (a torchvision .pth or .safetensors), or --weights none');
  } else {
    file = resolve(o.weights);
    if (!existsSync(file) || !statSync(file).isFile()) throw new UsageError(`--weights: the file ${file} does not exist`);
  }
  return { dict: await readStateDictFile(file), source: file, file };
}

/** The GPU pool and the RSS; under `node --expose-gc` after a full collection, so garbage does not count as growth. */
function memorySample(rt: Runtime): MemorySample {
  const pool = rt.stats.pool;
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const m = process.memoryUsage();
  return {
    gpuPoolBytesHeld: pool.bytesHeld,
    gpuPoolBytesInUse: pool.bytesInUse,
    gpuBuffers: pool.liveBuffers,
    rssBytes: m.rss,
    jsHeapBytes: m.heapUsed + m.external,
    afterGc: gc !== undefined,
  };
}

const LIMITS = [
  'maxBufferSize',
  'maxStorageBufferBindingSize',
  'maxStorageBuffersPerShaderStage',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupSizeZ',
  'maxComputeWorkgroupsPerDimension',
  'minStorageBufferOffsetAlignment',
  'minUniformBufferOffsetAlignment',
] as const;

function deviceRecord(rt: Runtime): RunRecord['device'] {
  const i = rt.ctx.adapterInfo;
  const limits: Record<string, number> = {};
  for (const k of LIMITS) limits[k] = rt.ctx.limits[k];
  return {
    kind: rt.ctx.isCpuDriver ? 'webgpu-cpu-driver' : 'webgpu',
    name: describeAdapter(rt.ctx),
    adapter: { vendor: i.vendor, architecture: i.architecture, device: i.device, description: i.description, features: [...rt.ctx.features].sort().join(' ') },
    limits,
  };
}

/** Everything a run trains with, fresh or resumed. */
interface Session {
  dir: string;
  options: RunOptions;
  mode: Mode;
  train: ImageFolder;
  test: ImageFolder;
  model: ResNet;
  optimizer: SGD;
  record: RunRecord;
  startEpoch: number;
  dataFingerprint: string;
}

function runOptions(o: FinetuneOptions, dir: string, train: ImageFolder, test: ImageFolder): RunOptions {
  return {
    mode: o.mode,
    train: train.root,
    test: test.root,
    imageSize: o.imageSize,
    weights: o.weights === 'imagenet' || o.weights === 'none' ? o.weights : resolve(o.weights),
    epochs: o.epochs,
    batchSize: o.batchSize,
    lr: o.lr,
    headLrMult: o.headLrMult,
    weightDecay: o.weightDecay,
    momentum: o.momentum,
    seed: o.seed,
    maxBatches: o.maxBatches,
    workers: o.workers,
    out: dir,
  };
}

function batchesPerEpoch(o: RunOptions, train: ImageFolder): number {
  const n = Math.ceil(train.samples.length / o.batchSize);
  return o.maxBatches === null ? n : Math.min(n, o.maxBatches);
}

function newOptimizer(model: ResNet, o: RunOptions): SGD {
  return new SGD(parameterGroups(model, o.mode as Mode, o.lr, o.headLrMult), { lr: o.lr, weightDecay: o.weightDecay, momentum: o.momentum });
}

async function freshSession(o: FinetuneOptions, env: RunEnvironment, rtFor: () => Promise<Runtime>, created: string[]): Promise<Session> {
  const dir = o.out ? resolve(o.out) : defaultRunDir();
  if (prepareRunDir(dir, '--out', true)) created.push(dir);
  const { train, test } = await dataFolders(o);
  const weights = await pretrainedWeights(o);
  const rt = await rtFor();
  const { model, source } = createModel(rt, o.mode, train.classes, o.seed, weights);
  const options = runOptions(o, dir, train, test);
  const optimizer = newOptimizer(model, options);
  const params = model.parameters();
  const record: RunRecord = {
    format: RUN_FORMAT,
    engine: `hotdog-webgpu ${engineVersion()}`,
    command: [...env.argv],
    started: new Date().toISOString(),
    finished: null,
    status: 'running',
    options,
    seed: o.seed,
    data: {
      train: train.root,
      test: test.root,
      classes: [...train.classes],
      trainImages: train.samples.length,
      testImages: test.samples.length,
      batchesPerEpoch: batchesPerEpoch(options, train),
    },
    model: {
      mode: o.mode,
      weights: source,
      parameters: params.reduce((n, p) => n + p.size, 0),
      trainableParameters: params.filter((p) => p.requiresGrad).reduce((n, p) => n + p.size, 0),
    },
    device: deviceRecord(rt),
    versions: runtimeVersions(),
    epochs: [],
    trace: [],
    resumes: [],
    files: { ...RUN_FILES },
  };
  return { dir, options, mode: o.mode, train, test, model, optimizer, record, startEpoch: 0, dataFingerprint: fingerprint(train) };
}

function readRunJson(dir: string): RunRecord | null {
  try {
    return checkRunRecord(JSON.parse(readFileSync(join(dir, RUN_FILES.runJson), 'utf8')), dir);
  } catch {
    return null;
  }
}

async function readCheckpoint(path: string): Promise<Checkpoint> {
  const { tensors, metadata } = await readSafetensorsFile(path);
  return parseCheckpoint(tensors, metadata, path);
}

async function resumedSession(req: ResumeRequest, env: RunEnvironment, rtFor: () => Promise<Runtime>): Promise<Session> {
  const dir = resolve(req.resume);
  const path = join(dir, RUN_FILES.checkpoint);
  if (!existsSync(path)) {
    const what = existsSync(dir) ? `has no ${RUN_FILES.checkpoint} (the run did not finish an epoch)` : 'does not exist';
    throw new UsageError(`--resume: the run folder ${dir} ${what}`);
  }
  const ckpt = await readCheckpoint(path);
  const record = ckpt.state.record;
  const options: RunOptions = { ...record.options, ...req.changes, workers: req.workers, out: dir };
  if (ckpt.state.epoch >= options.epochs) {
    throw new UsageError(`--resume ${dir}: the run already finished its ${ckpt.state.epoch} epochs; pass --epochs N (more than ${ckpt.state.epoch}) to train it further`);
  }
  prepareRunDir(dir, '--resume', false);
  const train = imageFolder(options.train, '--train (from the run record)');
  const test = imageFolder(options.test, '--test (from the run record)');
  checkSameClasses(train, test);
  const dataFingerprint = fingerprint(train);
  if (dataFingerprint !== ckpt.state.dataFingerprint) {
    throw new UsageError(`--resume ${dir}: the training folder ${train.root} changed since the checkpoint (now ${dataFingerprint}, then ${ckpt.state.dataFingerprint})`);
  }
  const rt = await rtFor();
  // Compute with the kernel variants the run chose when it started (variants round differently).
  rt.tuner.pin(record.kernelChoices ?? {});
  const mode = options.mode as Mode;
  const model = resnet18(rt, { numClasses: train.classes.length, seed: options.seed });
  model.loadStateDict(ckpt.model, { source: path });
  const optimizer = newOptimizer(model, options);
  optimizer.loadStateDict(ckpt.optimizer);
  // The learning rates come from the (possibly changed) options; every other hyper-parameter from the checkpoint.
  const lrs = mode === 'scratch' ? [options.lr] : [options.lr, options.lr * options.headLrMult];
  optimizer.paramGroups.forEach((g, i) => (g.lr = lrs[i]!));
  const changed: Record<string, number> = {};
  for (const [k, v] of Object.entries(req.changes)) if (typeof v === 'number' && v !== (record.options as unknown as Record<string, unknown>)[k]) changed[k] = v;
  record.options = options;
  record.status = 'running';
  record.finished = null;
  delete record.error;
  record.data.batchesPerEpoch = batchesPerEpoch(options, train);
  // run.json may know of attempts after the checkpoint (a resume that failed before its next checkpoint).
  const lastRecord = readRunJson(dir);
  if (lastRecord && lastRecord.resumes.length > record.resumes.length) record.resumes = lastRecord.resumes;
  record.resumes.push({ afterEpoch: ckpt.state.epoch, at: new Date().toISOString(), changed });
  record.command = [...env.argv];
  record.device = deviceRecord(rt);
  record.versions = runtimeVersions();
  const session: Session = { dir, options, mode, train, test, model, optimizer, record, startEpoch: ckpt.state.epoch, dataFingerprint };
  return session;
}

async function writeRecord(s: Session): Promise<void> {
  await writeFileAtomic(join(s.dir, RUN_FILES.runJson), `${JSON.stringify(s.record, null, 2)}\n`);
  const o = s.options;
  const title = `${runLabel(s.dir, s.record)}: ${o.imageSize} px, batch ${o.batchSize}, lr ${o.lr}${o.mode === 'scratch' ? '' : ` (head x${o.headLrMult})`}, seed ${o.seed}`;
  await writeFileAtomic(join(s.dir, RUN_FILES.curves), await renderCurvesSvg([{ label: runLabel(s.dir, s.record), record: s.record }], title));
}

async function* limited(batches: AsyncIterable<Batch>, max: number | null): AsyncGenerator<HostBatch> {
  let n = 0;
  for await (const b of batches) {
    if (max !== null && n++ >= max) break;
    yield b;
  }
}

async function train(s: Session, progress: Progress, rt: Runtime): Promise<void> {
  const o = s.options;
  const resize = Math.round((o.imageSize * 256) / 224);
  const trainLoader = new DataLoader(s.train, { batchSize: o.batchSize, shuffle: true, seed: o.seed, transform: trainTransform(o.imageSize), workers: o.workers });
  const testLoader = new DataLoader(s.test, { batchSize: o.batchSize, transform: evalTransform(o.imageSize, resize), workers: o.workers });
  const batches = s.record.data.batchesPerEpoch;
  const testBatches = testLoader.length;
  try {
    await fit(s.model, s.optimizer, {
      epochs: o.epochs,
      startEpoch: s.startEpoch,
      trainBatches: (epoch) => {
        progress.epochStart(epoch + 1, o.epochs, batches);
        return limited(trainLoader.epoch(epoch), o.maxBatches);
      },
      testBatches: async function* () {
        let done = 0;
        let images = 0;
        for await (const b of testLoader.epoch(0)) {
          yield b;
          images += b.labels.length;
          progress.testBatch(++done, images);
        }
      },
      onTestStart: (epoch) => progress.testStart(epoch, testBatches),
      onTune: (line) => progress.info(line),
      onBatch: (p) => {
        progress.batch(p, o.epochs, batches);
        blockForTests(p.epoch, p.batch);
        if (isTracePoint(p.batch, batches)) {
          s.record.trace.push({ epoch: p.epoch - 1 + p.batch / batches, batch: p.batch, loss: p.lossSum / p.examples, trainAcc: p.correct / p.examples, examples: p.examples });
        }
      },
      onEpoch: async (m) => {
        const e: EpochRecord = { ...m, memory: memorySample(rt) };
        s.record.epochs.push(e);
        s.record.kernelChoices = rt.tuner.snapshot();
        const { tensors, metadata } = await checkpointContents(s.model, s.optimizer, {
          epoch: m.epoch,
          seed: o.seed,
          nextOrder: trainLoader.order(m.epoch),
          dataFingerprint: s.dataFingerprint,
          record: s.record,
        });
        await writeSafetensorsFile(join(s.dir, RUN_FILES.checkpoint), tensors, metadata);
        await writeRecord(s);
        progress.epochEnd(e, o.epochs);
      },
    });
  } finally {
    await trainLoader.close();
    await testLoader.close();
  }
  const skipped = trainLoader.report.skipped + testLoader.report.skipped;
  if (skipped) progress.info(`skipped ${skipped} unreadable images`);
}

/**
 * For tests only: HOTDOG_TEST_BLOCK_AFTER_BATCH=E/B blocks this process's thread for good right after epoch E's batch
 * B was reported (stdout to a pipe is written synchronously), so a test can kill the run there without racing the
 * epoch's checkpoint (test/cli/finetune-cli.test.ts).
 */
function blockForTests(epoch: number, batch: number): void {
  if (process.env.HOTDOG_TEST_BLOCK_AFTER_BATCH === `${epoch}/${batch}`) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
}

async function writeModel(s: Session): Promise<void> {
  const dict = await s.model.stateDict();
  checkFinite(dict, 'at the end of the run');
  await writeSafetensorsFile(join(s.dir, RUN_FILES.model), dict, {
    format: 'pt',
    classes: JSON.stringify(s.record.data.classes),
    image_size: String(s.options.imageSize),
    mode: s.options.mode,
    epochs: String(s.options.epochs),
    weights: s.record.model.weights,
    engine: s.record.engine,
  });
}

/** Runs (or resumes) a fine-tuning run. Throws UsageError for bad input found before training. */
export async function runFinetune(
  command: { kind: 'run'; options: FinetuneOptions } | { kind: 'resume'; request: ResumeRequest },
  env: RunEnvironment,
): Promise<RunResult> {
  const json = command.kind === 'run' ? command.options.json : command.request.json;
  const progress = createProgress(env.output, json);
  let ownRuntime: Runtime | null = null;
  const rtFor = async (): Promise<Runtime> =>
    env.runtime ??
    (ownRuntime ??= await createNodeRuntime({ tuningStore: nodeTuningStore(command.kind === 'run' ? (command.options.cacheDir ?? undefined) : undefined) }));
  let s: Session | null = null;
  const created: string[] = [];
  try {
    s = command.kind === 'run' ? await freshSession(command.options, env, rtFor, created) : await resumedSession(command.request, env, rtFor);
    const rt = await rtFor();
    const o = s.options;
    progress.info(`device: ${s.record.device.name}`);
    progress.info(`weights: ${s.record.model.weights}`);
    progress.info(
      `data: ${s.train.samples.length} training images in ${s.train.root}, ${s.test.samples.length} test images in ${s.test.root}; classes ${s.train.classes.join(', ')}`,
    );
    progress.info(
      `recipe: ${o.mode}, ${o.epochs} epochs, batch ${o.batchSize}, ${o.imageSize}px, lr ${o.lr}${o.mode === 'scratch' ? '' : ` (head x${o.headLrMult})`}, ` +
        `weight decay ${o.weightDecay}, momentum ${o.momentum}, seed ${o.seed}${o.maxBatches ? `, at most ${o.maxBatches} batches an epoch` : ''}`,
    );
    if (s.startEpoch > 0) progress.info(`resuming after epoch ${s.startEpoch} from ${join(s.dir, RUN_FILES.checkpoint)}`);
    progress.info(`run folder: ${s.dir}`);
    await writeRecord(s);
    await train(s, progress, rt);
    await writeModel(s);
    s.record.status = 'finished';
    s.record.finished = new Date().toISOString();
    await writeRecord(s);
    const files: Record<string, string> = { dir: s.dir };
    for (const [k, f] of Object.entries(RUN_FILES)) files[k] = join(s.dir, f);
    progress.done(files);
    return { dir: s.dir, record: s.record };
  } catch (e) {
    progress.stop();
    // A run folder made for a run that failed before it started (a download, a bad weights file) goes again.
    if (!s) for (const dir of created) removeIfEmpty(dir);
    if (s && !(e instanceof UsageError)) {
      s.record.status = 'failed';
      s.record.error = e instanceof Error ? e.message : String(e);
      await writeFileAtomic(join(s.dir, RUN_FILES.runJson), `${JSON.stringify(s.record, null, 2)}\n`).catch(() => undefined);
    }
    throw e;
  } finally {
    if (s) {
      s.optimizer.release();
      s.model.release();
    }
    if (ownRuntime) destroyNodeRuntime(ownRuntime);
  }
}

// One fine-tuning run, fresh or resumed: prepares the run folder, data and model, trains with fit(), and keeps
// the run's files up to date (see FINETUNE_HELP). Everything that can be checked before training is: a bad
// folder, an unwritable --out or differing class lists stop the run before the GPU is touched.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { DataLoader, DatasetError, DownloadError, ImageFolder, download, downloadExtract, evalTransform, trainTransform } from '../data/index.js';
import type { Batch } from '../data/loader.js';
import { describeAdapter } from '../runtime/device.js';
import type { Runtime } from '../runtime/runtime.js';
import { resnet18, type ResNet } from '../nn/resnet.js';
import { SGD } from '../nn/sgd.js';
import { writeFileAtomic } from '../node/atomic-file.js';
import { createNodeRuntimes, destroyNodeRuntime } from '../node/engine-node.js';
import { nodeTuningStore } from '../node/tuning-store.js';
import { engineVersion, runtimeVersions } from '../node/versions.js';
import { readSafetensorsFile, readStateDictFile, writeSafetensorsFile } from '../node/weights-file.js';
import { checkpointContents, checkFinite, parseCheckpoint, type Checkpoint } from '../train/checkpoint.js';
import { renderCurvesSvg, runLabel } from '../train/curves-chart.js';
import { replicateState, type Replica } from '../train/data-parallel.js';
import { fit, type HostBatch } from '../train/fit.js';
import { createModel, groupLearningRates, recipeOptimizer, type Mode } from '../train/modes.js';
import { checkRunRecord, isTracePoint, RUN_FORMAT, type DeviceRecord, type EpochRecord, type MemorySample, type RunOptions, type RunRecord } from '../train/run-record.js';
import { UsageError, type FinetuneOptions, type ResumeRequest } from './finetune-options.js';
import { createProgress, type Output, type Progress } from './progress.js';

export const RUN_FILES = { runJson: 'run.json', curves: 'curves.svg', checkpoint: 'checkpoint.safetensors', model: 'model.safetensors' } as const;

export interface RunEnvironment {
  output: Output;
  /** The command line, for the record. */
  argv: readonly string[];
  /** A runtime to use (tests share one); by default one is created and destroyed. */
  runtime?: Runtime;
  /** Runtimes to use for --devices (tests); the first --devices of them are used. */
  runtimes?: readonly Runtime[];
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

/**
 * The GPU pools (of every device) and the RSS; under `node --expose-gc` after a full collection, so garbage does
 * not count as growth.
 */
function memorySample(rts: readonly Runtime[]): MemorySample {
  const pools = rts.map((rt) => rt.stats.pool);
  const textures = rts.map((rt) => rt.stats.textures);
  const gc = (globalThis as { gc?: () => void }).gc;
  // Twice: V8 frees dead array buffers (the last checkpoint's 90-180 MB of tensors and bytes) on a background
  // thread after a full collection and only then lowers `external`; the next full collection first waits for that
  // sweep. On a loaded machine one collection left the checkpoint's bytes counted (CI: +179 MB between epochs).
  gc?.();
  gc?.();
  const m = process.memoryUsage();
  return {
    gpuPoolBytesHeld: pools.reduce((n, p) => n + p.bytesHeld, 0),
    gpuPoolBytesInUse: pools.reduce((n, p) => n + p.bytesInUse, 0),
    gpuBuffers: pools.reduce((n, p) => n + p.liveBuffers, 0),
    gpuPoolPeakBytesInUse: pools.reduce((n, p) => n + p.peakBytesInUse, 0),
    gpuTexturePoolBytesHeld: textures.reduce((n, t) => n + t.bytesHeld, 0),
    gpuTextures: textures.reduce((n, t) => n + t.texturesHeld, 0),
    gpuTexturePoolPeakBytesInUse: textures.reduce((n, t) => n + t.peakBytesInUse, 0),
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

function deviceRecord(rt: Runtime): DeviceRecord {
  const i = rt.ctx.adapterInfo;
  const limits: Record<string, number> = {};
  for (const k of LIMITS) limits[k] = rt.ctx.limits[k];
  return {
    kind: rt.deviceCtx.isCpuDriver ? 'webgpu-cpu-driver' : 'webgpu',
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
  /** The other devices' replicas (data parallelism); empty on one device. */
  replicas: Replica[];
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
    devices: 1, // the number of devices opened (--devices all), set once they are
    accumulate: o.accumulate,
  };
}

function batchesPerEpoch(o: RunOptions, train: ImageFolder): number {
  const n = Math.ceil(train.samples.length / o.batchSize);
  return o.maxBatches === null ? n : Math.min(n, o.maxBatches);
}

function newOptimizer(model: ResNet, o: RunOptions): SGD {
  return recipeOptimizer(model, o);
}

/**
 * The replicas on the other devices: the same model and optimizer, built as the first was (the mode decides which
 * parameters train), then given the first one's state: parameters, buffers, momentum.
 */
async function makeReplicas(model: ResNet, optimizer: SGD, others: readonly Runtime[], o: RunOptions, classes: number, choices: Record<string, string>): Promise<Replica[]> {
  const replicas: Replica[] = [];
  for (const rt of others) {
    rt.tuner.pin(choices);
    const m = resnet18(rt, { numClasses: classes, seed: o.seed });
    replicas.push({ model: m, optimizer: newOptimizer(m, o) });
  }
  await replicateState([{ model, optimizer }, ...replicas]);
  return replicas;
}

async function freshSession(o: FinetuneOptions, env: RunEnvironment, rtsFor: (devices: number | 'all') => Promise<Runtime[]>, created: string[]): Promise<Session> {
  const dir = o.out ? resolve(o.out) : defaultRunDir();
  if (prepareRunDir(dir, '--out', true)) created.push(dir);
  const { train, test } = await dataFolders(o);
  const weights = await pretrainedWeights(o);
  const rts = await rtsFor(o.devices);
  const rt = rts[0]!;
  const { model, source } = createModel(rt, o.mode, train.classes, o.seed, weights);
  const options = runOptions(o, dir, train, test);
  options.devices = rts.length;
  const optimizer = newOptimizer(model, options);
  const replicas = await makeReplicas(model, optimizer, rts.slice(1), options, train.classes.length, {});
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
    devices: rts.map(deviceRecord),
    versions: runtimeVersions(),
    epochs: [],
    trace: [],
    resumes: [],
    files: { ...RUN_FILES },
  };
  return { dir, options, mode: o.mode, train, test, model, optimizer, replicas, record, startEpoch: 0, dataFingerprint: fingerprint(train) };
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

async function resumedSession(req: ResumeRequest, env: RunEnvironment, rtsFor: (devices: number | 'all') => Promise<Runtime[]>): Promise<Session> {
  const dir = resolve(req.resume);
  const path = join(dir, RUN_FILES.checkpoint);
  if (!existsSync(path)) {
    const what = existsSync(dir) ? `has no ${RUN_FILES.checkpoint} (the run did not finish an epoch)` : 'does not exist';
    throw new UsageError(`--resume: the run folder ${dir} ${what}`);
  }
  const ckpt = await readCheckpoint(path);
  const record = ckpt.state.record;
  const options: RunOptions = { ...record.options, ...req.changes, workers: req.workers, out: dir };
  const devices = record.options.devices ?? 1;
  const differs = (n: number): UsageError =>
    new UsageError(
      `--resume ${dir}: the run trained on ${devices} device${devices > 1 ? 's' : ''}; --devices ${req.devices} gives ${n}. ` +
        `A resumed run keeps its number of devices (each device's shard has its own BatchNorm statistics, so the ` +
        `arithmetic would change): leave --devices out or pass --devices ${devices}`,
    );
  if (typeof req.devices === 'number' && req.devices !== devices) throw differs(req.devices);
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
  const rts = await rtsFor(req.devices === 'all' ? 'all' : devices);
  if (rts.length !== devices) throw differs(rts.length);
  const rt = rts[0]!;
  // Compute with the kernel variants the run chose when it started (variants round differently).
  rt.tuner.pin(record.kernelChoices ?? {});
  const mode = options.mode;
  const model = resnet18(rt, { numClasses: train.classes.length, seed: options.seed });
  model.loadStateDict(ckpt.model, { source: path });
  const optimizer = newOptimizer(model, options);
  optimizer.loadStateDict(ckpt.optimizer);
  // The learning rates come from the (possibly changed) options; every other hyper-parameter from the checkpoint.
  const lrs = groupLearningRates(mode, options.lr, options.headLrMult);
  optimizer.paramGroups.forEach((g, i) => (g.lr = lrs[i]!));
  const replicas = await makeReplicas(model, optimizer, rts.slice(1), options, train.classes.length, record.kernelChoices ?? {});
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
  record.devices = rts.map(deviceRecord);
  record.versions = runtimeVersions();
  const session: Session = { dir, options, mode, train, test, model, optimizer, replicas, record, startEpoch: ckpt.state.epoch, dataFingerprint };
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

async function train(s: Session, progress: Progress, rts: readonly Runtime[]): Promise<void> {
  const rt = rts[0]!;
  const o = s.options;
  const trainLoader = new DataLoader(s.train, { batchSize: o.batchSize, shuffle: true, seed: o.seed, transform: trainTransform(o.imageSize), workers: o.workers });
  const testLoader = new DataLoader(s.test, { batchSize: o.batchSize, transform: evalTransform(o.imageSize), workers: o.workers });
  const batches = s.record.data.batchesPerEpoch;
  const testBatches = testLoader.length;
  try {
    await fit(s.model, s.optimizer, {
      epochs: o.epochs,
      startEpoch: s.startEpoch,
      accumulate: o.accumulate ?? 1,
      replicas: s.replicas,
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
        const e: EpochRecord = { ...m, memory: memorySample(rts) };
        s.record.epochs.push(e);
        s.record.kernelChoices = rt.tuner.usedChoices(); // the run's own shapes, not the whole tuning cache
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
  let ownRuntimes: Runtime[] | null = null;
  let runtimes: Runtime[] | null = null;
  const rtsFor = async (devices: number | 'all'): Promise<Runtime[]> => {
    if (runtimes) return runtimes;
    const given = env.runtimes ?? (env.runtime ? [env.runtime] : null);
    if (given) {
      const n = devices === 'all' ? given.length : devices;
      if (n > given.length) throw new UsageError(`--devices ${devices}: this environment offers ${given.length} device${given.length > 1 ? 's' : ''}`);
      return (runtimes = given.slice(0, n));
    }
    const tuningStore = nodeTuningStore(command.kind === 'run' ? (command.options.cacheDir ?? undefined) : undefined);
    return (runtimes = ownRuntimes = await createNodeRuntimes(devices, { tuningStore }));
  };
  let s: Session | null = null;
  const created: string[] = [];
  try {
    s = command.kind === 'run' ? await freshSession(command.options, env, rtsFor, created) : await resumedSession(command.request, env, rtsFor);
    const rts = runtimes!;
    const o = s.options;
    const devices = s.record.devices ?? [s.record.device];
    if (devices.length === 1) progress.info(`device: ${s.record.device.name}`);
    else devices.forEach((d, i) => progress.info(`device ${i + 1} of ${devices.length}: ${d.name}`));
    progress.info(`weights: ${s.record.model.weights}`);
    progress.info(
      `data: ${s.train.samples.length} training images in ${s.train.root}, ${s.test.samples.length} test images in ${s.test.root}; classes ${s.train.classes.join(', ')}`,
    );
    progress.info(
      `recipe: ${o.mode}, ${o.epochs} epochs, batch ${o.batchSize}, ${o.imageSize}px, lr ${o.lr}${o.mode === 'scratch' ? '' : ` (head x${o.headLrMult})`}, ` +
        `weight decay ${o.weightDecay}, momentum ${o.momentum}, seed ${o.seed}${o.maxBatches ? `, at most ${o.maxBatches} batches an epoch` : ''}` +
        `${(o.accumulate ?? 1) > 1 ? `, ${o.accumulate} micro-batches a batch` : ''}${rts.length > 1 ? `, split across ${rts.length} devices` : ''}`,
    );
    if (s.startEpoch > 0) progress.info(`resuming after epoch ${s.startEpoch} from ${join(s.dir, RUN_FILES.checkpoint)}`);
    progress.info(`run folder: ${s.dir}`);
    await writeRecord(s);
    await train(s, progress, rts);
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
      for (const r of [{ model: s.model, optimizer: s.optimizer }, ...s.replicas]) {
        r.optimizer.release();
        r.model.release();
      }
    }
    for (const rt of (ownRuntimes as Runtime[] | null) ?? []) destroyNodeRuntime(rt);
  }
}

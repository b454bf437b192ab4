// npm run finetune: the transfer-learning experiment. torchvision's ImageNet ResNet-18 with its 1000-way head
// replaced by a xavier-initialised 2-way one, fine-tuned with SGD (the new head at 10x the learning rate) on the
// hot dog data set, reporting per epoch the loss, train accuracy, test accuracy and examples/sec.
import { parseArgs } from 'node:util';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { DataLoader, DownloadError, ImageFolder, download, downloadExtract, evalTransform, trainTransform } from '../data/index.js';
import { describeAdapter } from '../kernels/device.js';
import { replaceHead, resnet18, type ResNet } from '../nn/resnet.js';
import { SGD } from '../nn/sgd.js';
import type { StateDict } from '../nn/weights/state-dict.js';
import { createNodeRuntime, destroyNodeRuntime } from '../node/engine-node.js';
import { nodeTuningStore } from '../node/tuning-store.js';
import { readStateDictFile, writeSafetensorsFile } from '../node/weights-file.js';
import { fit, type EpochMetrics } from '../train/fit.js';
import type { Runtime } from '../kernels/runtime.js';
import type { Tensor } from '../kernels/tensor.js';

const HELP = `Fine-tune ResNet-18 to tell hot dogs from everything else (d2l's fine-tuning chapter).

usage: npm run finetune -- [options]

data
  --data DIR            folder with train/ and test/ class folders (default: download d2l's hotdog.zip)
  --train DIR           training folder (overrides DIR/train)
  --test DIR            test folder (overrides DIR/test)
  --image-size N        training crop size; tests use Resize(N*256/224) + CenterCrop(N) (default 224)
model
  --weights W           'imagenet' (default: torchvision's resnet18-f37072fd.pth, downloaded and checked),
                        a .pth/.safetensors file (1000 classes: the head is replaced; 2 classes: used as is),
                        or 'none' to train from scratch
  --freeze              train only the new head
training (defaults: the chapter's recipe)
  --epochs N            (5)
  --batch-size N        (128)
  --lr X                base learning rate (5e-5 fine-tuning, 5e-4 from scratch)
  --head-lr-mult X      learning-rate multiplier of the new head (10; 1 from scratch)
  --weight-decay X      (0.001)
  --momentum X          (0)
  --seed N              shuffling, augmentation and head initialisation (0)
  --max-batches N       stop each training epoch after N batches (quick runs)
output
  --save FILE           write the fine-tuned weights (safetensors, written atomically) after each epoch
  --json                print one JSON object per epoch instead of text
other
  --cache-dir DIR       download cache (default: the user cache dir, or $HOTDOG_CACHE_DIR)
  --workers N           decoding/augmentation worker threads (0: sharp's thread pool + main thread)
  -h, --help`;

interface Options {
  trainDir: string;
  testDir: string;
  imageSize: number;
  weights: string;
  freeze: boolean;
  epochs: number;
  batchSize: number;
  lr: number;
  headLrMult: number;
  weightDecay: number;
  momentum: number;
  seed: number;
  maxBatches: number;
  save: string | null;
  json: boolean;
  cacheDir: string | undefined;
  workers: number;
}

function number(name: string, v: string | undefined, fallback: number, check: (n: number) => boolean = (n) => n >= 0): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || !check(n)) throw new UsageError(`--${name}: '${v}' is not a valid value`);
  return n;
}

const positiveInt = (n: number): boolean => Number.isInteger(n) && n > 0;

class UsageError extends Error {}

async function parseOptions(argv: string[]): Promise<Options | null> {
  const { values } = parseArgs({
    args: argv,
    options: {
      data: { type: 'string' },
      train: { type: 'string' },
      test: { type: 'string' },
      'image-size': { type: 'string' },
      weights: { type: 'string' },
      freeze: { type: 'boolean' },
      epochs: { type: 'string' },
      'batch-size': { type: 'string' },
      lr: { type: 'string' },
      'head-lr-mult': { type: 'string' },
      'weight-decay': { type: 'string' },
      momentum: { type: 'string' },
      seed: { type: 'string' },
      'max-batches': { type: 'string' },
      save: { type: 'string' },
      json: { type: 'boolean' },
      'cache-dir': { type: 'string' },
      workers: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) return null;
  const weights = values.weights ?? 'imagenet';
  const scratch = weights === 'none';
  const parsed = {
    imageSize: number('image-size', values['image-size'], 224, positiveInt),
    weights,
    freeze: values.freeze ?? false,
    epochs: number('epochs', values.epochs, 5, positiveInt),
    batchSize: number('batch-size', values['batch-size'], 128, positiveInt),
    lr: number('lr', values.lr, scratch ? 5e-4 : 5e-5),
    headLrMult: number('head-lr-mult', values['head-lr-mult'], scratch ? 1 : 10),
    weightDecay: number('weight-decay', values['weight-decay'], 1e-3),
    momentum: number('momentum', values.momentum, 0),
    seed: number('seed', values.seed, 0, Number.isInteger),
    maxBatches: number('max-batches', values['max-batches'], Infinity, (n) => n === Infinity || positiveInt(n)),
    save: values.save ? resolve(values.save) : null,
    json: values.json ?? false,
    cacheDir: values['cache-dir'],
    workers: number('workers', values.workers, 0, Number.isInteger),
  };
  let root = values.data;
  if (!root && !(values.train && values.test)) {
    root = await withHint(downloadExtract('hotdog', { cacheDir: values['cache-dir'] }), 'or pass --data DIR (a folder with train/ and test/ class folders)');
  }
  const trainDir = resolve(values.train ?? join(root!, 'train'));
  const testDir = resolve(values.test ?? join(root!, 'test'));
  for (const [flag, dir] of [['train', trainDir], ['test', testDir]] as const) {
    if (!existsSync(dir)) throw new UsageError(`--${values[flag] ? flag : 'data'}: the ${flag} folder ${dir} does not exist`);
  }
  return { trainDir, testDir, ...parsed };
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
/** Builds the model: pretrained body + new 2-way head, a 2-class checkpoint as is, or torchvision's random init. */
async function buildModel(rt: Runtime, o: Options, numClasses: number): Promise<{ model: ResNet; source: string }> {
  if (o.weights === 'none') return { model: resnet18(rt, { numClasses, seed: o.seed }), source: 'random init (from scratch)' };
  const path =
    o.weights === 'imagenet'
      ? await withHint(download('resnet18', { cacheDir: o.cacheDir }), 'or pass --weights FILE (a torchvision .pth or .safetensors), or --weights none')
      : resolve(o.weights);
  const dict: StateDict = await readStateDictFile(path);
  const fc = dict.get('fc.weight');
  if (!fc || fc.shape.length !== 2) throw new Error(`${path}: not a ResNet checkpoint (no 2-D fc.weight)`);
  const classes = fc.shape[0]!;
  const model = resnet18(rt, { numClasses: classes === numClasses ? numClasses : classes });
  model.loadStateDict(dict, { source: path });
  if (classes !== numClasses) {
    replaceHead(model, numClasses, o.seed);
    return { model, source: `${path} (${classes}-way head replaced by a ${numClasses}-way one)` };
  }
  return { model, source: path };
}

function report(m: EpochMetrics, o: Options): void {
  if (o.json) {
    console.log(JSON.stringify(m));
    return;
  }
  console.log(
    `epoch ${m.epoch}/${o.epochs}: loss ${m.loss.toFixed(3)}, train acc ${m.trainAcc.toFixed(3)}, test acc ${m.testAcc.toFixed(3)}, ` +
      `${m.examplesPerSec.toFixed(2)} examples/sec (${m.examples} images in ${m.trainSeconds.toFixed(1)} s; test ${m.testSeconds.toFixed(1)} s)`,
  );
}

async function main(): Promise<void> {
  let o: Options | null;
  try {
    o = await parseOptions(process.argv.slice(2));
  } catch (e) {
    if (e instanceof UsageError || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      console.error(`finetune: ${(e as Error).message}\n\n${HELP}`);
      process.exit(2);
    }
    throw e;
  }
  if (!o) {
    console.log(HELP);
    return;
  }
  const opts = o;
  const train = new ImageFolder(opts.trainDir);
  const test = new ImageFolder(opts.testDir);
  if (train.classes.join() !== test.classes.join()) {
    throw new Error(`the train classes (${train.classes.join(', ')}) and test classes (${test.classes.join(', ')}) differ`);
  }
  const rt = await createNodeRuntime({ tuningStore: nodeTuningStore(opts.cacheDir) });
  try {
    const { model, source } = await buildModel(rt, opts, train.classes.length);
    const head: Tensor[] = [model.fc.weight, model.fc.bias!];
    if (opts.freeze) {
      model.requiresGrad(false);
      for (const p of head) p.requiresGrad = true;
    }
    const body = model.parameters().filter((p) => !head.includes(p));
    const optimizer = new SGD([{ params: body }, { params: head, lr: opts.lr * opts.headLrMult }], {
      lr: opts.lr,
      weightDecay: opts.weightDecay,
      momentum: opts.momentum,
    });
    const resize = Math.round((opts.imageSize * 256) / 224);
    const trainLoader = new DataLoader(train, { batchSize: opts.batchSize, shuffle: true, seed: opts.seed, transform: trainTransform(opts.imageSize), workers: opts.workers });
    const testLoader = new DataLoader(test, { batchSize: opts.batchSize, transform: evalTransform(opts.imageSize, resize), workers: opts.workers });
    if (!opts.json) {
      console.log(`device: ${describeAdapter(rt.ctx)}`);
      console.log(`weights: ${source}`);
      console.log(`data: ${train.samples.length} training images in ${opts.trainDir}, ${test.samples.length} test images in ${opts.testDir}; classes ${train.classes.join(', ')}`);
      console.log(
        `recipe: ${opts.epochs} epochs, batch ${opts.batchSize}, ${opts.imageSize}px, lr ${opts.lr} (head x${opts.headLrMult}), weight decay ${opts.weightDecay}, momentum ${opts.momentum}${opts.freeze ? ', body frozen' : ''}`,
      );
    }
    async function* limited(epoch: number) {
      let n = 0;
      for await (const b of trainLoader.epoch(epoch)) {
        if (n++ >= opts.maxBatches) break;
        yield b;
      }
    }
    await fit(model, optimizer, {
      epochs: opts.epochs,
      trainBatches: limited,
      testBatches: () => testLoader.epoch(0),
      onEpoch: async (m) => {
        report(m, opts);
        if (opts.save) {
          await writeSafetensorsFile(opts.save, await model.stateDict(), { format: 'pt', epoch: String(m.epoch) });
          if (!opts.json) console.log(`saved ${opts.save}`);
        }
      },
    });
    const skipped = trainLoader.report.skipped + testLoader.report.skipped;
    if (skipped && !opts.json) console.log(`skipped ${skipped} unreadable images`);
    optimizer.release();
    model.release();
  } finally {
    destroyNodeRuntime(rt);
  }
}

main().catch((e: unknown) => {
  console.error(`finetune: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});

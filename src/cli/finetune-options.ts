// npm run finetune's command line: the options, their defaults (the chapter's recipe per mode) and checks.
// Parsing does no I/O; what the options name (folders, files) is checked when the run is prepared.
import { parseArgs } from 'node:util';
import { isMode, MODES, modeDefaults, type Mode, type Recipe } from '../train/modes.js';

export const FINETUNE_HELP = `Fine-tune ResNet-18 to tell hot dogs from everything else (d2l's fine-tuning chapter).

usage: npm run finetune -- [options]
       npm run finetune -- --resume DIR [--epochs N] [--lr X] [--head-lr-mult X] [--devices N]

data
  --data DIR            folder with train/ and test/ class folders (default: download d2l's hotdog.zip)
  --train DIR           training folder (overrides DIR/train)
  --test DIR            test folder (overrides DIR/test)
  --image-size N        training crop size; tests use Resize(N*256/224) + CenterCrop(N) (default 224)
model
  --mode M              finetune (default): the pretrained body, a new xavier-initialised head trained at
                          --head-lr-mult times the lr (defaults lr 5e-5, x10)
                        scratch: torchvision's random init, one lr for every parameter (5e-4, x1);
                          implied by --weights none
                        frozen: as finetune, but only the new head trains (the body gets no gradient)
                        hotdog-head: as finetune, but the new head's hot-dog row starts from the pretrained
                          1000-way head's row 934 ("hotdog"), weight and bias; the other row keeps the new
                          head's initialisation (xavier-uniform weight, PyTorch's default Linear bias)
  --weights W           'imagenet' (default: torchvision's resnet18-f37072fd.pth, downloaded and checked),
                        a .pth/.safetensors ResNet-18 checkpoint whose head is replaced, or 'none' (scratch)
training (defaults: the chapter's recipe)
  --epochs N            (5)
  --batch-size N        (128)
  --lr X                base learning rate (default per mode, see above)
  --head-lr-mult X      learning-rate multiplier of the new head (default per mode)
  --weight-decay X      (0.001)
  --momentum X          (0)
  --seed N              shuffling, augmentation and initialisation (0)
  --max-batches N       stop each training epoch after N batches (quick runs)
  --accumulate K        run each batch as K micro-batches one after the other (split as evenly as possible),
                          each with its own BatchNorm statistics, gradients summed, one step: the batch's
                          arithmetic with about 1/K of the memory (1)
devices (docs/multi-device.md)
  --devices N|all       train on N WebGPU devices (a replica each; every batch split across them, gradients
                          summed, the same step on each) or on one device per adapter found (1). Devices go on
                          the adapters named in HOTDOG_WEBGPU_ADAPTERS (comma-separated) in turn, else all on
                          the default adapter. A resumed run keeps its number of devices
output
  --out DIR             run folder (default runs/<date-time>/): run.json, curves.svg, checkpoint.safetensors
                        (after every epoch) and model.safetensors (the final weights with the class names)
  --resume DIR          continue the run in DIR from its last checkpoint, with its options; only --epochs
                        (to train longer), --lr, --head-lr-mult, --max-batches, --workers and --json may change
  --json                print one JSON object per epoch, then one with the run's files, and nothing else
other
  --cache-dir DIR       download cache (default: the user cache dir, or $HOTDOG_CACHE_DIR)
  --workers N           decoding/augmentation worker threads (0: sharp's thread pool + main thread)
  -h, --help`;

/** A bad command line: the CLI prints the message and the help, and exits with status 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** The command line's options: the recipe (src/train/modes.ts) plus the inputs, outputs and run-time settings. */
export interface FinetuneOptions extends Recipe {
  /** Folder with train/ and test/, or null (then train and test are given, or hotdog.zip is downloaded). */
  data: string | null;
  train: string | null;
  test: string | null;
  /** 'imagenet', 'none' or a file path. */
  weights: string;
  out: string | null;
  json: boolean;
  cacheDir: string | null;
  workers: number;
  /** Number of devices, or 'all' (one per adapter found). */
  devices: number | 'all';
  /** Micro-batches per batch (per device). */
  accumulate: number;
}

/** What a --resume command line asks for: the run folder and the few options that may change. */
export interface ResumeRequest {
  resume: string;
  json: boolean;
  workers: number;
  /** --devices given again: must match the run's (null: the run's). */
  devices: number | 'all' | null;
  changes: Partial<Pick<FinetuneOptions, 'epochs' | 'lr' | 'headLrMult' | 'maxBatches'>>;
}

export type FinetuneCommand = { kind: 'help' } | { kind: 'run'; options: FinetuneOptions } | { kind: 'resume'; request: ResumeRequest };

const RENAMED: Record<string, string> = {
  '--freeze': '--freeze is now --mode frozen',
  '--save': '--save is gone: every run writes model.safetensors (and a checkpoint after each epoch) into its --out folder',
};

function num(name: string, v: string | undefined, check: (n: number) => boolean, what: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || !check(n)) throw new UsageError(`--${name}: '${v}' is not ${what}`);
  return n;
}
const positiveInt = (n: number): boolean => Number.isInteger(n) && n > 0;
const nonNegative = (n: number): boolean => n >= 0;

export function parseFinetuneArgs(argv: readonly string[]): FinetuneCommand {
  for (const a of argv) {
    const renamed = RENAMED[a.split('=')[0]!];
    if (renamed) throw new UsageError(renamed);
  }
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        data: { type: 'string' },
        train: { type: 'string' },
        test: { type: 'string' },
        'image-size': { type: 'string' },
        mode: { type: 'string' },
        weights: { type: 'string' },
        epochs: { type: 'string' },
        'batch-size': { type: 'string' },
        lr: { type: 'string' },
        'head-lr-mult': { type: 'string' },
        'weight-decay': { type: 'string' },
        momentum: { type: 'string' },
        seed: { type: 'string' },
        'max-batches': { type: 'string' },
        out: { type: 'string' },
        resume: { type: 'string' },
        json: { type: 'boolean' },
        'cache-dir': { type: 'string' },
        workers: { type: 'string' },
        devices: { type: 'string' },
        accumulate: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (values.help) return { kind: 'help' };

  const epochs = num('epochs', values.epochs, positiveInt, 'a positive integer');
  const lr = num('lr', values.lr, nonNegative, 'a learning rate (a number >= 0)');
  const headLrMult = num('head-lr-mult', values['head-lr-mult'], nonNegative, 'a number >= 0');
  const maxBatches = num('max-batches', values['max-batches'], positiveInt, 'a positive integer');
  const workers = num('workers', values.workers, (n) => Number.isInteger(n) && n >= 0, 'a whole number >= 0') ?? 0;
  const json = values.json ?? false;
  let devices: number | 'all' | null = null;
  if (values.devices !== undefined) devices = values.devices === 'all' ? 'all' : num('devices', values.devices, positiveInt, "a positive integer or 'all'")!;

  if (values.resume !== undefined) {
    const fixed = ['data', 'train', 'test', 'image-size', 'mode', 'weights', 'batch-size', 'weight-decay', 'momentum', 'seed', 'out', 'cache-dir', 'accumulate'] as const;
    const given = fixed.filter((k) => values[k] !== undefined);
    if (given.length) {
      throw new UsageError(`--resume continues a run with the options it was started with; ${given.map((k) => `--${k}`).join(', ')} cannot change (only --epochs, --lr, --head-lr-mult, --max-batches, --workers, --json; --devices only to its own number)`);
    }
    if (!values.resume) throw new UsageError('--resume: give the run folder');
    const changes: ResumeRequest['changes'] = {};
    if (epochs !== undefined) changes.epochs = epochs;
    if (lr !== undefined) changes.lr = lr;
    if (headLrMult !== undefined) changes.headLrMult = headLrMult;
    if (maxBatches !== undefined) changes.maxBatches = maxBatches;
    return { kind: 'resume', request: { resume: values.resume, json, workers, devices, changes } };
  }

  const weights = values.weights ?? 'imagenet';
  if (weights === '') throw new UsageError("--weights: give 'imagenet', 'none' or a file");
  let mode: Mode;
  if (values.mode !== undefined) {
    if (!isMode(values.mode)) throw new UsageError(`--mode: '${values.mode}' is not one of ${MODES.join(', ')}`);
    mode = values.mode;
  } else {
    mode = weights === 'none' ? 'scratch' : 'finetune';
  }
  if (weights === 'none' && mode !== 'scratch') throw new UsageError(`--weights none trains from scratch; it cannot be combined with --mode ${mode}`);
  if (mode === 'scratch' && values.weights !== undefined && weights !== 'none') {
    throw new UsageError(`--mode scratch starts from random weights; --weights ${weights} would be ignored (leave it out)`);
  }
  if (values.data === undefined && (values.train === undefined) !== (values.test === undefined)) {
    // One of --train/--test without --data: the other would come from the download, which is surely not meant.
    throw new UsageError(`--${values.train === undefined ? 'train' : 'test'}: give it too (or --data DIR), since --${values.train === undefined ? 'test' : 'train'} is given`);
  }
  const defaults = modeDefaults(mode);
  return {
    kind: 'run',
    options: {
      mode,
      data: values.data ?? null,
      train: values.train ?? null,
      test: values.test ?? null,
      imageSize: num('image-size', values['image-size'], positiveInt, 'a positive integer') ?? 224,
      weights: mode === 'scratch' ? 'none' : weights,
      epochs: epochs ?? 5,
      batchSize: num('batch-size', values['batch-size'], positiveInt, 'a positive integer') ?? 128,
      lr: lr ?? defaults.lr,
      headLrMult: headLrMult ?? defaults.headLrMult,
      weightDecay: num('weight-decay', values['weight-decay'], nonNegative, 'a number >= 0') ?? 1e-3,
      momentum: num('momentum', values.momentum, nonNegative, 'a number >= 0') ?? 0,
      seed: num('seed', values.seed, Number.isSafeInteger, 'an integer') ?? 0,
      maxBatches: maxBatches ?? null,
      out: values.out ?? null,
      json,
      cacheDir: values['cache-dir'] ?? null,
      workers,
      devices: devices ?? 1,
      accumulate: num('accumulate', values.accumulate, positiveInt, 'a positive integer') ?? 1,
    },
  };
}

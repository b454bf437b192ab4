// The Node half of the library API: fit() over image folders on disk (torchvision's ImageFolder layout, decoded with
// sharp, the recipe's transforms), weights saved as the CLI saves them, images decoded from files.
import { DataLoader, DatasetError, decodeImage, evalTransform, ImageFolder, trainTransform, type RgbImage } from '../data/index.js';
import type { ResNet } from '../nn/resnet.js';
import type { SGD } from '../nn/sgd.js';
import { BatchError, fit } from '../train/checked.js';
import type { BatchProgress, EpochMetrics, HostBatch } from '../train/fit.js';
import { classNamesMetadata, imageSizeMetadata } from '../weights/classes.js';
import { writeSafetensorsFile } from './weights-file.js';

export interface FitImageFoldersOptions {
  /** A folder with one sub-folder of images per class (torchvision's ImageFolder), or an ImageFolder. */
  train: string | ImageFolder;
  /** The test images, with the same class folders. */
  test: string | ImageFolder;
  epochs: number;
  batchSize: number;
  /** Side of the training crops (RandomResizedCrop) and of the test's centre crops. */
  imageSize: number;
  /** Shuffling and augmentation seed (default 0). */
  seed?: number;
  /** At most this many training batches an epoch. */
  maxBatches?: number;
  /** Decoding worker threads (default 0: sharp's own threads). */
  workers?: number;
  onEpoch?: (m: EpochMetrics) => void | Promise<void>;
  onBatch?: (p: BatchProgress) => void;
}

export interface FitResult {
  /** The class names, in label order (the sorted class folder names). */
  classes: string[];
  history: EpochMetrics[];
}

function folder(f: string | ImageFolder, what: string): ImageFolder {
  if (typeof f !== 'string') return f;
  try {
    return new ImageFolder(f);
  } catch (e) {
    if (e instanceof DatasetError) throw new DatasetError(`fitImageFolders: ${what}: ${e.message}`, e.path);
    throw e;
  }
}

async function* limited(batches: AsyncIterable<HostBatch>, max: number | undefined): AsyncGenerator<HostBatch> {
  let n = 0;
  for await (const b of batches) {
    if (max !== undefined && n++ >= max) break;
    yield b;
  }
}

/**
 * Trains `model` with `optimizer` on an image folder and evaluates on another after every epoch, as
 * `npm run finetune` does (d2l's train_ch13, torchvision's transforms at `imageSize`). The folders' classes must be
 * the same and as many as the model's head has outputs.
 */
export async function fitImageFolders(model: ResNet, optimizer: SGD, options: FitImageFoldersOptions): Promise<FitResult> {
  const train = folder(options.train, 'train');
  const test = folder(options.test, 'test');
  if (train.classes.join('\n') !== test.classes.join('\n')) {
    throw new DatasetError(`fitImageFolders: the train classes (${train.classes.join(', ')}) in ${train.root} and the test classes (${test.classes.join(', ')}) in ${test.root} differ`, test.root);
  }
  const heads = model.fc.outFeatures;
  if (heads !== train.classes.length) {
    throw new BatchError(
      `fitImageFolders: ${train.root} has ${train.classes.length} classes (${train.classes.join(', ')}), the model's head ${heads} outputs; ` +
        `give it a new head first: replaceHead(model, ${train.classes.length})`,
    );
  }
  const seed = options.seed ?? 0;
  const trainLoader = new DataLoader(train, { batchSize: options.batchSize, shuffle: true, seed, transform: trainTransform(options.imageSize), workers: options.workers });
  const testLoader = new DataLoader(test, { batchSize: options.batchSize, transform: evalTransform(options.imageSize), workers: options.workers });
  try {
    const history = await fit(model, optimizer, {
      epochs: options.epochs,
      imageSize: options.imageSize,
      trainBatches: (epoch) => limited(trainLoader.epoch(epoch), options.maxBatches),
      testBatches: () => testLoader.epoch(0),
      onEpoch: options.onEpoch,
      onBatch: options.onBatch,
    });
    return { classes: [...train.classes], history };
  } finally {
    await trainLoader.close();
    await testLoader.close();
  }
}

export interface SaveModelOptions {
  /** Class names in label order (safetensors metadata `classes`, as `npm run finetune` writes). */
  classes: readonly string[];
  /** The size the model was trained at (metadata `image_size`; `npm run predict` evaluates at it). */
  imageSize: number;
}

/** Writes the model's state dict as safetensors (torchvision names) with its classes and image size, atomically. */
export async function saveModel(model: ResNet, path: string, options: SaveModelOptions): Promise<void> {
  if (options.classes.length !== model.fc.outFeatures) {
    throw new BatchError(`saveModel ${path}: ${options.classes.length} class names for a ${model.fc.outFeatures}-way head`);
  }
  const dict = await model.stateDict();
  await writeSafetensorsFile(path, dict, { format: 'pt', ...classNamesMetadata(options.classes), ...imageSizeMetadata(options.imageSize) });
}

/** Decodes an image file (JPEG, PNG, WebP, TIFF, BMP, PPM...) to 8-bit RGB. */
export function loadImage(path: string): Promise<RgbImage> {
  return decodeImage(path);
}

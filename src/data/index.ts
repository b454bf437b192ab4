export { Random, deriveSeed } from '../util/random.js';
export type { RgbImage, Box } from './image.js';
export { crop, flipHorizontal } from './image.js';
export { resizeBilinear } from './resample.js';
export { decodeImage, decodeImageBuffer, DecodeError } from './decode.js';
export {
  Compose,
  RandomResizedCrop,
  RandomHorizontalFlip,
  Resize,
  CenterCrop,
  ToTensor,
  Normalize,
  resizedCrop,
  centerCropBox,
  resizedShape,
  roundHalfEven,
  transformFromSpec,
  isSerializable,
  trainTransform,
  evalTransform,
  isTensor,
  IMAGENET_MEAN,
  IMAGENET_STD,
} from './transforms.js';
export type { Transform, TransformSpec, TensorImage, Sample } from './transforms.js';
export { ImageFolder, IMG_EXTENSIONS, DatasetError, compareCodePoints, hasImageExtension } from './image-folder.js';
export type { ImageSample, ImageFolderOptions } from './image-folder.js';
export { DataLoader } from './loader.js';
export type { Batch, DataLoaderOptions, RunReport, SkippedImage } from './loader.js';
export { loadSample } from './sample.js';
export { download, downloadExtract, verifyFile, defaultCacheDir, fileNameOf, DATA_HUB, DownloadError, ChecksumError } from './download.js';
export type { HubEntry, DownloadOptions } from './download.js';
export { extractZip, unsafeEntryReason, UnsafeZipError } from './zip.js';

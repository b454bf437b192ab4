export { Random, deriveSeed } from '../util/random.js';
// The pure image code lives in src/image (shared with the browser page); re-exported here as before.
export type { RgbImage, Box, Transform, TransformSpec, TensorImage, Sample } from '../image/index.js';
export {
  crop,
  flipHorizontal,
  resizeBilinear,
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
} from '../image/index.js';
export { decodeImage, decodeImageBuffer, DecodeError } from './decode.js';
export { ImageFolder, IMG_EXTENSIONS, DatasetError, compareCodePoints, hasImageExtension } from './image-folder.js';
export type { ImageSample, ImageFolderOptions } from './image-folder.js';
export { DataLoader } from './loader.js';
export type { Batch, DataLoaderOptions, RunReport, SkippedImage } from './loader.js';
export { loadSample } from './sample.js';
export { download, downloadExtract, verifyFile, defaultCacheDir, fileNameOf, DATA_HUB, DownloadError, ChecksumError } from './download.js';
export type { HubEntry, DownloadOptions } from './download.js';
export { extractZip, unsafeEntryReason, UnsafeZipError } from './zip.js';

export { Random, deriveSeed } from './random.ts';
export type { RgbImage, Box } from './image.ts';
export { crop, flipHorizontal } from './image.ts';
export { resizeBilinear } from './resample.ts';
export { decodeImage, decodeImageBuffer, DecodeError } from './decode.ts';
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
} from './transforms.ts';
export type { Transform, TransformSpec, TensorImage, Sample } from './transforms.ts';
export { ImageFolder, IMG_EXTENSIONS, DatasetError, compareCodePoints, hasImageExtension } from './image-folder.ts';
export type { ImageSample, ImageFolderOptions } from './image-folder.ts';
export { DataLoader } from './loader.ts';
export type { Batch, DataLoaderOptions, RunReport, SkippedImage } from './loader.ts';
export { loadSample } from './sample.ts';
export { download, downloadExtract, verifyFile, defaultCacheDir, fileNameOf, DATA_HUB, DownloadError, ChecksumError } from './download.ts';
export type { HubEntry, DownloadOptions } from './download.ts';
export { extractZip, unsafeEntryReason, UnsafeZipError } from './zip.ts';

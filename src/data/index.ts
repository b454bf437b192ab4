// Node's data pipeline: decoding with sharp, image folders, the prefetching loader, downloads and zips. The pure image
// code (images, resampling, torchvision's transforms) has one index, src/image/index.ts, re-exported whole here.
export * from '../image/index.js';
export { decodeImage, decodeImageBuffer, DecodeError } from './decode.js';
export { ImageFolder, IMG_EXTENSIONS, DatasetError, compareCodePoints, hasImageExtension } from './image-folder.js';
export type { ImageSample, ImageFolderOptions } from './image-folder.js';
export { DataLoader } from './loader.js';
export type { Batch, DataLoaderOptions, RunReport, SkippedImage } from './loader.js';
export { loadSample } from './sample.js';
export { download, downloadExtract, verifyFile, defaultCacheDir, fileNameOf, DATA_HUB, DownloadError, ChecksumError } from './download.js';
export type { HubEntry, DownloadOptions } from './download.js';
export { extractZip, unsafeEntryReason, UnsafeZipError } from './zip.js';

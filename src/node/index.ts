/**
 * hotdog-webgpu/node, the Node entry: everything of the web-standard entry, plus Dawn's WebGPU (`createNodeRuntime`),
 * weight files on disk, image folders decoded with sharp, fit() over them, downloads.
 *
 * @module hotdog-webgpu/node
 */
export * from '../index.js';
export { createNodeRuntime, createNodeRuntimes, destroyNodeRuntime, acquireNodeGpu, type NodeDeviceOptions } from './engine-node.js';
export type { NodeGpuOptions } from './webgpu-node.js';
export { nodeTuningStore } from './tuning-store.js';
export { readStateDictFile, readSafetensorsFile, writeSafetensorsFile, WeightFileError } from './weights-file.js';
export { fitImageFolders, saveModel, loadImage, type FitImageFoldersOptions, type FitResult, type SaveModelOptions } from './training.js';
export {
  ImageFolder,
  DataLoader,
  DatasetError,
  DecodeError,
  decodeImage,
  decodeImageBuffer,
  IMG_EXTENSIONS,
  download,
  downloadExtract,
  defaultCacheDir,
  DATA_HUB,
  DownloadError,
  ChecksumError,
  type ImageSample,
  type ImageFolderOptions,
  type Batch,
  type DataLoaderOptions,
  type RunReport,
  type DownloadOptions,
  type HubEntry,
} from '../data/index.js';

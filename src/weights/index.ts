export * from './state-dict.js';
export { readPth, looksLikeZip, looksLikeLegacyTorch, type ReadPthOptions } from './pth.js';
export { parseSafetensors, serializeSafetensors, looksLikeSafetensors, type Safetensors } from './safetensors.js';
export { unpickle, PickleError } from './pickle.js';
export { detectWeightFormat, readWeightBytes, type WeightFileFormat } from './format.js';
export { CLASSES_METADATA_KEY, classNamesMetadata, readClassNames } from './classes.js';

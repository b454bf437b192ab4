export * from './state-dict.js';
export { readPth, looksLikeZip, looksLikeLegacyTorch, type ReadPthOptions } from './pth.js';
export { parseSafetensors, serializeSafetensors, looksLikeSafetensors, type Safetensors } from './safetensors.js';
export { unpickle, PickleError } from './pickle.js';

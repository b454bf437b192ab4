export * from './state-dict.ts';
export { readPth, looksLikeZip, looksLikeLegacyTorch, type ReadPthOptions } from './pth.ts';
export { parseSafetensors, serializeSafetensors, looksLikeSafetensors, type Safetensors } from './safetensors.ts';
export { unpickle, PickleError } from './pickle.ts';

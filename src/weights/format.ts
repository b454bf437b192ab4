// Which weight format some bytes are, and reading them whatever it is. Web-standard: a page reads a picked or
// fetched file with this, Node's src/node/weights-file.ts reads files from disk with it.
import { looksLikeLegacyTorch, looksLikeZip, readPth, type ReadPthOptions } from './pth.js';
import { looksLikeSafetensors, parseSafetensors, type Safetensors } from './safetensors.js';
import { WeightFormatError } from './state-dict.js';

export type WeightFileFormat = 'pth' | 'safetensors';

/** Content first (zip / pickle magic, safetensors header), then the file name's extension; undefined if neither tells. */
export function detectWeightFormat(name: string, bytes: Uint8Array): WeightFileFormat | undefined {
  if (looksLikeZip(bytes) || looksLikeLegacyTorch(bytes)) return 'pth';
  if (looksLikeSafetensors(bytes)) return 'safetensors';
  if (bytes[0] === 0x80) return 'pth'; // a bare pickle: the pth reader explains what is wrong
  const ext = /\.[^./\\]*$/.exec(name)?.[0].toLowerCase();
  if (ext === '.safetensors') return 'safetensors';
  if (ext === '.pth' || ext === '.pt' || ext === '.bin' || ext === '.ckpt') return 'pth';
  return undefined;
}

/** A torch.save checkpoint (.pth/.pt) or a safetensors file, as tensors plus metadata (safetensors only). */
export function readWeightBytes(name: string, bytes: Uint8Array, options: ReadPthOptions = {}): Safetensors & { format: WeightFileFormat } {
  const format = detectWeightFormat(name, bytes);
  switch (format) {
    case 'pth':
      return { format, tensors: readPth(bytes, options) };
    case 'safetensors':
      return { format, ...parseSafetensors(bytes) };
    case undefined:
      throw new WeightFormatError(
        bytes.length === 0 ? 'file is empty' : 'neither a PyTorch checkpoint (.pth) nor a safetensors file (not a zip, no safetensors header)',
      );
  }
}

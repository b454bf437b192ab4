// Node file access for weight files; the parsing itself lives in src/weights (browser-safe).

import { readFile } from 'node:fs/promises';

import { AtomicWriteError, writeFileAtomic } from './atomic-file.js';

import { detectWeightFormat } from '../weights/format.js';
import { readPth, type ReadPthOptions } from '../weights/pth.js';
import { parseSafetensors, serializeSafetensors, type Safetensors } from '../weights/safetensors.js';
import type { StateDict } from '../weights/state-dict.js';

/** Any failure reading or writing a weight file; the message starts with the file's path. */
export class WeightFileError extends Error {
  override name = 'WeightFileError';
  constructor(
    readonly path: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${path}: ${message}`, options);
  }
}

function wrap(path: string, e: unknown): WeightFileError {
  if (e instanceof WeightFileError) return e;
  return new WeightFileError(path, e instanceof Error ? e.message : String(e), { cause: e });
}

export { detectWeightFormat, type WeightFileFormat } from '../weights/format.js';

/** Reads a torch.save zip checkpoint (.pth/.pt) or a safetensors file into a state dict. */
export async function readStateDictFile(path: string, options: ReadPthOptions = {}): Promise<StateDict> {
  let bytes: Uint8Array;
  try {
    const buf = await readFile(path);
    bytes = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength); // a plain view, not a Buffer
  } catch (e) {
    throw new WeightFileError(path, `cannot read file: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  try {
    switch (detectWeightFormat(path, bytes)) {
      case 'pth':
        return readPth(bytes, options);
      case 'safetensors':
        return parseSafetensors(bytes).tensors;
      case undefined:
        throw new WeightFileError(
          path,
          bytes.length === 0
            ? 'file is empty'
            : 'neither a PyTorch zip checkpoint nor a safetensors file (not a zip, no safetensors header)',
        );
    }
  } catch (e) {
    throw wrap(path, e);
  }
}

/** Reads a safetensors file with its metadata (a checkpoint, or weights with class names). */
export async function readSafetensorsFile(path: string): Promise<Safetensors> {
  let bytes: Uint8Array;
  try {
    const buf = await readFile(path);
    bytes = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  } catch (e) {
    throw new WeightFileError(path, `cannot read file: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  try {
    return parseSafetensors(bytes);
  } catch (e) {
    throw wrap(path, e);
  }
}

/**
 * Writes `tensors` as safetensors, atomically: the bytes go to a temporary file in the same
 * directory, which is fsynced and then renamed over `path`. On failure the temporary file is
 * removed and an existing file at `path` is left as it was.
 */
export async function writeSafetensorsFile(
  path: string,
  tensors: StateDict,
  metadata?: Record<string, string>,
): Promise<void> {
  let bytes: Uint8Array;
  try {
    bytes = serializeSafetensors(tensors, metadata);
  } catch (e) {
    throw wrap(path, e);
  }
  try {
    await writeFileAtomic(path, bytes);
  } catch (e) {
    if (e instanceof AtomicWriteError) throw new WeightFileError(path, `cannot write file: ${e.reason}`, { cause: e });
    throw e;
  }
}

// Node file access for weight files; the parsing itself lives in src/nn/weights (browser-safe).

import { randomBytes } from 'node:crypto';
import { open, readFile, rename, unlink } from 'node:fs/promises';
import { basename, dirname, extname, join } from 'node:path';

import { looksLikeLegacyTorch, looksLikeZip, readPth, type ReadPthOptions } from '../nn/weights/pth.js';
import { looksLikeSafetensors, parseSafetensors, serializeSafetensors } from '../nn/weights/safetensors.js';
import type { StateDict } from '../nn/weights/state-dict.js';

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

export type WeightFileFormat = 'pth' | 'safetensors';

/** Content first (zip / pickle magic, safetensors header), then the extension; undefined if neither tells. */
export function detectWeightFormat(path: string, bytes: Uint8Array): WeightFileFormat | undefined {
  if (looksLikeZip(bytes) || looksLikeLegacyTorch(bytes)) return 'pth';
  if (looksLikeSafetensors(bytes)) return 'safetensors';
  if (bytes[0] === 0x80) return 'pth'; // a bare pickle: the pth reader explains what is wrong
  const ext = extname(path).toLowerCase();
  if (ext === '.safetensors') return 'safetensors';
  if (ext === '.pth' || ext === '.pt' || ext === '.bin' || ext === '.ckpt') return 'pth';
  return undefined;
}

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
  await writeFileAtomic(path, bytes);
}

export async function writeFileAtomic(path: string, bytes: Uint8Array): Promise<void> {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  let created = false;
  try {
    const fh = await open(tmp, 'wx');
    created = true;
    try {
      let off = 0;
      while (off < bytes.length) {
        const { bytesWritten } = await fh.write(bytes, off, bytes.length - off);
        if (bytesWritten <= 0) throw new Error('write made no progress');
        off += bytesWritten;
      }
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
    created = false;
  } catch (e) {
    if (created) await unlink(tmp).catch(() => undefined);
    throw new WeightFileError(path, `cannot write file: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  await syncDirectory(dir);
}

/** Makes the rename durable. Best effort: some platforms cannot open or fsync a directory. */
async function syncDirectory(dir: string): Promise<void> {
  try {
    const fh = await open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch {
    // ignored: the data itself was fsynced before the rename
  }
}

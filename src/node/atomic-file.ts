// Atomic file writes: the bytes go to a temporary file in the same directory, which is fsynced and then renamed
// over the target, so a reader sees the old file or the new one, never a mix; a failure (disk full, I/O error)
// leaves the old file as it was and removes the temporary one.
import { randomBytes } from 'node:crypto';
import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

export class AtomicWriteError extends Error {
  override name = 'AtomicWriteError';
  constructor(
    readonly path: string,
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(`${path}: cannot write file: ${reason}`, options);
  }
}

export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
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
    throw new AtomicWriteError(path, e instanceof Error ? e.message : String(e), { cause: e });
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

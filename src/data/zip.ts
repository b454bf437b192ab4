/**
 * Safe zip extraction (yauzl, streaming from the file on disk): entries with absolute paths,
 * drive letters or '..' segments, and symbolic links, are refused, and the whole extraction is
 * abandoned, so an archive can never write outside the destination folder.
 */
import { createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname, isAbsolute, relative, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import yauzl from 'yauzl';

export class UnsafeZipError extends Error {
  constructor(
    readonly zipFile: string,
    readonly entry: string,
    reason: string,
  ) {
    super(`refusing to extract ${zipFile}: entry '${entry}' ${reason}`);
    this.name = 'UnsafeZipError';
  }
}

const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;

/** Why an entry name is unsafe, or null. */
export function unsafeEntryReason(name: string): string | null {
  if (name.includes('\0')) return 'contains a NUL byte';
  if (name.startsWith('/') || name.startsWith('\\') || /^[A-Za-z]:/.test(name) || isAbsolute(name)) return 'has an absolute path';
  if (name.split(/[\\/]/).includes('..')) return "has a '..' path segment";
  return null;
}

function openZip(file: string): Promise<yauzl.ZipFile> {
  return new Promise((res, rej) => {
    yauzl.open(file, { lazyEntries: true, autoClose: true, validateEntrySizes: true }, (err, zip) => (err ? rej(err) : res(zip)));
  });
}

function openEntry(zip: yauzl.ZipFile, entry: yauzl.Entry): Promise<NodeJS.ReadableStream> {
  return new Promise((res, rej) => zip.openReadStream(entry, (err, stream) => (err ? rej(err) : res(stream))));
}

/** Extracts every entry of `zipFile` under `dest` (created if needed). Returns the number of files written. */
export async function extractZip(zipFile: string, dest: string): Promise<number> {
  const root = resolve(dest);
  await mkdir(root, { recursive: true });
  let zip: yauzl.ZipFile;
  try {
    zip = await openZip(zipFile);
  } catch (err) {
    throw new Error(`cannot read zip file ${zipFile}: ${(err as Error).message}`, { cause: err });
  }
  let files = 0;
  await new Promise<void>((done, fail) => {
    let finished = false;
    const stop = (err: unknown): void => {
      if (finished) return;
      finished = true;
      zip.close();
      if (err instanceof UnsafeZipError) fail(err);
      else {
        const msg = (err as Error).message ?? String(err);
        // yauzl's own name checks ("invalid relative path", "absolute path") are refusals too.
        if (/invalid relative path|absolute path|invalid characters/.test(msg)) fail(new UnsafeZipError(zipFile, msg.replace(/^[^:]*:\s*/, ''), `is unsafe (${msg})`));
        else fail(new Error(`cannot extract ${zipFile}: ${msg}`, { cause: err }));
      }
    };
    zip.on('error', stop);
    zip.on('end', () => {
      if (!finished) {
        finished = true;
        done();
      }
    });
    zip.on('entry', (entry: yauzl.Entry) => {
      const name = entry.fileName;
      const reason = unsafeEntryReason(name);
      if (reason) return stop(new UnsafeZipError(zipFile, name, reason));
      const mode = (entry.externalFileAttributes >>> 16) & S_IFMT;
      if (mode === S_IFLNK) return stop(new UnsafeZipError(zipFile, name, 'is a symbolic link'));
      const target = resolve(root, name);
      const rel = relative(root, target);
      if (rel.startsWith('..') || isAbsolute(rel)) return stop(new UnsafeZipError(zipFile, name, 'would be written outside the destination'));
      const isDir = name.endsWith('/') || name.endsWith('\\');
      (async () => {
        if (isDir) {
          await mkdir(target, { recursive: true });
        } else {
          await mkdir(dirname(target), { recursive: true });
          const stream = await openEntry(zip, entry);
          await pipeline(stream, createWriteStream(target, { flags: 'wx' }));
          files++;
        }
      })().then(() => {
        if (!finished) zip.readEntry();
      }, stop);
    });
    zip.readEntry();
  });
  return files;
}

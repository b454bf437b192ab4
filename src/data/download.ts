/**
 * Downloads with a checksum and a cache, after d2l's DATA_HUB:
 * - named entries (URL + checksum): `hotdog` (d2l's hotdog.zip, sha1) and `resnet18`
 *   (torchvision's ImageNet weights, whose file name carries the first hex digits of its sha256,
 *   checked as torch.hub does);
 * - a cache folder: `cacheDir` option, else $HOTDOG_CACHE_DIR, else <user cache dir>/hotdog-webgpu;
 * - a cached file is reused, without any request, when its checksum is right;
 * - a download goes to a temporary file in the cache folder, is verified, then renamed into place,
 *   so the cache never holds a partial or wrong file;
 * - a progress bar on stderr for long downloads (when stderr is a terminal, or on request);
 * - without network, an error saying what could not be fetched, from where, and where to put the
 *   file by hand; a local file can also be passed directly (`localPath`).
 * `downloadExtract` also unpacks zips (safely, see zip.ts) into the cache and reuses the result.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, writeFile, readdir } from 'node:fs/promises';
import { homedir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import cliProgress from 'cli-progress';
import { extractZip } from './zip.js';

export interface HubEntry {
  /** Short name, e.g. 'hotdog'. */
  readonly name: string;
  readonly url: string;
  /** File name in the cache (default: the URL's last path segment). */
  readonly fileName?: string;
  /** Full sha1 hex digest of the file. */
  readonly sha1?: string;
  /** Full sha256 hex digest, or its first hex digits (torch.hub's check_hash). */
  readonly sha256?: string;
}

export const DATA_HUB: Readonly<Record<'hotdog' | 'resnet18', HubEntry>> = {
  hotdog: {
    name: 'hotdog',
    url: 'http://d2l-data.s3-accelerate.amazonaws.com/hotdog.zip',
    sha1: 'fba480ffa8aa7e0febbb511d181409f899b9baa5',
  },
  resnet18: {
    name: 'resnet18',
    url: 'https://download.pytorch.org/models/resnet18-f37072fd.pth',
    sha256: 'f37072fd',
  },
};

export class DownloadError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'DownloadError';
  }
}

export class ChecksumError extends Error {
  constructor(
    readonly file: string,
    readonly expected: string,
    readonly actual: string,
    readonly algorithm: 'sha1' | 'sha256',
  ) {
    super(`checksum mismatch for ${file}: ${algorithm} is ${actual}, expected ${algorithm === 'sha256' && expected.length < 64 ? `a digest starting with ${expected}` : expected}`);
    this.name = 'ChecksumError';
  }
}

export interface DownloadOptions {
  /** Cache folder (default: defaultCacheDir()). */
  readonly cacheDir?: string;
  /** Use this local file instead of downloading (it is verified like a download). */
  readonly localPath?: string;
  /** Progress bar on stderr: default only when stderr is a terminal and the file is over 1 MB. */
  readonly progress?: boolean;
  /** fetch implementation (default: the global fetch). */
  readonly fetch?: typeof fetch;
  readonly signal?: AbortSignal;
  /** Called with a line of text for each real download (default: stderr when it is a terminal). */
  readonly log?: (line: string) => void;
}

/** <user cache dir>/hotdog-webgpu, or $HOTDOG_CACHE_DIR. */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env, platform: NodeJS.Platform = process.platform): string {
  if (env.HOTDOG_CACHE_DIR) return resolve(env.HOTDOG_CACHE_DIR);
  if (platform === 'win32') return join(env.LOCALAPPDATA ?? join(homedir(), 'AppData', 'Local'), 'hotdog-webgpu', 'Cache');
  if (platform === 'darwin') return join(homedir(), 'Library', 'Caches', 'hotdog-webgpu');
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'hotdog-webgpu');
}

function entryOf(nameOrEntry: string | HubEntry): HubEntry {
  if (typeof nameOrEntry !== 'string') return nameOrEntry;
  const e = (DATA_HUB as Record<string, HubEntry>)[nameOrEntry];
  if (!e) throw new Error(`unknown DATA_HUB entry '${nameOrEntry}' (known: ${Object.keys(DATA_HUB).join(', ')})`);
  return e;
}

export function fileNameOf(entry: HubEntry): string {
  return entry.fileName ?? basename(new URL(entry.url).pathname);
}

function checksumOf(entry: HubEntry): { algorithm: 'sha1' | 'sha256'; expected: string } {
  if (entry.sha1) return { algorithm: 'sha1', expected: entry.sha1.toLowerCase() };
  if (entry.sha256) return { algorithm: 'sha256', expected: entry.sha256.toLowerCase() };
  throw new Error(`DATA_HUB entry '${entry.name}' has no checksum`);
}

function describeChecksum(entry: HubEntry): string {
  const { algorithm, expected } = checksumOf(entry);
  return algorithm === 'sha256' && expected.length < 64 ? `sha256 starting with ${expected}` : `${algorithm} ${expected}`;
}

function matches(digest: string, expected: string, algorithm: 'sha1' | 'sha256'): boolean {
  return algorithm === 'sha256' && expected.length < 64 ? digest.startsWith(expected) : digest === expected;
}

async function hashFile(file: string, algorithm: 'sha1' | 'sha256'): Promise<string> {
  const h = createHash(algorithm);
  await pipeline(createReadStream(file), h);
  return h.digest('hex');
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch {
    return false;
  }
}

/** Verifies a file against an entry's checksum; throws ChecksumError. */
export async function verifyFile(file: string, entry: HubEntry): Promise<void> {
  const { algorithm, expected } = checksumOf(entry);
  const digest = await hashFile(file, algorithm);
  if (!matches(digest, expected, algorithm)) throw new ChecksumError(file, expected, digest, algorithm);
}

function causeText(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = err.cause instanceof Error ? `: ${(err.cause as NodeJS.ErrnoException).code ?? err.cause.message}` : '';
  return `${err.message}${cause}`;
}

function makeBar(show: boolean, name: string, total: number | undefined): { update(n: number): void; stop(): void } {
  if (!show || !total) return { update: () => undefined, stop: () => undefined };
  const bar = new cliProgress.SingleBar(
    { format: `${name} [{bar}] {percentage}% | {value}/{total} bytes | {eta}s left`, stream: process.stderr, hideCursor: true },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total, 0);
  return { update: (n) => bar.update(n), stop: () => bar.stop() };
}

/**
 * Returns the path of a verified copy of the entry's file: `localPath` if given, else the cached
 * file if valid, else a fresh download into the cache.
 */
export async function download(nameOrEntry: string | HubEntry, options: DownloadOptions = {}): Promise<string> {
  const entry = entryOf(nameOrEntry);
  const fileName = fileNameOf(entry);
  if (options.localPath) {
    const local = resolve(options.localPath);
    if (!(await exists(local))) throw new DownloadError(`local file ${local} for ${fileName} does not exist`);
    await verifyFile(local, entry);
    return local;
  }
  const cacheDir = resolve(options.cacheDir ?? defaultCacheDir());
  const target = join(cacheDir, fileName);
  const hint = `Put the file at ${target} by hand (${describeChecksum(entry)}) or pass a local path`;

  if (await exists(target)) {
    try {
      await verifyFile(target, entry);
      return target;
    } catch (err) {
      if (!(err instanceof ChecksumError)) throw err;
      // A stale or damaged cached file: download again.
    }
  }
  await mkdir(cacheDir, { recursive: true });
  const log = options.log ?? ((line: string) => (process.stderr.isTTY ? process.stderr.write(line + '\n') : undefined));
  log(`Downloading ${fileName} from ${entry.url} to ${target}`);

  const fetchImpl = options.fetch ?? fetch;
  let res: Response;
  try {
    res = await fetchImpl(entry.url, { signal: options.signal, redirect: 'follow' });
  } catch (err) {
    throw new DownloadError(`could not download ${fileName} from ${entry.url}: ${causeText(err)}. ${hint}`, { cause: err });
  }
  if (!res.ok || !res.body) {
    throw new DownloadError(`could not download ${fileName} from ${entry.url}: HTTP ${res.status} ${res.statusText}. ${hint}`);
  }
  const lengthHeader = res.headers.get('content-length');
  const total = lengthHeader !== null && /^\d+$/.test(lengthHeader) ? Number(lengthHeader) : undefined;
  const { algorithm, expected } = checksumOf(entry);
  const hash = createHash(algorithm);
  const tmp = join(cacheDir, `.${fileName}.${process.pid}.${randomBytes(6).toString('hex')}.part`);
  const bar = makeBar(options.progress ?? (process.stderr.isTTY === true && (total ?? 0) > 1 << 20), fileName, total);
  let received = 0;
  try {
    const body = Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>);
    const count = async function* (source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
      for await (const chunk of source) {
        received += chunk.length;
        hash.update(chunk);
        bar.update(received);
        yield chunk;
      }
    };
    await pipeline(body, count, createWriteStream(tmp, { flags: 'wx' }));
    if (total !== undefined && received !== total) throw new Error(`connection closed after ${received} of ${total} bytes`);
  } catch (err) {
    bar.stop();
    await rm(tmp, { force: true });
    const of = total !== undefined ? ` of ${total}` : '';
    throw new DownloadError(
      `could not download ${fileName} from ${entry.url}: the transfer was interrupted after ${received}${of} bytes (${causeText(err)}). ${hint}`,
      { cause: err },
    );
  }
  bar.stop();
  const digest = hash.digest('hex');
  if (!matches(digest, expected, algorithm)) {
    await rm(tmp, { force: true });
    throw new ChecksumError(`${fileName} downloaded from ${entry.url}`, expected, digest, algorithm);
  }
  await rename(tmp, target);
  return target;
}

const MARKER = '.hotdog-extracted';

/**
 * Downloads (or takes from `localPath` / the cache) a zip entry and extracts it into the cache,
 * d2l's download_extract: `<cacheDir>/<zip name without .zip>` is returned. When the archive holds
 * a single top-level folder of that name (hotdog.zip holds hotdog/), its content is that folder's.
 * An extraction is reused when it was made from a file with the same checksum.
 */
export async function downloadExtract(nameOrEntry: string | HubEntry, options: DownloadOptions = {}): Promise<string> {
  const entry = entryOf(nameOrEntry);
  const zipPath = await download(entry, options);
  const cacheDir = resolve(options.cacheDir ?? defaultCacheDir());
  const stem = fileNameOf(entry).replace(/\.zip$/i, '');
  const target = join(cacheDir, stem);
  const stamp = `${fileNameOf(entry)} ${describeChecksum(entry)}\n`;
  try {
    if ((await readFile(join(target, MARKER), 'utf8')) === stamp) return target;
  } catch {
    // not extracted yet
  }
  await mkdir(cacheDir, { recursive: true });
  const tmp = join(cacheDir, `.${stem}.${process.pid}.${randomBytes(6).toString('hex')}.extract`);
  try {
    await extractZip(zipPath, tmp);
    const top = await readdir(tmp, { withFileTypes: true });
    const only = top.length === 1 ? top[0] : undefined;
    const content = only && only.isDirectory() && only.name === stem ? join(tmp, stem) : tmp;
    await writeFile(join(content, MARKER), stamp);
    await rm(target, { recursive: true, force: true });
    await rename(content, target);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  return target;
}

import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { zipSync } from 'fflate';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ChecksumError, DATA_HUB, defaultCacheDir, download, downloadExtract, DownloadError, type HubEntry } from '../../src/data/download.js';
import { ImageFolder } from '../../src/data/image-folder.js';
import { UnsafeZipError } from '../../src/data/zip.js';

const sha1 = (b: Uint8Array): string => createHash('sha1').update(b).digest('hex');
const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

// A d2l-like archive: hotdog/{train,test}/{hotdog,not-hotdog}/*.png (contents need not be images here).
const goodZip = zipSync({
  'hotdog/train/hotdog/1.png': enc('a'),
  'hotdog/train/not-hotdog/2.png': enc('b'),
  'hotdog/test/hotdog/3.png': enc('c'),
  'hotdog/test/not-hotdog/4.png': enc('d'),
});
const evilZip = zipSync({ 'hotdog/ok.txt': enc('fine'), '../evil.txt': enc('escaped') });
// An absolute entry name, built from the temp dir so that the test would notice an escape.
const ABS_TARGET = join(tmpdir(), `hotdog-abs-evil-${process.pid}.txt`);
const absZip = zipSync({ [ABS_TARGET]: enc('escaped') });
const weights = Buffer.alloc(200_000, 7);

let server: Server;
let base: string;
const requests: string[] = [];
let cache: string;

beforeAll(async () => {
  server = createServer((req, res) => {
    requests.push(req.url ?? '');
    const send = (body: Uint8Array): void => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
      res.end(body);
    };
    switch (req.url) {
      case '/good/hotdog.zip':
      case '/bad/hotdog.zip':
        return send(req.url.startsWith('/bad') ? Buffer.concat([goodZip, Buffer.from('tampered')]) : goodZip);
      case '/evil/hotdog.zip':
        return send(evilZip);
      case '/abs/hotdog.zip':
        return send(absZip);
      case '/models/resnet18-test.pth':
        return send(weights);
      case '/cut/hotdog.zip': {
        // Announce the full length, send half, then drop the connection.
        res.writeHead(200, { 'content-length': goodZip.length });
        res.write(goodZip.subarray(0, goodZip.length >> 1), () => setTimeout(() => res.destroy(), 20));
        return;
      }
      default:
        res.writeHead(404);
        res.end('not found');
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise<void>((r) => server.close(() => r()));
});
beforeEach(() => {
  cache = mkdtempSync(join(tmpdir(), 'hub-cache-'));
  requests.length = 0;
  return () => rmSync(cache, { recursive: true, force: true });
});

const entry = (dir: string, hash = sha1(goodZip)): HubEntry => ({ name: 'hotdog', url: `${base}/${dir}/hotdog.zip`, sha1: hash });
const quiet = { log: () => undefined, progress: false };

describe('DATA_HUB', () => {
  it('lists the hot-dog data and the ResNet-18 weights', () => {
    expect(DATA_HUB.hotdog).toMatchObject({ url: 'http://d2l-data.s3-accelerate.amazonaws.com/hotdog.zip', sha1: 'fba480ffa8aa7e0febbb511d181409f899b9baa5' });
    expect(DATA_HUB.resnet18).toMatchObject({ url: 'https://download.pytorch.org/models/resnet18-f37072fd.pth', sha256: 'f37072fd' });
    expect(defaultCacheDir({ HOTDOG_CACHE_DIR: 'x/y' }, 'linux')).toMatch(/x[/\\]y$/);
    expect(defaultCacheDir({ XDG_CACHE_HOME: '/c' }, 'linux')).toBe(join('/c', 'hotdog-webgpu'));
  });
});

describe('download', () => {
  it('downloads, verifies and extracts a good zip, then reuses the cache without a request', async () => {
    const dir = await downloadExtract(entry('good'), { cacheDir: cache, ...quiet });
    expect(dir).toBe(join(cache, 'hotdog'));
    expect(readFileSync(join(cache, 'hotdog.zip'))).toEqual(Buffer.from(goodZip));
    expect(readFileSync(join(dir, 'train/hotdog/1.png'), 'utf8')).toBe('a');
    expect(ImageFolder.split(dir, 'test').classes).toEqual(['hotdog', 'not-hotdog']);
    expect(requests).toEqual(['/good/hotdog.zip']);
    expect(readdirSync(cache).sort()).toEqual(['hotdog', 'hotdog.zip']); // no temporary files left

    requests.length = 0;
    expect(await downloadExtract(entry('good'), { cacheDir: cache, ...quiet })).toBe(dir);
    expect(await download(entry('good'), { cacheDir: cache, ...quiet })).toBe(join(cache, 'hotdog.zip'));
    expect(requests).toEqual([]);
  });

  it('rejects a file with a bad checksum and leaves nothing in the cache', async () => {
    const err = await download(entry('bad'), { cacheDir: cache, ...quiet }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ChecksumError);
    expect((err as Error).message).toContain(`expected ${sha1(goodZip)}`);
    expect(readdirSync(cache)).toEqual([]);
  });

  it('replaces a damaged cached file', async () => {
    writeFileSync(join(cache, 'hotdog.zip'), 'garbage');
    expect(await download(entry('good'), { cacheDir: cache, ...quiet })).toBe(join(cache, 'hotdog.zip'));
    expect(requests).toEqual(['/good/hotdog.zip']);
    expect(sha1(readFileSync(join(cache, 'hotdog.zip')))).toBe(sha1(goodZip));
  });

  it('reports an interrupted transfer and leaves nothing in the cache', async () => {
    const err = await download(entry('cut'), { cacheDir: cache, ...quiet }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DownloadError);
    expect((err as Error).message).toMatch(/could not download hotdog\.zip from http:\/\/127\.0\.0\.1:\d+\/cut\/hotdog\.zip: the transfer was interrupted/);
    expect((err as Error).message).toContain(`Put the file at ${join(cache, 'hotdog.zip')} by hand`);
    expect(readdirSync(cache)).toEqual([]);
  });

  it("refuses a zip with a '../' entry or an absolute path, extracting nothing", async () => {
    const err = await downloadExtract(entry('evil', sha1(evilZip)), { cacheDir: cache, ...quiet }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnsafeZipError);
    expect((err as Error).message).toContain('../evil.txt');
    expect(existsSync(join(cache, '..', 'evil.txt'))).toBe(false);
    expect(readdirSync(cache)).toEqual(['hotdog.zip']); // the verified download stays, no extraction
    const absCache = mkdtempSync(join(tmpdir(), 'hub-abs-'));
    const abs = await downloadExtract(entry('abs', sha1(absZip)), { cacheDir: absCache, ...quiet }).catch((e: unknown) => e);
    rmSync(absCache, { recursive: true, force: true });
    expect(abs).toBeInstanceOf(UnsafeZipError);
    expect((abs as Error).message).toContain(ABS_TARGET);
    expect(existsSync(ABS_TARGET)).toBe(false);
  });

  it('says what could not be fetched and where to put it when offline', async () => {
    // A port nobody listens on.
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const offline: HubEntry = { name: 'hotdog', url: `http://127.0.0.1:${port}/hotdog.zip`, sha1: DATA_HUB.hotdog.sha1 };
    const err = await download(offline, { cacheDir: cache, ...quiet }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DownloadError);
    expect((err as Error).message).toBe(
      `could not download hotdog.zip from http://127.0.0.1:${port}/hotdog.zip: fetch failed: ECONNREFUSED. ` +
        `Put the file at ${join(cache, 'hotdog.zip')} by hand (sha1 fba480ffa8aa7e0febbb511d181409f899b9baa5) or pass a local path`,
    );
    const missing = await download(entry('nope'), { cacheDir: cache, ...quiet }).catch((e: unknown) => e);
    expect((missing as Error).message).toContain('HTTP 404');
  });

  it('accepts a local file, verified like a download', async () => {
    const local = join(cache, 'my-copy.zip');
    writeFileSync(local, goodZip);
    expect(await download(entry('good'), { localPath: local, cacheDir: cache, ...quiet })).toBe(local);
    const dir = await downloadExtract(entry('good'), { localPath: local, cacheDir: cache, ...quiet });
    expect(readFileSync(join(dir, 'test/not-hotdog/4.png'), 'utf8')).toBe('d');
    expect(requests).toEqual([]);
    writeFileSync(local, 'not the zip');
    await expect(download(entry('good'), { localPath: local, cacheDir: cache, ...quiet })).rejects.toBeInstanceOf(ChecksumError);
    await expect(download(entry('good'), { localPath: join(cache, 'none.zip'), ...quiet })).rejects.toThrow(/none\.zip .*does not exist/);
  });

  it("checks a sha256 prefix as torch.hub does, and shows progress on request", async () => {
    const prefix = sha256(weights).slice(0, 8);
    const e: HubEntry = { name: 'resnet18', url: `${base}/models/resnet18-test.pth`, sha256: prefix };
    const lines: string[] = [];
    const path = await download(e, { cacheDir: cache, progress: true, log: (l) => lines.push(l) });
    expect(path).toBe(join(cache, 'resnet18-test.pth'));
    expect(lines[0]).toContain(`Downloading resnet18-test.pth from ${base}/models/resnet18-test.pth`);
    const wrong: HubEntry = { ...e, sha256: prefix === '00000000' ? '11111111' : '00000000' };
    rmSync(path);
    const err = await download(wrong, { cacheDir: cache, ...quiet }).catch((x: unknown) => x);
    expect(err).toBeInstanceOf(ChecksumError);
    expect((err as Error).message).toContain(`a digest starting with ${wrong.sha256}`);
    expect(readdirSync(cache)).toEqual([]);
  });
});

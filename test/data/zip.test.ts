import { existsSync, lstatSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { zipSync } from 'fflate';
import { afterEach, describe, expect, it } from 'vitest';
import { extractZip, UnsafeZipError } from '../../src/data/zip.js';

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
// A Unix entry's mode sits in the high 16 bits of its external attributes (os 3 = Unix).
const unix = (mode: number) => ({ os: 3, attrs: (mode << 16) >>> 0 });

let dir: string;
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('extractZip', () => {
  it('extracts regular files and folders of a Unix archive', async () => {
    dir = mkdtempSync(join(tmpdir(), 'zip-'));
    const zip = join(dir, 'ok.zip');
    writeFileSync(zip, zipSync({ 'hotdog/train/a.txt': [enc('a'), unix(0o100644)], 'hotdog/test/': [new Uint8Array(0), unix(0o040755)] }));
    expect(await extractZip(zip, join(dir, 'out'))).toBe(1);
    expect(readFileSync(join(dir, 'out/hotdog/train/a.txt'), 'utf8')).toBe('a');
    expect(lstatSync(join(dir, 'out/hotdog/test')).isDirectory()).toBe(true);
  });

  it('refuses a symbolic-link entry, naming it, and writes no link', async () => {
    dir = mkdtempSync(join(tmpdir(), 'zip-'));
    const zip = join(dir, 'link.zip');
    // The link's target is its content; extracted as a link it would let a later entry write through it.
    writeFileSync(zip, zipSync({ 'hotdog/a.txt': [enc('a'), unix(0o100644)], 'hotdog/escape': [enc('../../outside'), unix(0o120777)] }));
    const out = join(dir, 'out');
    const err = await extractZip(zip, out).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnsafeZipError);
    expect((err as Error).message).toBe(`refusing to extract ${zip}: entry 'hotdog/escape' is a symbolic link`);
    expect(existsSync(join(out, 'hotdog/escape'))).toBe(false);
    expect(() => lstatSync(join(out, 'hotdog/escape'))).toThrow(/ENOENT/);
  });
});

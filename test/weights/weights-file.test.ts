import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { WeightFileError, readStateDictFile, writeSafetensorsFile } from '../../src/node/weights-file.js';
import { readPth } from '../../src/weights/pth.js';
import { describeDiff, fixture, fixturePath } from './helpers.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'weights-file-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function readErr(path: string): Promise<WeightFileError> {
  try {
    await readStateDictFile(path);
  } catch (e) {
    expect(e).toBeInstanceOf(WeightFileError);
    expect((e as Error).message.startsWith(`${path}: `)).toBe(true);
    return e as WeightFileError;
  }
  throw new Error('expected readStateDictFile to throw');
}

describe('readStateDictFile', () => {
  it('reads .pth and safetensors, choosing by content', async () => {
    const pth = await readStateDictFile(fixturePath('small.pth'));
    const st = await readStateDictFile(fixturePath('small.expected-f32.safetensors'));
    expect(describeDiff(pth, st)).toEqual([]);
    // Content wins over a misleading extension.
    const renamed = join(dir, 'really-a-pth.safetensors');
    await writeFile(renamed, fixture('small.pth'));
    expect((await readStateDictFile(renamed)).size).toBe(pth.size);
  });

  it('detects safetensors whose header length starts with the pickle PROTO byte 0x80', async () => {
    const json = JSON.stringify({ w: { dtype: 'U8', shape: [1], data_offsets: [0, 1] } });
    const header = new TextEncoder().encode(json.padEnd(128, ' '));
    const bytes = new Uint8Array(8 + 128 + 1);
    bytes[0] = 0x80; // header length 128, little-endian
    bytes.set(header, 8);
    bytes[136] = 42;
    const p = join(dir, 'weights.bin');
    await writeFile(p, bytes);
    expect([...(await readStateDictFile(p)).get('w')!.data]).toEqual([42]);
  });

  it('names the file in every error', async () => {
    const cases: [string, Uint8Array, RegExp][] = [
      ['cut.pth', fixture('small.pth').subarray(0, 3000), /truncated/],
      ['random.pth', new Uint8Array(256).map((_, i) => (i * 73 + 11) & 0xff), /not a zip archive \/ not a PyTorch checkpoint/],
      ['legacy.pth', fixture('legacy.pth'), /legacy torch\.save format \(pre-1\.6\)/],
      ['evil.pth', fixture('malicious.pth'), /pickle global os\.system is not allowed/],
      ['lying.safetensors', new Uint8Array([255, 0, 0, 0, 0, 0, 0, 0, 0x7b, 0x7d]), /header length 255 exceeds/],
      ['mystery.dat', new Uint8Array([1, 2, 3]), /neither a PyTorch zip checkpoint nor a safetensors file/],
      ['empty.pth', new Uint8Array(0), /file is empty/],
    ];
    for (const [name, bytes, re] of cases) {
      const p = join(dir, name);
      await writeFile(p, bytes);
      expect((await readErr(p)).message).toMatch(re);
    }
    expect((await readErr(join(dir, 'missing.pth'))).message).toMatch(/cannot read file: ENOENT/);
  });
});

describe('writeSafetensorsFile', () => {
  it('writes a file that reads back identically and leaves no temporary files', async () => {
    const sub = join(dir, 'ok');
    await mkdir(sub);
    const dict = readPth(fixture('small.pth'), { convertToFloat32: false });
    const target = join(sub, 'out.safetensors');
    await writeSafetensorsFile(target, dict, { format: 'pt' });
    await writeSafetensorsFile(target, dict, { format: 'pt' }); // overwrite via rename
    expect(describeDiff(await readStateDictFile(target, { convertToFloat32: false }), dict)).toEqual([]);
    expect(await readdir(sub)).toEqual(['out.safetensors']);
  });

  it('fails cleanly when the directory does not exist', async () => {
    const target = join(dir, 'no-such-dir', 'out.safetensors');
    await expect(writeSafetensorsFile(target, new Map())).rejects.toThrow(
      new RegExp(`^${escape(target)}: cannot write file: ENOENT`),
    );
  });

  it('removes its temporary file when the final rename fails', async () => {
    const sub = join(dir, 'rename-fails');
    await mkdir(join(sub, 'out.safetensors'), { recursive: true }); // a non-empty directory in the way
    await writeFile(join(sub, 'out.safetensors', 'keep'), 'x');
    const dict = readPth(fixture('small.pth'));
    await expect(writeSafetensorsFile(join(sub, 'out.safetensors'), dict)).rejects.toThrow(/cannot write file/);
    expect(await readdir(sub)).toEqual(['out.safetensors']);
  });

  it('does not touch an existing file when serialization fails', async () => {
    const sub = join(dir, 'bad-dict');
    await mkdir(sub);
    const target = join(sub, 'out.safetensors');
    await writeFile(target, 'previous contents');
    const bad = new Map([['w', { dtype: 'float32' as const, shape: [5], data: new Float32Array(2) }]]);
    await expect(writeSafetensorsFile(target, bad)).rejects.toThrow(/needs 5 elements but data has 2/);
    expect(await readFile(target, 'utf8')).toBe('previous contents');
    expect(await readdir(sub)).toEqual(['out.safetensors']);
  });
});

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

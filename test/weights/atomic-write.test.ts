// Simulates a write that fails half way (disk full, I/O error) and an fsync that fails: the
// target must keep its previous contents and no partial or temporary file may remain.
import type { FileHandle } from 'node:fs/promises';

import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

const failure = vi.hoisted(() => ({ mode: 'none' as 'none' | 'write' | 'sync' }));

vi.mock('node:fs/promises', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs/promises')>();
  const open: typeof real.open = async (...args: Parameters<typeof real.open>) => {
    const fh = await real.open(...args);
    if (failure.mode === 'none' || args[1] !== 'wx') return fh;
    return new Proxy(fh, {
      get(target, prop, receiver): unknown {
        if (prop === 'write' && failure.mode === 'write') {
          return async (buf: Uint8Array, off: number, len: number) => {
            await target.write(buf, off, Math.max(1, len >> 1)); // a partial write reaches the disk
            throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
          };
        }
        if (prop === 'sync' && failure.mode === 'sync') {
          return async () => {
            throw Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' });
          };
        }
        const v: unknown = Reflect.get(target, prop, receiver);
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    }) as FileHandle;
  };
  return { ...real, default: { ...real, open }, open };
});

const { mkdtemp, readFile, readdir, rm, writeFile } = await import('node:fs/promises');
const { tmpdir } = await import('node:os');
const { join } = await import('node:path');
const { writeSafetensorsFile } = await import('../../src/node/weights-file.js');

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'atomic-write-'));
});
afterAll(async () => {
  failure.mode = 'none';
  await rm(dir, { recursive: true, force: true });
});

const dict = new Map([['w', { dtype: 'float32' as const, shape: [1024], data: new Float32Array(1024).fill(1.5) }]]);

describe('writeSafetensorsFile under I/O failure', () => {
  for (const mode of ['write', 'sync'] as const) {
    it(`keeps the old file and leaves no partial file when ${mode} fails`, async () => {
      const target = join(dir, `${mode}.safetensors`);
      await writeFile(target, 'previous contents');
      failure.mode = mode;
      try {
        await expect(writeSafetensorsFile(target, dict)).rejects.toThrow(
          new RegExp(`${mode}.safetensors: cannot write file: (ENOSPC|EIO)`),
        );
      } finally {
        failure.mode = 'none';
      }
      expect(await readFile(target, 'utf8')).toBe('previous contents');
      expect((await readdir(dir)).filter((f) => f.includes(mode))).toEqual([`${mode}.safetensors`]);
    });
  }

  it('writes normally once the failure is gone', async () => {
    const target = join(dir, 'fine.safetensors');
    await writeSafetensorsFile(target, dict);
    expect((await readFile(target)).length).toBeGreaterThan(4096);
  });
});

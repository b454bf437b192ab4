// Node: measured kernel choices (src/runtime/autotune.ts) in <cache dir>/kernel-tuning.json, one entry per adapter
// identity, written atomically. A missing or unreadable file only means measuring again.
import { readFile, mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { defaultCacheDir } from '../data/download.js';
import type { TuningStore } from '../runtime/autotune.js';
import { writeFileAtomic } from './atomic-file.js';

export function nodeTuningStore(cacheDir: string = defaultCacheDir()): TuningStore & { path: string } {
  const path = join(cacheDir, 'kernel-tuning.json');
  const readAll = async (): Promise<Record<string, Record<string, string>>> => {
    try {
      const parsed: unknown = JSON.parse(await readFile(path, 'utf8'));
      return parsed && typeof parsed === 'object' ? (parsed as Record<string, Record<string, string>>) : {};
    } catch {
      return {};
    }
  };
  return {
    path,
    async load(adapterKey) {
      return (await readAll())[adapterKey] ?? null;
    },
    async save(adapterKey, choices) {
      try {
        const all = await readAll();
        all[adapterKey] = choices;
        await mkdir(dirname(path), { recursive: true });
        await writeFileAtomic(path, new TextEncoder().encode(JSON.stringify(all, null, 1)));
      } catch (e) {
        console.warn(`kernel tuning: could not save ${path}: ${e instanceof Error ? e.message : String(e)}`);
      }
    },
  };
}

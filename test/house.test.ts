// The house rules (README "Layout", docs/ops-conventions.md), checked on the sources themselves:
// - the web-standard rooms import no Node built-in, no Node-only package and nothing from the Node rooms, and
//   load nothing by a dynamic import (the page bundles them, and a computed import breaks bundlers);
// - imports only point down the house: no room imports a room above it;
// - there are no import circles among the sources (type-only imports included: they tie files together too).
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const SRC = fileURLToPath(new URL('../src', import.meta.url));

/** The rooms from the bottom up; a room may import rooms at its own level or below. */
const LEVELS: Record<string, number> = {
  types: 0,
  util: 0,
  runtime: 1,
  kernels: 2,
  autograd: 3,
  weights: 3,
  image: 3,
  nn: 4,
  train: 5,
  classifier: 6,
  browser: 6,
  data: 6,
  /** src/index.ts: the package's web-standard entry. */
  index: 7,
  node: 7,
  cli: 8,
};
const WEB_STANDARD = ['util', 'runtime', 'kernels', 'autograd', 'weights', 'image', 'nn', 'train', 'classifier', 'browser', 'index'];
const NODE_ONLY_PACKAGES = ['webgpu', 'sharp', 'yauzl', 'cli-progress'];

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return sources(p);
    return /\.ts$/.test(name) && !/\.(test|d)\.ts$/.test(name) ? [p] : [];
  });
}

interface Import {
  spec: string;
  dynamic: boolean;
}

function importsOf(text: string): Import[] {
  const out: Import[] = [];
  for (const m of text.matchAll(/^\s*(?:import|export)\s[^;]*?\sfrom\s+['"]([^'"]+)['"]|^\s*import\s+['"]([^'"]+)['"]/gm)) out.push({ spec: (m[1] ?? m[2])!, dynamic: false });
  for (const m of text.matchAll(/\bimport\s*\(/g)) out.push({ spec: text.slice(m.index!, m.index! + 80).split('\n')[0]!, dynamic: true });
  return out;
}

const files = sources(SRC);
const room = (file: string): string => {
  const parts = relative(SRC, file).split('/');
  return parts.length === 1 ? 'index' : parts[0]!;
};
const resolveLocal = (from: string, spec: string): string => resolve(dirname(from), spec).replace(/\.js$/, '.ts');

describe('the house', () => {
  it('knows every room', () => {
    const rooms = new Set(files.map(room));
    expect([...rooms].filter((r) => !(r in LEVELS))).toEqual([]);
  });

  it('web-standard rooms import nothing of Node, and nothing by a dynamic import', () => {
    const bad: string[] = [];
    for (const f of files.filter((f) => WEB_STANDARD.includes(room(f)))) {
      for (const { spec, dynamic } of importsOf(readFileSync(f, 'utf8'))) {
        const where = relative(SRC, f);
        if (dynamic) bad.push(`${where}: dynamic import ${spec}`);
        else if (spec.startsWith('.')) {
          const target = room(resolveLocal(f, spec));
          if (!WEB_STANDARD.includes(target) && target !== 'types') bad.push(`${where}: imports ${spec} from the Node room ${target}`);
        } else {
          const bare = spec.replace(/^node:/, '').split('/')[0]!;
          if (spec.startsWith('node:') || builtinModules.includes(bare) || NODE_ONLY_PACKAGES.includes(bare)) bad.push(`${where}: imports ${spec}`);
        }
      }
    }
    expect(bad).toEqual([]);
  });

  it('imports point down the house, never up', () => {
    const up: string[] = [];
    for (const f of files) {
      for (const { spec, dynamic } of importsOf(readFileSync(f, 'utf8'))) {
        if (dynamic || !spec.startsWith('.')) continue;
        const target = room(resolveLocal(f, spec));
        if (LEVELS[target]! > LEVELS[room(f)]!) up.push(`${relative(SRC, f)} (${room(f)}) imports ${spec} (${target})`);
      }
    }
    expect(up).toEqual([]);
  });

  it('has no import circles', () => {
    const graph = new Map<string, string[]>();
    const known = new Set(files);
    for (const f of files) {
      const deps = importsOf(readFileSync(f, 'utf8'))
        .filter((i) => !i.dynamic && i.spec.startsWith('.'))
        .map((i) => resolveLocal(f, i.spec))
        .filter((d) => known.has(d));
      graph.set(f, deps);
    }
    // Tarjan's strongly connected components: any component of more than one file is a circle.
    let counter = 0;
    const index = new Map<string, number>();
    const low = new Map<string, number>();
    const stack: string[] = [];
    const onStack = new Set<string>();
    const circles: string[][] = [];
    const visit = (v: string): void => {
      index.set(v, counter);
      low.set(v, counter++);
      stack.push(v);
      onStack.add(v);
      for (const w of graph.get(v)!) {
        if (!index.has(w)) {
          visit(w);
          low.set(v, Math.min(low.get(v)!, low.get(w)!));
        } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
      if (low.get(v) === index.get(v)) {
        const c: string[] = [];
        let w: string;
        do {
          w = stack.pop()!;
          onStack.delete(w);
          c.push(relative(SRC, w));
        } while (w !== v);
        if (c.length > 1) circles.push(c.sort());
      }
    };
    for (const f of files) if (!index.has(f)) visit(f);
    expect(circles).toEqual([]);
  });
});

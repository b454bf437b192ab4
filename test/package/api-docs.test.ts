// docs/api (typedoc, `npm run docs:api`) documents every value the package's two entries export: a name added to
// src/index.ts or src/node/index.ts without regenerating the reference fails here.
import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import * as web from '../../src/index.js';
import * as node from '../../src/node/index.js';
import { REPO_ROOT } from '../helpers/cli-process.js';

function headings(path: string): Set<string> {
  const md = readFileSync(`${REPO_ROOT}/docs/api/${path}`, 'utf8');
  // Headings are `### name`, `### name()` or `### \`abstract\` Name`, with markdown's escaped underscores.
  return new Set([...md.matchAll(/^### (?:`[a-z]+` )?([A-Za-z_$\\][\w$\\]*)(?:\(\))?$/gm)].map((m) => m[1]!.replaceAll('\\', '')));
}

it('docs/api has a section for every value export of both entries', () => {
  const webDoc = headings('hotdog-webgpu.md');
  const nodeDoc = headings('hotdog-webgpu/node.md');
  expect(Object.keys(web).length).toBeGreaterThan(80);
  expect(Object.keys(web).filter((name) => !webDoc.has(name))).toEqual([]);
  expect(Object.keys(node).filter((name) => !nodeDoc.has(name))).toEqual([]);
});

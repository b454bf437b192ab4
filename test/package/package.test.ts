// The package as a user gets it: `npm pack` (which builds dist/ with tsc), the tarball installed into a new project
// with its dependencies from the npm registry, then example (a) run there with plain node on a tiny image folder,
// the `hotdog-predict` bin on the weights it saved, both examples type-checked against the installed .d.ts, and
// example (b) bundled with vite, refusing any Node-only module. Also: the README's library section is example (a).
import { execFile } from 'node:child_process';
import { builtinModules } from 'node:module';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseSafetensors } from '../../src/weights/safetensors.js';
import { fixturePthBytes } from '../e2e/model-fixture.js';
import { REPO_ROOT } from '../helpers/cli-process.js';
import { writeTinyImageFolder } from '../helpers/tiny-image-folder.js';

const run = promisify(execFile);
// Under `npm test` npm exports its own settings (npm_config_local_prefix: this repository); the npm commands below
// must act on their own folders.
const npmEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_(config_local_prefix|package_|lifecycle_)/i.test(k)));
const NODE_ONLY_PACKAGES = ['webgpu', 'sharp', 'yauzl', 'cli-progress'];
const TSC = join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc');

let work = '';
let project = '';
let files: string[] = [];

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'hotdog-package-'));
  project = join(work, 'project');
  mkdirSync(project);
  await run('npm', ['pack', '--pack-destination', work, '--silent'], { cwd: REPO_ROOT, env: npmEnv, maxBuffer: 64 << 20 });
  const tarball = readdirSync(work).find((f) => f.endsWith('.tgz'));
  if (!tarball) throw new Error(`npm pack left no tarball in ${work}`);
  files = (await run('tar', ['-tzf', join(work, tarball)])).stdout.split('\n').filter(Boolean).map((f) => f.replace(/^package\//, ''));
  console.log(`${tarball}: ${files.length} files, ${(statSync(join(work, tarball)).size / 1024).toFixed(0)} KiB`);
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'user-project', private: true, type: 'module' }));
  // As a user installs it: the tarball and its dependencies from the registry (the local npm cache first).
  await run('npm', ['install', '--prefix', project, join(work, tarball), '@types/node@^20', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'], {
    cwd: project,
    env: npmEnv,
    maxBuffer: 64 << 20,
  });
}, 600_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('the packed package', () => {
  it('holds the compiled entries, types and bins, and no sources, tests or fixtures', () => {
    for (const f of ['package.json', 'README.md', 'dist/index.js', 'dist/index.d.ts', 'dist/node/index.js', 'dist/node/index.d.ts', 'dist/cli/finetune.js', 'dist/cli/predict.js', 'dist/data/decode-worker.js']) {
      expect(files, f).toContain(f);
    }
    const stray = files.filter((f) => !/^dist\/.*\.(js|d\.ts)$/.test(f) && !['package.json', 'README.md'].includes(f));
    expect(stray).toEqual([]);
    expect(files.filter((f) => /\.test\.|\.reference\.|^src\/|^test\/|^fixtures\//.test(f))).toEqual([]);
    expect(readFileSync(join(project, 'node_modules/hotdog-webgpu/dist/cli/finetune.js'), 'utf8')).toMatch(/^#!\/usr\/bin\/env node\n/);
  });

  it('runs example (a) with plain node: fine-tunes the head on an image folder, saves it, and hotdog-predict reads it', async () => {
    const data = await writeTinyImageFolder(join(project, 'data'), { trainPerClass: 8, testPerClass: 2, size: [48, 40] });
    writeFileSync(join(project, 'resnet18.pth'), fixturePthBytes());
    copyFileSync(join(REPO_ROOT, 'examples/node/finetune-head.mjs'), join(project, 'finetune-head.mjs'));
    const out = join(project, 'model.safetensors');
    const { stdout } = await run(process.execPath, ['finetune-head.mjs', 'resnet18.pth', data, out], {
      cwd: project,
      env: { ...process.env, IMAGE_SIZE: '32' },
      maxBuffer: 16 << 20,
    });
    const lines = stdout.trim().split('\n');
    expect(lines.filter((l) => /^epoch \d: loss \d/.test(l))).toHaveLength(2);
    const last = JSON.parse(lines.at(-1)!) as { epochs: number; saved: string; prediction: string; probabilities: number[] };
    expect(last.epochs).toBe(2);
    expect(['hotdog', 'not-hotdog']).toContain(last.prediction);
    expect(last.probabilities.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5);
    const saved = parseSafetensors(new Uint8Array(readFileSync(out)));
    expect(saved.metadata).toMatchObject({ classes: JSON.stringify(['hotdog', 'not-hotdog']), image_size: '32' });
    expect(saved.tensors.get('fc.weight')!.shape).toEqual([2, 512]);
    // The frozen body was not trained: a body weight is the fixture's, bit for bit.
    const { readPth } = await import('../../src/weights/pth.js');
    const original = readPth(fixturePthBytes()).get('layer4.1.conv2.weight')!.data as Float32Array;
    expect(Buffer.from((saved.tensors.get('layer4.1.conv2.weight')!.data as Float32Array).buffer).equals(Buffer.from(original.buffer, original.byteOffset, original.byteLength))).toBe(true);

    const predicted = await run(join(project, 'node_modules/.bin/hotdog-predict'), ['--weights', out, '--json', join(data, 'test')], { cwd: project, maxBuffer: 16 << 20 });
    const report = JSON.parse(predicted.stdout) as { classes: string[]; predictions: { file: string; probabilities?: Record<string, number> }[] };
    expect(report.classes).toEqual(['hotdog', 'not-hotdog']);
    expect(report.predictions).toHaveLength(4);
    expect(report.predictions.every((p) => p.probabilities !== undefined)).toBe(true);
    const help = await run(join(project, 'node_modules/.bin/hotdog-finetune'), ['--help'], { cwd: project });
    expect(help.stdout).toMatch(/^Fine-tune ResNet-18 to tell hot dogs from everything else/);
  }, 600_000);

  // @webgpu/types (the GPU types of both entries) needs lib DOM, or skipLibCheck, under Node too (README).
  it('type-checks both examples against the installed .d.ts (the web entry without Node types)', async () => {
    const common = { strict: true, target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', noEmit: true, skipLibCheck: false };
    mkdirSync(join(project, 'browser'), { recursive: true });
    for (const f of ['index.html', 'main.ts']) copyFileSync(join(REPO_ROOT, 'examples/browser', f), join(project, 'browser', f));
    writeFileSync(join(project, 'tsconfig.browser.json'), JSON.stringify({ compilerOptions: { ...common, lib: ['ES2022', 'DOM', 'DOM.Iterable'], types: [] }, files: ['browser/main.ts'] }));
    writeFileSync(join(project, 'tsconfig.node.json'), JSON.stringify({ compilerOptions: { ...common, lib: ['ES2022', 'DOM'], types: ['node'], allowJs: true, checkJs: true }, files: ['finetune-head.mjs'] }));
    if (!existsSync(join(project, 'finetune-head.mjs'))) copyFileSync(join(REPO_ROOT, 'examples/node/finetune-head.mjs'), join(project, 'finetune-head.mjs'));
    for (const config of ['tsconfig.browser.json', 'tsconfig.node.json']) {
      const result = await run(process.execPath, [TSC, '-p', config], { cwd: project }).catch((e: { stdout: string }) => e);
      expect(result.stdout, config).toBe('');
    }
  }, 300_000);

  it('bundles example (b) with vite from the installed package, with no Node-only module in it', async () => {
    mkdirSync(join(project, 'browser'), { recursive: true });
    for (const f of ['index.html', 'main.ts']) copyFileSync(join(REPO_ROOT, 'examples/browser', f), join(project, 'browser', f));
    const { build } = await import('vite');
    const outDir = join(work, 'bundle');
    const modules: string[] = [];
    await build({
      configFile: false,
      root: join(project, 'browser'),
      logLevel: 'silent',
      build: { outDir, emptyOutDir: true, minify: false, target: 'es2022' },
      plugins: [
        {
          name: 'refuse-node-modules',
          enforce: 'pre',
          resolveId(id, importer) {
            const bare = id.replace(/^node:/, '').split('/')[0]!;
            if (id.startsWith('node:') || builtinModules.includes(bare) || NODE_ONLY_PACKAGES.includes(bare)) {
              this.error(`${importer ?? '?'} imports ${id}, which is Node-only`);
            }
            return null;
          },
          generateBundle(_options, bundle) {
            for (const chunk of Object.values(bundle)) if (chunk.type === 'chunk') modules.push(...Object.keys(chunk.modules));
          },
        },
      ],
    });
    const js = readdirSync(join(outDir, 'assets')).filter((f) => f.endsWith('.js'));
    const code = js.map((f) => readFileSync(join(outDir, 'assets', f), 'utf8')).join('\n');
    expect(code).toContain('requestAdapter');
    expect(code).not.toMatch(/LP_NUM_THREADS|XDG_RUNTIME_DIR/);
    // The engine came from the installed package's compiled entry, not from this repository's sources.
    expect(modules.some((m) => m.includes('node_modules/hotdog-webgpu/dist/classifier/classifier.js'))).toBe(true);
    expect(modules.filter((m) => m.startsWith(join(REPO_ROOT, 'src')))).toEqual([]);
    console.log(`example (b) bundle: ${js.length} chunk(s), ${(code.length / 1024).toFixed(0)} KiB unminified, ${modules.length} modules`);
  }, 300_000);
});

it("the README's library section is example (a), character for character", () => {
  const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Use as a library'));
  const block = /```js\n([\s\S]*?)```/.exec(section);
  expect(block?.[1]).toBe(readFileSync(join(REPO_ROOT, 'examples/node/finetune-head.mjs'), 'utf8'));
});

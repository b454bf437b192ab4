// Per-image classification time of the demo page's Classifier (ResNet-18, 224 px, batch 1, eval transform included,
// decode excluded) on each adapter this machine offers: Node (Dawn on whatever driver the environment selects) and
// headless Chromium's WebGPU, core (SwiftShader) and compatibility mode (ANGLE's OpenGL ES on Vulkan); plus how far
// the browser's image decoding differs from sharp's on a folder of JPEGs.
//
//   npx tsx bench/browser.bench.ts [--images DIR] [--skip-decode] [--node-only] [--out FILE]
//   VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json npx tsx bench/browser.bench.ts --node-only
// Writes JSON (default bench/results/browser.json; --node-only: bench/results/browser-node.json).
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { Classifier } from '../src/classifier/classifier.js';
import { decodeImage } from '../src/data/decode.js';
import { describeAdapter } from '../src/runtime/device.js';
import { createNodeRuntime, destroyNodeRuntime } from '../src/node/engine-node.js';
import { CHROMIUM_COMPAT_ARGS, CHROMIUM_WEBGPU_ARGS, findChromium } from '../test/browser/chromium.js';
import { fixtureClassifierBytes } from '../test/e2e/model-fixture.js';

const REPO = fileURLToPath(new URL('../', import.meta.url));
const { values: args } = parseArgs({ options: { images: { type: 'string' }, 'node-only': { type: 'boolean' }, 'skip-decode': { type: 'boolean' }, out: { type: 'string' } } });
const FIXTURES = readdirSync(join(REPO, 'fixtures/transforms/images')).map((f) => join(REPO, 'fixtures/transforms/images', f));
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const dir = mkdtempSync(join(tmpdir(), 'hotdog-browser-bench-'));
const modelPath = join(dir, 'model.safetensors');
const modelBytes = fixtureClassifierBytes();
writeFileSync(modelPath, modelBytes);
const nodeProbs: number[][] = [];
const result: Record<string, unknown> = { date: new Date().toISOString(), images: FIXTURES.map((f) => basename(f)) };

try {
  // ---- Node ----
  const rt = await createNodeRuntime();
  const model = Classifier.fromBytes(rt, 'model.safetensors', modelBytes);
  const images = await Promise.all(FIXTURES.map((f) => decodeImage(f)));
  await model.predict(images[0]!); // compiles the pipelines
  const nodeMs: number[] = [];
  for (const img of images) {
    const t = performance.now();
    nodeProbs.push((await model.predict(img)).probabilities);
    nodeMs.push(performance.now() - t);
  }
  result.node = { adapter: describeAdapter(rt.ctx), msPerImage: median(nodeMs), runs: nodeMs };
  console.log(`Node, ${describeAdapter(rt.ctx)}: ${median(nodeMs).toFixed(0)} ms/image`);
  model.release();
  destroyNodeRuntime(rt);

  if (!args['node-only']) await browserRuns();
} finally {
  rmSync(dir, { recursive: true, force: true });
}

const out = args.out ?? join(REPO, 'bench/results', args['node-only'] ? 'browser-node.json' : 'browser.json');
mkdirSync(join(out, '..'), { recursive: true });
writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
console.log(`wrote ${out}`);

async function browserRuns(): Promise<void> {
  const chromiumPath = findChromium();
  if (!chromiumPath) throw new Error('no Chromium: apt-get install -y chromium, or set CHROMIUM_PATH');
  const { createServer } = await import('vite');
  const { chromium } = await import('playwright');
  const server = await createServer({ configFile: join(REPO, 'web/vite.config.ts'), server: { port: 0 }, logLevel: 'warn' });
  await server.listen();
  const url = server.resolvedUrls!.local[0]!;
  try {
    const pngs: string[] = [];
    for (const f of FIXTURES) {
      const img = await decodeImage(f);
      const png = join(dir, basename(f).replace(/\.jpg$/, '.png'));
      await sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } }).png().toFile(png);
      pngs.push(png);
    }
    const configs = [
      { name: 'chromium-core', args: CHROMIUM_WEBGPU_ARGS, query: '?gpu=core' },
      { name: 'chromium-compatibility', args: CHROMIUM_COMPAT_ARGS, query: '?gpu=compatibility' },
    ];
    for (const c of configs) {
      const browser = await chromium.launch({ executablePath: chromiumPath, args: c.args });
      try {
        const page = await browser.newPage();
        await page.goto(url + c.query);
        await page.waitForSelector('#gpu-status[data-state="ready"], #gpu-status[data-state="error"]', { timeout: 60_000 });
        const adapter = await page.getAttribute('#gpu-status', 'title');
        if ((await page.getAttribute('#gpu-status', 'data-state')) === 'error') {
          result[c.name] = { error: await page.textContent('#fatal') };
          continue;
        }
        await page.setInputFiles('#model-file', modelPath);
        await page.waitForSelector('#model-info[data-state="loaded"]', { timeout: 120_000 });
        const runs: number[] = [];
        let maxProbDiff = 0;
        for (let round = 0; round < 2; round++) {
          await page.evaluate(() => (document.getElementById('results')!.innerHTML = ''));
          await page.setInputFiles('#images', pngs);
          await page.waitForFunction((n) => document.querySelectorAll('.result[data-state="done"]').length === n, pngs.length, { timeout: 300_000 });
          const cards = await page.$$eval('.result', (els) =>
            els.map((e) => ({ name: e.getAttribute('data-name')!, ms: Number(e.getAttribute('data-ms')), probs: JSON.parse(e.getAttribute('data-probs')!) as number[] })),
          );
          if (round === 1) {
            runs.push(...cards.map((x) => x.ms)); // round 0 includes compiling the pipelines
            pngs.forEach((p, i) => {
              const card = cards.find((x) => x.name === basename(p))!;
              card.probs.forEach((v, k) => (maxProbDiff = Math.max(maxProbDiff, Math.abs(v - nodeProbs[i]![k]!))));
            });
          }
        }
        result[c.name] = { adapter, msPerImage: median(runs), runs, maxProbDiffVsNode: maxProbDiff };
        console.log(`${c.name}, ${adapter}: ${median(runs).toFixed(0)} ms/image; probabilities vs Node: max |diff| ${maxProbDiff.toExponential(2)}`);
        if (c.name === 'chromium-core' && !args['skip-decode']) result.decode = await decodeDifference(page);
      } finally {
        await browser.close();
      }
    }
  } finally {
    await server.close();
  }
}

/** Browser (createImageBitmap + canvas) vs sharp, per 8-bit value, over every JPEG of a folder tree. */
async function decodeDifference(page: import('playwright').Page): Promise<unknown> {
  const root = args.images ?? join(REPO, '../shared/data/hotdog-mini');
  const walk = (d: string): string[] => {
    try {
      return readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(d, e.name)) : /\.jpe?g$/i.test(e.name) ? [join(d, e.name)] : []));
    } catch {
      return [];
    }
  };
  const files = [...FIXTURES, ...walk(root)];
  let values = 0;
  let differing = 0;
  let sum = 0;
  let max = 0;
  let imagesDiffering = 0;
  for (const file of files) {
    const ref = await decodeImage(file);
    const b64 = readFileSync(file).toString('base64');
    const got = Buffer.from(
      (await page.evaluate(`(async () => {
        const { decodeImageBlob } = await import(${JSON.stringify(`/@fs${join(REPO, 'src/browser/decode-image.ts')}`)});
        const bytes = Uint8Array.from(atob(${JSON.stringify(b64)}), (c) => c.charCodeAt(0));
        const img = await decodeImageBlob(new Blob([bytes]), 'x');
        let s = '';
        for (let i = 0; i < img.data.length; i += 0x8000) s += String.fromCharCode(...img.data.subarray(i, i + 0x8000));
        return btoa(s);
      })()`)) as string,
      'base64',
    );
    if (got.length !== ref.data.length) throw new Error(`${file}: browser decoded ${got.length} bytes, sharp ${ref.data.length}`);
    let here = 0;
    for (let i = 0; i < got.length; i++) {
      const d = Math.abs(got[i]! - ref.data[i]!);
      if (d) here++;
      sum += d;
      if (d > max) max = d;
    }
    values += got.length;
    differing += here;
    if (here) imagesDiffering++;
  }
  const summary = { images: files.length, imagesDiffering, maxAbs: max, meanAbs: sum / values, fractionDiffering: differing / values };
  console.log(`decode, browser vs sharp over ${files.length} JPEGs: ${JSON.stringify(summary)}`);
  return summary;
}

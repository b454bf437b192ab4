// The demo page end to end, in headless Chromium (Debian's chromium driven by playwright; WebGPU on SwiftShader):
// load a checkpoint, classify fixture photos and compare the probabilities with Node's (Dawn on lavapipe), fine-tune
// the head, download the weights and load them in Node, and the error messages.
//
// Decoding: browsers and sharp decode JPEG with different IDCT/upsampling code, so the parity check feeds both sides
// lossless PNG copies of the fixture JPEGs (the test asserts the two decoders give identical pixels for them);
// the JPEG decode difference is measured and printed separately, with its effect on the probabilities.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright';
import type { ViteDevServer } from 'vite';
import { Classifier } from '../../src/classifier/classifier.js';
import { decodeImage } from '../../src/data/decode.js';
import type { RgbImage } from '../../src/image/image.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import { readClassNames, readImageSize } from '../../src/weights/classes.js';
import { parseSafetensors } from '../../src/weights/safetensors.js';
import { createNodeRuntime, destroyNodeRuntime } from '../../src/node/engine-node.js';
import { runCli } from '../helpers/cli-process.js';
import { CHROMIUM_COMPAT_ARGS, CHROMIUM_WEBGPU_ARGS, findChromium, NO_CHROMIUM } from '../browser/chromium.js';
import { fixtureClassifierBytes, fixturePthBytes } from './model-fixture.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const IMAGES = ['0-test_not-hotdog_24159.jpg', '1-test_not-hotdog_24844.jpg', '2-train_hotdog_1.jpg', '3-test_not-hotdog_26078.jpg'].map((f) =>
  join(REPO, 'fixtures/transforms/images', f),
);
const chromiumPath = findChromium();
if (!chromiumPath) console.warn(`demo page test SKIPPED: ${NO_CHROMIUM}`);
/** Where the screenshots go: HOTDOG_SCREENSHOT_DIR (the README's come from there), else the test's temp folder. */
const screenshotDir = (dir: string): string => process.env.HOTDOG_SCREENSHOT_DIR ?? dir;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createNetServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

interface Card {
  name: string;
  state: string;
  probs: number[];
  ms: number;
}

describe.skipIf(!chromiumPath)('demo page in headless Chromium', () => {
  let dir: string;
  let server: ViteDevServer;
  let browser: Browser;
  let page: Page;
  let rt: Runtime;
  const pngs: string[] = [];
  const pageErrors: string[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'hotdog-demo-'));
    writeFileSync(join(dir, 'model.safetensors'), fixtureClassifierBytes());
    writeFileSync(join(dir, 'model-64px.safetensors'), fixtureClassifierBytes(['hotdog', 'not-hotdog'], 64));
    writeFileSync(join(dir, 'resnet18-fixture.pth'), fixturePthBytes());
    writeFileSync(join(dir, 'notes.txt'), 'these are not weights\n');
    writeFileSync(join(dir, 'broken.jpg'), 'not an image at all');
    for (const jpg of IMAGES) {
      const img = await decodeImage(jpg);
      const png = join(dir, basename(jpg).replace(/\.jpg$/, '.png'));
      await sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } }).png().toFile(png);
      pngs.push(png);
    }
    const { createServer } = await import('vite');
    server = await createServer({ configFile: join(REPO, 'web/vite.config.ts'), server: { port: await freePort(), strictPort: true }, logLevel: 'warn' });
    await server.listen();
    const { chromium } = await import('playwright');
    browser = await chromium.launch({ executablePath: chromiumPath!, args: CHROMIUM_WEBGPU_ARGS });
    page = await browser.newPage({ viewport: { width: 1200, height: 1000 }, acceptDownloads: true });
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await page.goto(server.resolvedUrls!.local[0]!);
    await page.waitForSelector('#gpu-status[data-state="ready"]', { timeout: 60_000 });
    console.log(`page adapter: ${await page.textContent('#gpu-text')}`);
    rt = await createNodeRuntime();
  });

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    if (rt) destroyNodeRuntime(rt);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function loadModel(file: string): Promise<string> {
    await page.setInputFiles('#model-file', file);
    await page.waitForFunction((name) => {
      const info = document.getElementById('model-info')!;
      return info.dataset.state === 'loaded' && info.textContent!.startsWith(name);
    }, basename(file), { timeout: 120_000 });
    return (await page.textContent('#model-info'))!;
  }

  /** Classifies files in the page; returns their result cards in file order. */
  async function classify(files: string[]): Promise<Card[]> {
    await page.evaluate(() => (document.getElementById('results')!.innerHTML = ''));
    await page.setInputFiles('#images', files);
    await page.waitForFunction((n) => document.querySelectorAll('.result[data-state="done"], .result[data-state="error"]').length === n, files.length, {
      timeout: 180_000,
    });
    const cards = await page.$$eval('.result', (els) =>
      els.map((e) => ({ name: e.getAttribute('data-name')!, state: e.getAttribute('data-state')!, probs: JSON.parse(e.getAttribute('data-probs') ?? '[]') as number[], ms: Number(e.getAttribute('data-ms')) })),
    );
    return files.map((f) => cards.find((c) => c.name === basename(f))!);
  }

  /** Node's probabilities, at the weights' own image size unless `imageSize` is given. */
  async function nodeProbabilities(weights: string, images: RgbImage[], imageSize?: number): Promise<number[][]> {
    const model = Classifier.fromBytes(rt, basename(weights), new Uint8Array(readFileSync(weights)));
    try {
      const out: number[][] = [];
      for (const img of images) out.push((await model.predict(img, imageSize)).probabilities);
      return out;
    } finally {
      model.release();
    }
  }

  it('classifies like Node: the fine-tune CLI\'s model.safetensors, PNG photos, probabilities within 1e-4', async () => {
    const info = await loadModel(join(dir, 'model.safetensors'));
    expect(info).toContain('classes hotdog / not-hotdog');
    const cards = await classify(pngs);
    const expected = await nodeProbabilities(join(dir, 'model.safetensors'), await Promise.all(pngs.map((p) => decodeImage(p))));
    let worst = 0;
    cards.forEach((c, i) => {
      expect(c.state).toBe('done');
      worst = Math.max(worst, maxAbsDiff(c.probs, expected[i]!));
    });
    const ms = cards.map((c) => c.ms).sort((a, b) => a - b);
    console.log(`page vs Node probabilities (PNG inputs): max |diff| ${worst.toExponential(2)}; page ms/image ${ms.join(', ')}`);
    expect(worst).toBeLessThan(1e-4);
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: join(screenshotDir(dir), 'demo-classify.png'), fullPage: true });
  });

  it('classifies a model trained at 64 px at 64 px, as npm run predict does (within 1e-4), not at 224', async () => {
    const weights = join(dir, 'model-64px.safetensors');
    const info = await loadModel(weights);
    expect(info).toContain('classifies at 64 px (Resize 73, CenterCrop 64)');
    const photos = pngs.slice(1, 3); // one of each class
    const cards = await classify(photos);
    const cli = await runCli('predict', ['--weights', weights, '--json', ...photos]);
    expect(cli.code, cli.stderr).toBe(0);
    const out = JSON.parse(cli.stdout) as { classes: string[]; imageSize: number; predictions: { file: string; probabilities: Record<string, number> }[] };
    expect(out.imageSize).toBe(64);
    let worst = 0;
    cards.forEach((c) => {
      expect(c.state).toBe('done');
      const p = out.predictions.find((q) => basename(q.file) === c.name)!;
      worst = Math.max(worst, maxAbsDiff(c.probs, out.classes.map((k) => p.probabilities[k]!)));
    });
    // The same photos at 224 px give other probabilities: the comparison above can tell the sizes apart.
    const at224 = await nodeProbabilities(weights, await Promise.all(photos.map((p) => decodeImage(p))), 224);
    const sizeEffect = Math.max(...cards.map((c, i) => maxAbsDiff(c.probs, at224[i]!)));
    console.log(`64 px model: page vs npm run predict max |diff| ${worst.toExponential(2)}; the same at 224 px would differ by ${sizeEffect.toExponential(2)}`);
    expect(worst).toBeLessThan(1e-4);
    expect(sizeEffect).toBeGreaterThan(1e-3);
  }, 300_000); // the browser project runs beside this file: Chromium and the CLI share the 2 cores

  it('decodes: PNG exactly as sharp; JPEG within a few levels (measured)', async () => {
    const decoder = `/@fs${join(REPO, 'src/browser/decode-image.ts')}`;
    const files = [...IMAGES, ...pngs].map((p) => ({ name: basename(p), base64: readFileSync(p).toString('base64') }));
    // A string, so vitest's transform of this file leaves the page-side dynamic import alone.
    const decoded = (await page.evaluate(`(async () => {
      const { decodeImageBlob } = await import(${JSON.stringify(decoder)});
      const out = [];
      for (const file of ${JSON.stringify(files)}) {
        const bytes = Uint8Array.from(atob(file.base64), (c) => c.charCodeAt(0));
        const img = await decodeImageBlob(new Blob([bytes]), file.name);
        let s = '';
        for (let i = 0; i < img.data.length; i += 0x8000) s += String.fromCharCode(...img.data.subarray(i, i + 0x8000));
        out.push({ width: img.width, height: img.height, data: btoa(s) });
      }
      return out;
    })()`)) as { width: number; height: number; data: string }[];
    const report: string[] = [];
    for (let i = 0; i < decoded.length; i++) {
      const file = i < IMAGES.length ? IMAGES[i]! : pngs[i - IMAGES.length]!;
      const ref = await decodeImage(file);
      const got = Buffer.from(decoded[i]!.data, 'base64');
      expect([decoded[i]!.width, decoded[i]!.height]).toEqual([ref.width, ref.height]);
      let sum = 0;
      let differing = 0;
      for (let k = 0; k < got.length; k++) {
        const d = Math.abs(got[k]! - ref.data[k]!);
        sum += d;
        if (d) differing++;
      }
      const max = maxAbsDiff(got, ref.data);
      report.push(`${basename(file)}: max ${max}, mean ${(sum / got.length).toFixed(4)}, ${((100 * differing) / got.length).toFixed(2)}% of values differ`);
      if (file.endsWith('.png')) expect(max).toBe(0);
      else expect(max).toBeLessThanOrEqual(48);
    }
    console.log(`browser decode vs sharp (8-bit levels):\n  ${report.join('\n  ')}`);
    // What the JPEG decode difference does to the probabilities (not a parity bound: inputs differ).
    await loadModel(join(dir, 'model.safetensors'));
    const cards = await classify(IMAGES);
    const expected = await nodeProbabilities(join(dir, 'model.safetensors'), await Promise.all(IMAGES.map((p) => decodeImage(p))));
    const effect = Math.max(...cards.map((c, i) => maxAbsDiff(c.probs, expected[i]!)));
    console.log(`page (browser JPEG decode) vs Node (sharp decode) probabilities: max |diff| ${effect.toExponential(2)}`);
    expect(effect).toBeLessThan(0.05);
  });

  it('fine-tunes the head in the tab (loss falls), downloads model.safetensors, and Node loads it', async () => {
    await page.setInputFiles('#train-0 input', [pngs[2]!]);
    await page.setInputFiles('#train-1 input', [pngs[0]!, pngs[1]!, pngs[3]!]);
    await page.selectOption('#mode', 'head');
    await page.selectOption('#size', '112');
    await page.fill('#steps', '30');
    await page.fill('#lr', '0.0005');
    await page.click('#train');
    await page.waitForSelector('#train-status[data-state="done"], #train-status[data-state="error"]', { timeout: 180_000 });
    expect(await page.getAttribute('#train-status', 'data-state')).toBe('done');
    const losses = JSON.parse((await page.getAttribute('#train-status', 'data-loss'))!) as number[];
    console.log(`head fine-tune in the page: loss ${losses[0]!.toFixed(4)} -> ${losses.at(-1)!.toFixed(4)} over ${losses.length} steps`);
    expect(losses).toHaveLength(30);
    expect(losses.at(-1)!).toBeLessThan(losses[0]! * 0.9);
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: join(screenshotDir(dir), 'demo-finetune.png'), fullPage: true });

    const [after] = await classify([pngs[2]!]);
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
    expect(download.suggestedFilename()).toBe('model.safetensors');
    const saved = join(dir, 'downloaded.safetensors');
    await download.saveAs(saved);
    const file = parseSafetensors(new Uint8Array(readFileSync(saved)));
    expect(readClassNames(file.metadata)).toEqual(['hotdog', 'not-hotdog']);
    expect(readImageSize(file.metadata)).toBe(112); // trained at 112 px in the page: saved so, and classified so
    expect(file.tensors.get('fc.weight')!.shape).toEqual([2, 512]);
    expect(file.tensors.size).toBe(122); // torchvision resnet18's state dict, num_batches_tracked included
    const [node] = await nodeProbabilities(saved, [await decodeImage(pngs[2]!)]);
    expect(maxAbsDiff(after!.probs, node!)).toBeLessThan(1e-4);
  });

  it('loads a torchvision .pth (1000 classes: hot dog = ImageNet class 934) and classifies like Node', async () => {
    const info = await loadModel(join(dir, 'resnet18-fixture.pth'));
    expect(info).toContain('ImageNet');
    const [card] = await classify([pngs[2]!]);
    const [node] = await nodeProbabilities(join(dir, 'resnet18-fixture.pth'), [await decodeImage(pngs[2]!)]);
    expect(maxAbsDiff(card!.probs, node!)).toBeLessThan(1e-4);
  });

  it('says clearly what is wrong with a wrong weight file or an unreadable image', async () => {
    await page.evaluate(() => (document.getElementById('messages')!.innerHTML = ''));
    await page.setInputFiles('#model-file', join(dir, 'notes.txt'));
    await page.waitForSelector('.message.error');
    expect(await page.textContent('.message.error')).toMatch(/Cannot use this weight file\. notes\.txt: neither a PyTorch checkpoint/);
    await page.evaluate(() => (document.getElementById('messages')!.innerHTML = ''));
    const [card] = await classify([join(dir, 'broken.jpg')]);
    expect(card!.state).toBe('error');
    expect(await page.textContent('.message.error')).toMatch(/broken\.jpg: not an image this browser can decode/);
    expect(pageErrors).toEqual([]);
  });

  it('without WebGPU the page says which browsers and flags to use', async () => {
    const { chromium } = await import('playwright');
    const plain = await chromium.launch({ executablePath: chromiumPath! }); // no --enable-unsafe-webgpu: no adapter
    try {
      const p = await plain.newPage({ viewport: { width: 1200, height: 700 } });
      await p.goto(server.resolvedUrls!.local[0]!);
      await p.waitForSelector('#gpu-status[data-state="error"]', { timeout: 60_000 });
      expect(await p.isVisible('#fatal')).toBe(true);
      expect(await p.textContent('#fatal')).toMatch(/no WebGPU adapter[\s\S]*Chrome or Edge 113\+[\s\S]*--enable-unsafe-webgpu/);
      await p.screenshot({ path: join(screenshotDir(dir), 'demo-no-webgpu.png') });
    } finally {
      await plain.close();
    }
  });

  it('in compatibility mode (ANGLE\'s OpenGL ES on lavapipe) classifies like Node too', async (ctx) => {
    const { chromium } = await import('playwright');
    const compat = await chromium.launch({ executablePath: chromiumPath!, args: CHROMIUM_COMPAT_ARGS });
    try {
      const p = await compat.newPage();
      const errors: string[] = [];
      p.on('pageerror', (e) => errors.push(e.message));
      await p.goto(`${server.resolvedUrls!.local[0]!}?gpu=compatibility`);
      await p.waitForSelector('#gpu-status[data-state="ready"], #gpu-status[data-state="error"]', { timeout: 60_000 });
      const status = await p.textContent('#gpu-text');
      if ((await p.getAttribute('#gpu-status', 'data-state')) === 'error') {
        // Only a browser without a compatibility adapter may skip this, and the page must say exactly that (the
        // message of acquireGpu when no adapter is found): any other failure, e.g. opening the device or a kernel
        // that does not fit it, fails here.
        const fatal = (await p.textContent('#fatal pre')) ?? '';
        expect(fatal, 'the page failed for another reason than a missing adapter').toMatch(/^This browser offers no WebGPU adapter\./);
        expect(errors).toEqual([]);
        console.warn(`compatibility-mode check SKIPPED: this Chromium offers no compatibility adapter (${fatal.split('\n')[0]})`);
        ctx.skip();
      }
      expect(status).toContain('compatibility');
      await p.setInputFiles('#model-file', join(dir, 'model.safetensors'));
      await p.waitForSelector('#model-info[data-state="loaded"]', { timeout: 120_000 });
      await p.setInputFiles('#images', [pngs[2]!]);
      await p.waitForSelector('.result[data-state="done"]', { timeout: 120_000 });
      const probs = JSON.parse((await p.getAttribute('.result', 'data-probs'))!) as number[];
      const [node] = await nodeProbabilities(join(dir, 'model.safetensors'), [await decodeImage(pngs[2]!)]);
      console.log(`compatibility-mode page (${status}, ${await p.getAttribute('.result', 'data-ms')} ms, first image): max |diff| vs Node ${maxAbsDiff(probs, node!).toExponential(2)}`);
      expect(maxAbsDiff(probs, node!)).toBeLessThan(1e-4);
      expect(errors).toEqual([]);
    } finally {
      await compat.close();
    }
  });
});

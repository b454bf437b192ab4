// Entry points meant for another machine (a lent GPU machine has node and Dawn but no npm: bench entries and the CLIs
// travel as esbuild bundles, see the README's "Benchmarks on a GPU machine") bundle into one self-contained file:
// nothing in their module graph is loaded by a computed name that esbuild cannot follow. The predict CLI's bundle is
// run with plain node and must classify as the CLI does.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { runCli } from '../helpers/cli-process.js';
import { fixtureClassifierBytes } from './model-fixture.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const ENTRIES = ['src/cli/predict.ts', 'src/cli/finetune.ts', 'bench/run.ts', 'bench/workers/engine.ts', 'bench/workers/tfjs.ts', 'bench/kernels.bench.ts', 'bench/train.bench.ts'];
const PHOTO = join(REPO, 'fixtures/transforms/images/2-train_hotdog_1.jpg');

it('bench entries and CLIs bundle with esbuild into self-contained files; the predict bundle classifies as the CLI does', async () => {
  const { build } = await import('esbuild');
  // Inside the repository, so the bundle finds the external packages (webgpu, sharp) in node_modules.
  const out = mkdtempSync(join(REPO, 'node_modules', '.cache-bundle-'));
  try {
    const result = await build({
      entryPoints: ENTRIES.map((e) => join(REPO, e)),
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      outbase: REPO,
      outdir: out,
      external: ['webgpu', 'sharp'],
      // (The alias: bundled modules may import createRequire themselves.)
      banner: { js: "import { createRequire as bundleCreateRequire } from 'module'; const require = bundleCreateRequire(import.meta.url);" },
      logLevel: 'silent',
      metafile: true,
    });
    expect(result.errors).toEqual([]);
    for (const entry of ENTRIES) {
      const code = readFileSync(join(out, entry.replace(/\.ts$/, '.js')), 'utf8');
      // A dynamic import left in a bundle names a package (webgpu and sharp, kept external on purpose; vega's optional
      // canvas), never a computed path, which esbuild cannot follow and the bundle would miss.
      const dynamic = [...code.matchAll(/\bimport\(([^)]*)\)/g)].map((m) => m[1]!.trim());
      expect(dynamic.filter((d) => !/^["'][a-z@][\w@./-]*["']$/.test(d) || d.startsWith('".') || d.startsWith("'.")), entry).toEqual([]);
    }
    // The bench orchestrator's bundle starts (scripts/stage-device.sh stages it for a GPU machine).
    const help = spawnSync(process.execPath, [join(out, 'bench/run.js'), '--help'], { encoding: 'utf8', timeout: 60_000 });
    expect(help.status, help.stderr).toBe(0);
    expect(help.stdout).toMatch(/--gpu-cases/);
    const dir = mkdtempSync(join(tmpdir(), 'hotdog-bundle-'));
    try {
      const weights = join(dir, 'model.safetensors');
      writeFileSync(weights, fixtureClassifierBytes(['hotdog', 'not-hotdog'], 64));
      const bundled = spawnSync(process.execPath, [join(out, 'src/cli/predict.js'), '--weights', weights, '--json', PHOTO], { encoding: 'utf8', timeout: 240_000 });
      expect(bundled.status, bundled.stderr).toBe(0);
      const viaTsx = await runCli('predict', ['--weights', weights, '--json', PHOTO]);
      expect(viaTsx.code, viaTsx.stderr).toBe(0);
      const a = JSON.parse(bundled.stdout) as { predictions: { probabilities: Record<string, number> }[] };
      const b = JSON.parse(viaTsx.stdout) as { predictions: { probabilities: Record<string, number> }[] };
      expect(a.predictions[0]!.probabilities).toEqual(b.predictions[0]!.probabilities);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}, 300_000);

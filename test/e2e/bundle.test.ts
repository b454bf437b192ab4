// The page's bundle (vite build of web/) holds only web-standard code: the build fails if anything in its module
// graph resolves to a Node built-in or a Node-only package, and the Node half of acquireGpu() stays out.
import { builtinModules } from 'node:module';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const NODE_ONLY_PACKAGES = ['webgpu', 'sharp', 'yauzl', 'cli-progress'];

it('vite bundles the page without any Node-only module', async () => {
  const { build } = await import('vite');
  const outDir = mkdtempSync(join(tmpdir(), 'hotdog-bundle-'));
  const imported: string[] = [];
  try {
    await build({
      configFile: join(REPO, 'web/vite.config.ts'),
      logLevel: 'silent',
      build: { outDir, emptyOutDir: true, minify: false },
      plugins: [
        {
          name: 'refuse-node-modules',
          enforce: 'pre',
          resolveId(id, importer) {
            const bare = id.replace(/^node:/, '').split('/')[0]!;
            if (id.startsWith('node:') || builtinModules.includes(bare) || NODE_ONLY_PACKAGES.includes(bare)) {
              this.error(`${importer ?? '?'} imports ${id}, which is Node-only`);
            }
            if (importer) imported.push(id);
            return null;
          },
        },
      ],
    });
    const js = readdirSync(join(outDir, 'assets')).filter((f) => f.endsWith('.js'));
    expect(js.length).toBeGreaterThan(0);
    const code = js.map((f) => readFileSync(join(outDir, 'assets', f), 'utf8')).join('\n');
    expect(code).toContain('requestAdapter'); // the engine is in there
    expect(code).not.toMatch(/LP_NUM_THREADS|XDG_RUNTIME_DIR/); // src/node/webgpu-node.ts is not
    expect(imported.some((id) => id.includes('src/classifier/classifier'))).toBe(true);
    console.log(`page bundle: ${js.length} chunk(s), ${(code.length / 1024).toFixed(0)} KiB unminified`);
  } finally {
    rmSync(outDir, { recursive: true, force: true });
  }
});

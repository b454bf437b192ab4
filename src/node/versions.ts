// Versions of Node, this package and the packages a run depends on, for run records.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

function readPackage(packageJson: string): { name?: string; version?: string } | null {
  try {
    return JSON.parse(readFileSync(packageJson, 'utf8')) as { name?: string; version?: string };
  } catch {
    return null;
  }
}

/** The installed version of a dependency (the package.json above its entry point), or 'unknown'. */
export function packageVersion(name: string): string {
  let dir: string;
  try {
    dir = dirname(require.resolve(name));
  } catch {
    return 'unknown';
  }
  for (let i = 0; i < 6; i++, dir = dirname(dir)) {
    const pkg = readPackage(join(dir, 'package.json'));
    if (pkg?.name === name && pkg.version) return pkg.version;
  }
  return 'unknown';
}

export function engineVersion(): string {
  return readPackage(join(ROOT, 'package.json'))?.version ?? 'unknown';
}

export function runtimeVersions(): Record<string, string> {
  return {
    'hotdog-webgpu': engineVersion(),
    node: process.versions.node,
    webgpu: packageVersion('webgpu'),
    sharp: packageVersion('sharp'),
    libvips: packageVersion('sharp') === 'unknown' ? 'unknown' : (require('sharp') as { versions: { vips: string } }).versions.vips,
    vega: packageVersion('vega'),
    'vega-lite': packageVersion('vega-lite'),
  };
}

// Node side of the browser tests: where Chromium is and how it is started. Nothing downloads a browser: Debian's
// `chromium` package (or CHROMIUM_PATH) is the browser, driven by playwright through executablePath.
import { existsSync } from 'node:fs';

const CANDIDATES = ['/usr/lib/chromium/chromium', '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'];

/** WebGPU in headless Chromium on Linux is behind this flag; it gives SwiftShader's adapter on a machine without a GPU. */
export const CHROMIUM_WEBGPU_ARGS = ['--enable-unsafe-webgpu'];

/**
 * Also exposes a compatibility-mode adapter through ANGLE's OpenGL ES backend on Vulkan (lavapipe here); a page gets
 * it with requestAdapter({ featureLevel: 'compatibility' }).
 */
export const CHROMIUM_COMPAT_ARGS = ['--enable-unsafe-webgpu', '--use-angle=vulkan', '--use-webgpu-adapter=opengles'];

/** CHROMIUM_PATH if set (it must exist), else Debian's chromium; null when there is none. */
export function findChromium(): string | null {
  const fromEnv = process.env.CHROMIUM_PATH;
  if (fromEnv) {
    if (!existsSync(fromEnv)) throw new Error(`CHROMIUM_PATH=${fromEnv}: no such file`);
    return fromEnv;
  }
  return CANDIDATES.find((p) => existsSync(p)) ?? null;
}

export const NO_CHROMIUM =
  'no Chromium found: install Debian\'s chromium package (apt-get install -y chromium) or set CHROMIUM_PATH to a Chromium/Chrome binary';

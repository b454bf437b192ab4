#!/usr/bin/env node
// Runs before npm run finetune, npm test and npm run predict (package.json's pre-scripts), so that on a fresh
// clone those commands are all it takes. Each step checks one thing and fixes it when it safely can, saying so;
// otherwise it stops with the exact command to run. Silent when everything is in place.
//
//   packages        node_modules matches package-lock.json, else `npm ci`
//   webgpu-adapter  Dawn finds a WebGPU adapter, else on Debian/Ubuntu as root scripts/setup-cpu-driver.sh
//                   (Mesa's lavapipe CPU driver), elsewhere the command for this system
//   chromium        (npm test only) a Chromium for the browser tests, else on Debian/Ubuntu as root
//                   scripts/setup-chromium.sh; elsewhere a note with the command (the browser tests are then
//                   skipped with a warning, the rest still runs)
//
// To add a step (say, a browser for page tests): write `async function ensureX(ctx)` that returns when all is
// well, calls ctx.say() before changing anything, and throws new Stop(message) with the command to run; then add
// it to STEPS. Plain Node (no dependencies): it runs before the packages are installed.
// HOTDOG_SKIP_ENVIRONMENT_CHECK=1 skips every step; arguments choose steps (`node scripts/ensure-environment.mjs packages`).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

export class Stop extends Error {}

/** Entries of a lockfile's "packages" that npm installs here: name (node_modules/...) -> version. */
function installable(lock, { skipOptional }) {
  const out = new Map();
  for (const [key, entry] of Object.entries(lock?.packages ?? {})) {
    if (!key.startsWith('node_modules/') || entry.link) continue;
    if (skipOptional && entry.optional) continue; // platform-specific binaries: only this platform's get installed
    out.set(key, entry.version);
  }
  return out;
}

/**
 * Why node_modules does not match package-lock.json, or null when it does. `installed` is npm's own record of
 * what it installed (node_modules/.package-lock.json), null when absent.
 */
export function packagesOutOfDate(lock, installed) {
  if (!installed) return 'node_modules is missing';
  const want = installable(lock, { skipOptional: true });
  const have = installable(installed, { skipOptional: false });
  for (const [name, version] of want) {
    if (!have.has(name)) return `${name.slice('node_modules/'.length)} is not installed`;
    if (have.get(name) !== version) return `${name.slice('node_modules/'.length)} is ${have.get(name)}, package-lock.json wants ${version}`;
  }
  const all = installable(lock, { skipOptional: false });
  for (const name of have.keys()) if (!all.has(name)) return `${name.slice('node_modules/'.length)} is installed but no longer in package-lock.json`;
  return null;
}

function readJson(path) {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch {
    return null;
  }
}

async function ensurePackages(ctx) {
  const lock = readJson(join(ROOT, 'package-lock.json'));
  if (!lock) throw new Stop('package-lock.json is missing or unreadable; restore it (git checkout package-lock.json)');
  const why = packagesOutOfDate(lock, readJson(join(ROOT, 'node_modules', '.package-lock.json')));
  if (!why) return;
  ctx.say(`${why}; installing the packages: npm ci --no-audit --no-fund`);
  const r = ctx.run('npm', ['ci', '--no-audit', '--no-fund'], { stdio: 'inherit' });
  if (r.status !== 0) throw new Stop('npm ci failed (see above); fix that and run it again: npm ci');
}

/** /etc/os-release as an object ({} when absent). */
export function parseOsRelease(text) {
  const out = {};
  for (const line of (text ?? '').split('\n')) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line.trim());
    if (m) out[m[1]] = m[2].replace(/^["']|["']$/g, '');
  }
  return out;
}

/**
 * What to do about a missing WebGPU adapter: { action: 'setup', command } runs the driver set-up here;
 * { action: 'stop', message } tells the user the exact command.
 */
export function planAdapterFix({ platform, uid, osRelease }) {
  const setup = 'bash scripts/setup-cpu-driver.sh';
  const ids = `${osRelease.ID ?? ''} ${osRelease.ID_LIKE ?? ''}`.toLowerCase();
  if (platform === 'linux' && /\b(debian|ubuntu)\b/.test(ids)) {
    if (uid === 0) return { action: 'setup', command: setup };
    return {
      action: 'stop',
      message: `No WebGPU adapter was found. Install Mesa's lavapipe CPU Vulkan driver (needs root for apt), then run the command again:\n  sudo ${setup}`,
    };
  }
  if (platform === 'linux') {
    const byDistro = /\b(fedora|rhel|centos)\b/.test(ids)
      ? 'sudo dnf install -y mesa-vulkan-drivers vulkan-loader'
      : /\barch\b/.test(ids)
        ? 'sudo pacman -S --needed vulkan-swrast vulkan-icd-loader'
        : null;
    return {
      action: 'stop',
      message:
        'No WebGPU adapter was found. Install a Vulkan driver: your GPU\'s, or Mesa\'s lavapipe CPU driver (Mesa 24 or newer) with the Vulkan loader' +
        (byDistro ? `:\n  ${byDistro}` : ` (${osRelease.PRETTY_NAME ?? 'this system'}: the packages are usually named mesa-vulkan-drivers and libvulkan1/vulkan-loader).`),
    };
  }
  if (platform === 'darwin') {
    return { action: 'stop', message: 'No WebGPU adapter was found: Dawn uses Metal, which every Mac since 2012 has; update macOS (Software Update) and try again.' };
  }
  if (platform === 'win32') {
    return { action: 'stop', message: 'No WebGPU adapter was found: Dawn uses D3D12 or Vulkan; install your GPU vendor\'s current driver (or Windows Update > Optional updates > Driver updates).' };
  }
  return { action: 'stop', message: `No WebGPU adapter was found, and ${platform} has no known driver recipe; see README.md (Requirements).` };
}

function probeAdapter(ctx) {
  const r = ctx.run(process.execPath, [join(ROOT, 'scripts', 'probe-adapter.mjs')], { encoding: 'utf8', timeout: 60_000 });
  return r.status === 0 ? (r.stdout ?? '').trim() || 'an adapter' : null;
}

async function ensureWebgpuAdapter(ctx) {
  if (probeAdapter(ctx)) return;
  const plan = planAdapterFix({
    platform: process.platform,
    uid: process.getuid?.() ?? -1,
    osRelease: parseOsRelease(existsSync('/etc/os-release') ? readFileSync('/etc/os-release', 'utf8') : ''),
  });
  if (plan.action === 'stop') throw new Stop(plan.message);
  ctx.say(`no WebGPU adapter was found; installing Mesa's lavapipe CPU Vulkan driver: ${plan.command}`);
  const r = ctx.run('bash', [join(ROOT, 'scripts', 'setup-cpu-driver.sh')], { stdio: 'inherit' });
  if (r.status !== 0) throw new Stop(`${plan.command} failed (see above)`);
  const found = probeAdapter(ctx);
  if (!found) {
    throw new Stop(
      'the driver is installed but Dawn still finds no WebGPU adapter. Check that VK_ICD_FILENAMES / VK_DRIVER_FILES do not hide it ' +
        'and that `node scripts/probe-adapter.mjs` prints an adapter; HOTDOG_WEBGPU_BACKEND / HOTDOG_WEBGPU_ADAPTER choose one.',
    );
  }
  ctx.say(`WebGPU adapter: ${found}`);
}

/** Where the browser tests look for Chromium (test/browser/chromium.ts). */
export function chromiumCandidates(env = process.env) {
  return [env.CHROMIUM_PATH, '/usr/lib/chromium/chromium', '/usr/bin/chromium', '/usr/bin/chromium-browser'].filter(Boolean);
}

/**
 * What to do about a missing Chromium: { action: 'setup', command } installs Debian's chromium here; { action:
 * 'note', message } says how, and the browser tests are skipped (a missing browser stops nothing else).
 */
export function planChromiumFix({ platform, uid, osRelease }) {
  const setup = 'bash scripts/setup-chromium.sh';
  const ids = `${osRelease.ID ?? ''} ${osRelease.ID_LIKE ?? ''}`.toLowerCase();
  const skipped = 'No Chromium was found, so the browser tests will be skipped.';
  if (platform === 'linux' && /\b(debian|ubuntu)\b/.test(ids)) {
    if (uid === 0) return { action: 'setup', command: setup };
    return { action: 'note', message: `${skipped} To run them: sudo ${setup}` };
  }
  return { action: 'note', message: `${skipped} To run them, install Chromium or Chrome and set CHROMIUM_PATH to its binary.` };
}

async function ensureChromium(ctx) {
  if (chromiumCandidates().some((p) => existsSync(p))) return;
  const plan = planChromiumFix({
    platform: process.platform,
    uid: process.getuid?.() ?? -1,
    osRelease: parseOsRelease(existsSync('/etc/os-release') ? readFileSync('/etc/os-release', 'utf8') : ''),
  });
  if (plan.action === 'note') return ctx.say(plan.message);
  ctx.say(`no Chromium for the browser tests; installing Debian's chromium: ${plan.command}`);
  const r = ctx.run('bash', [join(ROOT, 'scripts', 'setup-chromium.sh')], { stdio: 'inherit' });
  if (r.status !== 0) ctx.say(`${plan.command} failed (see above); the browser tests will be skipped`);
}

export const STEPS = [
  ['packages', ensurePackages],
  ['webgpu-adapter', ensureWebgpuAdapter],
  ['chromium', ensureChromium],
];

export async function ensureEnvironment({ steps = STEPS, log = (s) => process.stderr.write(`${s}\n`), run = spawnSync } = {}) {
  for (const [name, step] of steps) {
    const ctx = { say: (s) => log(`ensure-environment (${name}): ${s}`), run: (cmd, args, opts) => run(cmd, args, { cwd: ROOT, ...opts }) };
    try {
      await step(ctx);
    } catch (e) {
      if (e instanceof Stop) {
        log(`ensure-environment (${name}): ${e.message}`);
        return 1;
      }
      throw e;
    }
  }
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  // Optional arguments name the steps to run (default: all), e.g. `ensure-environment.mjs packages`.
  const names = process.argv.slice(2);
  const unknown = names.filter((n) => !STEPS.some(([s]) => s === n));
  if (unknown.length) {
    process.stderr.write(`ensure-environment: unknown step ${unknown.join(', ')} (steps: ${STEPS.map(([s]) => s).join(', ')})\n`);
    process.exitCode = 2;
  } else if (process.env.HOTDOG_SKIP_ENVIRONMENT_CHECK !== '1') {
    process.exitCode = await ensureEnvironment({ steps: names.length ? STEPS.filter(([s]) => names.includes(s)) : STEPS });
  }
}

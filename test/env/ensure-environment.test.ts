// scripts/ensure-environment.mjs, the pre-script of npm run finetune / npm test: its decisions (install the
// packages? run the driver set-up here, or stop with which command?) with fake systems and a fake process
// runner, since a test must not run apt or npm ci.
import { describe, expect, it } from 'vitest';
import {
  ensureEnvironment,
  packagesOutOfDate,
  parseOsRelease,
  planAdapterFix,
  planChromiumFix,
  STEPS,
  Stop,
  type Lockfile,
} from '../../scripts/ensure-environment.mjs';

const DEBIAN = parseOsRelease('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_CODENAME=bookworm\n');
const UBUNTU = parseOsRelease('ID=ubuntu\nID_LIKE=debian\n');
const MINT = parseOsRelease('ID=linuxmint\nID_LIKE="ubuntu debian"\n');
const FEDORA = parseOsRelease('ID=fedora\n');
const ALPINE = parseOsRelease('ID=alpine\nPRETTY_NAME="Alpine Linux v3.19"\n');

describe('planAdapterFix', () => {
  it('runs the driver set-up itself on Debian/Ubuntu (and derivatives) as root', () => {
    for (const osRelease of [DEBIAN, UBUNTU, MINT]) {
      expect(planAdapterFix({ platform: 'linux', uid: 0, osRelease })).toEqual({ action: 'setup', command: 'bash scripts/setup-cpu-driver.sh' });
    }
  });

  it('stops with the exact command elsewhere', () => {
    const stop = (platform: string, uid: number, osRelease: Record<string, string>) => {
      const plan = planAdapterFix({ platform, uid, osRelease });
      expect(plan.action).toBe('stop');
      return plan.action === 'stop' ? plan.message : '';
    };
    expect(stop('linux', 1000, DEBIAN)).toMatch(/\n {2}sudo bash scripts\/setup-cpu-driver\.sh$/);
    expect(stop('linux', 1000, UBUNTU)).toMatch(/sudo bash scripts\/setup-cpu-driver\.sh$/);
    expect(stop('linux', 0, FEDORA)).toMatch(/\n {2}sudo dnf install -y mesa-vulkan-drivers vulkan-loader$/);
    expect(stop('linux', 0, parseOsRelease('ID=arch'))).toMatch(/sudo pacman -S --needed vulkan-swrast vulkan-icd-loader$/);
    expect(stop('linux', 0, ALPINE)).toMatch(/Alpine Linux v3\.19.*mesa-vulkan-drivers/);
    expect(stop('darwin', 501, {})).toMatch(/Metal/);
    expect(stop('win32', -1, {})).toMatch(/D3D12/);
  });
});

describe('packagesOutOfDate', () => {
  const lock: Lockfile = {
    packages: {
      '': {},
      'node_modules/a': { version: '1.0.0' },
      'node_modules/b': { version: '2.0.0' },
      'node_modules/@esbuild/darwin-arm64': { version: '0.1.0', optional: true },
    },
  };
  it('is null when npm installed exactly the lockfile (optional binaries of other platforms absent)', () => {
    expect(packagesOutOfDate(lock, { packages: { 'node_modules/a': { version: '1.0.0' }, 'node_modules/b': { version: '2.0.0' } } })).toBeNull();
  });
  it('says what differs', () => {
    expect(packagesOutOfDate(lock, null)).toBe('node_modules is missing');
    expect(packagesOutOfDate(lock, { packages: { 'node_modules/a': { version: '1.0.0' } } })).toBe('b is not installed');
    expect(packagesOutOfDate(lock, { packages: { 'node_modules/a': { version: '0.9.0' }, 'node_modules/b': { version: '2.0.0' } } })).toBe(
      'a is 0.9.0, package-lock.json wants 1.0.0',
    );
    expect(
      packagesOutOfDate(lock, { packages: { 'node_modules/a': { version: '1.0.0' }, 'node_modules/b': { version: '2.0.0' }, 'node_modules/c': { version: '1.0.0' } } }),
    ).toBe('c is installed but no longer in package-lock.json');
  });
});

describe('ensureEnvironment', () => {
  it('is silent and succeeds on this machine (packages installed, an adapter found)', async () => {
    const log: string[] = [];
    // (Not the chromium step: on a machine without Chromium it would install it.)
    const steps = STEPS.filter(([name]) => name !== 'chromium');
    expect(await ensureEnvironment({ log: (l) => log.push(l), steps })).toBe(0);
    expect(log).toEqual([]);
  });

  it('stops at the first step that cannot be fixed, naming it, and runs no later step', async () => {
    const log: string[] = [];
    const ran: string[] = [];
    const code = await ensureEnvironment({
      log: (l) => log.push(l),
      steps: [
        ['first', async (ctx) => ctx.say('fixing something')],
        ['second', async () => { throw new Stop('run this:\n  some command'); }],
        ['third', async () => void ran.push('third')],
      ],
    });
    expect(code).toBe(1);
    expect(log).toEqual(['ensure-environment (first): fixing something', 'ensure-environment (second): run this:\n  some command']);
    expect(ran).toEqual([]);
  });

  it('has the packages step before the adapter step (the probe needs the webgpu package)', () => {
    expect(STEPS.map(([name]) => name)).toEqual(['packages', 'webgpu-adapter', 'chromium']);
  });
});

describe('planChromiumFix', () => {
  it('installs Debian\'s chromium itself on Debian/Ubuntu as root', () => {
    const osRelease = parseOsRelease('ID=debian\nVERSION_ID="12"');
    expect(planChromiumFix({ platform: 'linux', uid: 0, osRelease })).toEqual({ action: 'setup', command: 'bash scripts/setup-chromium.sh' });
  });
  it('only notes the command elsewhere (the browser tests are skipped, nothing stops)', () => {
    const debian = parseOsRelease('ID=ubuntu');
    expect(planChromiumFix({ platform: 'linux', uid: 1000, osRelease: debian })).toEqual({
      action: 'note',
      message: 'No Chromium was found, so the browser tests will be skipped. To run them: sudo bash scripts/setup-chromium.sh',
    });
    expect(planChromiumFix({ platform: 'darwin', uid: 501, osRelease: {} }).action).toBe('note');
  });
});

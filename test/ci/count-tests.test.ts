// CI's test count (.ci/count-reporter.mjs writes per-project counts, .ci/count-tests.mjs sums them): runs a nested
// vitest on the small cases in test/ci/fixtures and checks the closing line CI reads. A failed hook (vitest then
// marks its tests skipped), a file that does not load and an unhandled error must each count as a failure; so must a
// required project that is missing (the browser project without Chromium) or a project that ran no test.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../helpers/cli-process.js';

const tmp = mkdtempSync(join(tmpdir(), 'count-tests-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** The environment of a nested vitest: this one's, without the variables that mark a vitest worker. */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('VITEST') && k !== 'NODE_OPTIONS') env[k] = v;
  return { ...env, ...extra };
}

/**
 * Runs case files (names without .case.ts) under the count reporter; returns the report's path and vitest's exit
 * status. Each failing case runs beside a passing file, so no failure is counted only because nothing ran.
 */
function runCase(names: string | string[], extraEnv: Record<string, string> = {}): { report: string; status: number | null } {
  const list = typeof names === 'string' ? [names] : names;
  const report = join(tmp, `${list.join('+')}${extraEnv.HOTDOG_FIXTURE_EMPTY_PROJECT ? '-empty' : ''}.json`);
  const r = spawnSync(
    process.execPath,
    [
      join('node_modules', 'vitest', 'vitest.mjs'),
      'run',
      '--config',
      join('test', 'ci', 'fixtures', 'vitest.config.ts'),
      `--reporter=${join(REPO_ROOT, '.ci', 'count-reporter.mjs')}`,
      ...list.map((n) => `${n}.case.ts`),
    ],
    { cwd: REPO_ROOT, env: cleanEnv({ HOTDOG_TEST_COUNTS: report, ...extraEnv }), encoding: 'utf8' },
  );
  return { report, status: r.status };
}

/** .ci/count-tests.mjs on these arguments: its last line and exit status. */
function count(...args: string[]): { line: string; out: string; status: number | null } {
  const r = spawnSync(process.execPath, [join('.ci', 'count-tests.mjs'), ...args], { cwd: REPO_ROOT, encoding: 'utf8' });
  const lines = r.stdout.trim().split('\n');
  return { line: lines[lines.length - 1]!, out: r.stdout, status: r.status };
}

describe('.ci/count-tests.mjs over .ci/count-reporter.mjs reports', () => {
  it('counts passed and skipped tests, and exits 0 when nothing failed', () => {
    const { report, status } = runCase('passes');
    expect(status).toBe(0);
    expect(count(report)).toMatchObject({ line: '2 passed, 0 failed, 1 skipped', status: 0 });
  });

  it("counts a describe block's failed beforeAll as a failure, not as skipped tests only", () => {
    const { report, status } = runCase('suite-setup-fails');
    expect(status).not.toBe(0);
    const c = count(report);
    expect(c.line).toBe('1 passed, 1 failed, 2 skipped');
    expect(c.out).toMatch(/failed outside a test: \[node\] suite-setup-fails\.case\.ts > a suite whose set-up fails: set-up failed/);
    expect(c.status).toBe(1);
  });

  it("counts a file's failed beforeAll and a file that does not load as failures", () => {
    expect(count(runCase(['passes', 'file-setup-fails']).report)).toMatchObject({ line: '2 passed, 1 failed, 2 skipped', status: 1 });
    expect(count(runCase(['passes', 'load-fails']).report)).toMatchObject({ line: '2 passed, 1 failed, 1 skipped', status: 1 });
  });

  it('counts an unhandled error as a failure even when every test passed', () => {
    const c = count(runCase('unhandled').report);
    expect(c.line).toBe('1 passed, 1 failed, 0 skipped');
    expect(c.out).toMatch(/unhandled error: nobody awaited this/);
  });

  it('counts a required project that is missing, a project that ran no test, and a report never written', () => {
    const { report } = runCase('passes');
    expect(count(`${report}=node`)).toMatchObject({ line: '2 passed, 0 failed, 1 skipped', status: 0 });
    const missing = count(`${report}=node,browser`);
    expect(missing.line).toBe('2 passed, 1 failed, 1 skipped');
    expect(missing.out).toMatch(/the run had no 'browser' project/);
    const empty = count(runCase('passes', { HOTDOG_FIXTURE_EMPTY_PROJECT: '1' }).report);
    expect(empty.line).toBe('2 passed, 1 failed, 1 skipped');
    expect(empty.out).toMatch(/project 'empty' ran no test/);
    expect(count(report, join(tmp, 'never-written.json'))).toMatchObject({ line: '2 passed, 1 failed, 1 skipped', status: 1 });
  });
});

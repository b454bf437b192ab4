// A vitest reporter for CI (.ci/run): writes to the file named by HOTDOG_TEST_COUNTS, per project, the tests that
// passed, failed and were skipped, and every failure that is no test's own: a file that failed to load, a hook that
// failed (vitest then marks the suite's tests skipped, so they would otherwise read as "0 failed, N skipped"), and
// each unhandled error. .ci/count-tests.mjs sums these files.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, relative } from 'node:path';

export default class CountReporter {
  onInit(vitest) {
    this.vitest = vitest;
  }

  onTestRunEnd(testModules, unhandledErrors, reason) {
    const out = process.env.HOTDOG_TEST_COUNTS;
    if (!out) throw new Error('count-reporter: set HOTDOG_TEST_COUNTS to the file to write');
    const root = this.vitest.config.root;
    const projects = {};
    const counts = (name) => (projects[name] ??= { passed: 0, failed: 0, skipped: 0 });
    // Every configured project is listed, also one that ran no file.
    for (const p of this.vitest.projects) counts(p.name);
    const failures = [];
    for (const m of testModules) {
      const c = counts(m.project.name);
      for (const t of m.children.allTests()) {
        const state = t.result().state;
        if (state === 'passed') c.passed++;
        else if (state === 'failed') c.failed++;
        else c.skipped++;
      }
      // Errors of the file itself (it did not load, or a top-level hook failed) and of its suites (their hooks).
      for (const s of [m, ...m.children.allSuites()]) {
        const errors = s.errors();
        if (errors.length === 0) continue;
        c.failed++;
        const where = s.type === 'module' ? relative(root, m.moduleId) : `${relative(root, m.moduleId)} > ${s.fullName}`;
        failures.push(`[${m.project.name}] ${where}: ${errors[0].message}`);
      }
    }
    const report = { projects, failures, unhandledErrors: unhandledErrors.map((e) => e.message ?? String(e)), reason };
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);
  }
}

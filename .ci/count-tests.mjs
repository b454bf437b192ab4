// Sums the files .ci/count-reporter.mjs wrote and prints the plain closing line CI reads:
// "N passed, N failed, N skipped". Usage: node .ci/count-tests.mjs REPORT[=PROJECT,PROJECT...] ...
// Counted as failures, each with a line saying why: a report that is missing (its run died before writing it), a
// file that failed to load or whose hook failed, an unhandled error, a project named after `=` that the run did not
// have (e.g. the browser project when Chromium was missing), and a project that ran no test at all.
// Exits 1 when anything failed.
import { existsSync, readFileSync } from 'node:fs';

let passed = 0;
let failed = 0;
let skipped = 0;
const fail = (why) => {
  console.log(`count-tests: ${why}; counted as 1 failed`);
  failed++;
};
for (const arg of process.argv.slice(2)) {
  const [file, required] = arg.split('=');
  if (!existsSync(file)) {
    fail(`${file} was not written (that test run did not finish)`);
    continue;
  }
  const r = JSON.parse(readFileSync(file, 'utf8'));
  // A browser project with instances is named after them ("browser (chromium)").
  const ran = (name) => Object.keys(r.projects).some((p) => p === name || p.startsWith(`${name} (`));
  for (const name of required ? required.split(',') : []) if (!ran(name)) fail(`${file}: the run had no '${name}' project`);
  for (const [name, c] of Object.entries(r.projects)) {
    passed += c.passed;
    failed += c.failed;
    skipped += c.skipped;
    if (c.passed + c.failed === 0) fail(`${file}: project '${name}' ran no test`);
  }
  for (const f of r.failures) console.log(`count-tests: failed outside a test: ${f}`);
  for (const e of r.unhandledErrors) fail(`${file}: unhandled error: ${e}`);
  if (r.reason === 'interrupted') fail(`${file}: the run was interrupted`);
}
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exitCode = failed > 0 ? 1 : 0;

// Sums vitest's JSON reports (--reporter=json) and prints the plain closing line CI reads:
// "N passed, N failed, N skipped". A report that is missing (its run died before writing it) counts as one failure.
import { existsSync, readFileSync } from 'node:fs';

let passed = 0;
let failed = 0;
let skipped = 0;
for (const file of process.argv.slice(2)) {
  if (!existsSync(file)) {
    console.log(`count-tests: ${file} was not written (that test run did not finish); counted as 1 failed`);
    failed++;
    continue;
  }
  const r = JSON.parse(readFileSync(file, 'utf8'));
  passed += r.numPassedTests;
  failed += r.numFailedTests;
  skipped += r.numPendingTests + r.numTodoTests;
  // Files that failed to load have no tests to count; each is one failure.
  failed += (r.testResults ?? []).filter((t) => t.status === 'failed' && t.assertionResults.length === 0).length;
}
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);

// Reads a file of this repository from a test, synchronously, under Node and in the browser project alike: Node
// reads the disk; a browser page asks vite's dev server (which serves the repository root) with a synchronous
// request, so test files can load fixtures at collection time in both.

// Loaded only under Node (module URLs are file: there, http: in the browser project).
const HERE = import.meta.url; // a variable: vite rewrites `new URL(template, import.meta.url)` itself
const nodeFs = HERE.startsWith('file:') ? await import('node:fs') : null;

/** The text of `path`, relative to the repository root. */
export function readRepoText(path: string): string {
  const url = new URL(`../../${path}`, HERE);
  if (nodeFs) return nodeFs.readFileSync(url, 'utf8');
  const request = new XMLHttpRequest();
  request.open('GET', url.href, false);
  request.send();
  if (request.status !== 200) throw new Error(`${path}: the test server answered ${request.status} for ${url.href}`);
  return request.responseText;
}

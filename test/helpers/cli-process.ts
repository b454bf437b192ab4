// Runs one of the CLIs (src/cli/*.ts) as a child process, as `npm run <name>` would, and collects its output.
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliRun {
  child: ChildProcess;
  result: Promise<CliResult>;
}

/**
 * Starts `tsx src/cli/<name>.ts args...` (with Node options `nodeArgs`, and `env` added to this process's
 * environment); `onLine` sees each stdout line as it comes.
 */
export function startCli(
  name: string,
  args: readonly string[],
  onLine?: (line: string, child: ChildProcess) => void,
  nodeArgs: readonly string[] = [],
  env: Record<string, string> = {},
): CliRun {
  const child = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', join('src', 'cli', `${name}.ts`), ...args], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  let stdout = '';
  let stderr = '';
  let partial = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
    partial += chunk;
    const lines = partial.split('\n');
    partial = lines.pop()!;
    for (const line of lines) onLine?.(line, child);
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const result = new Promise<CliResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return { child, result };
}

export function runCli(name: string, args: readonly string[], nodeArgs: readonly string[] = []): Promise<CliResult> {
  return startCli(name, args, undefined, nodeArgs).result;
}

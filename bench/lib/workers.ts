// Orchestrator side of the bench workers: a Node worker over IPC (bench/workers/*.ts through tsx, or their bundles)
// or a Python worker over JSON lines (bench/peers/torch_step.py). One request at a time per worker.
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { ReplyEnvelope, Request } from './protocol.js';

export class WorkerClient {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private exited: string | null = null;
  /** The last error line on stderr, named when the worker exits. */
  private lastError = '';
  /** stderr held back until the first reply (a peer that cannot start is then reported in one line), or null. */
  private held: string[] | null;

  private constructor(
    readonly name: string,
    private readonly child: ChildProcess,
    send: (msg: unknown) => void,
    holdStderr: boolean,
  ) {
    this.send = send;
    this.held = holdStderr ? [] : null;
    createInterface({ input: child.stderr! }).on('line', (line) => this.stderr(line));
    // 'close', not 'exit': stderr has been read to its end by then.
    child.on('close', (code, signal) => {
      if (this.exited) return;
      const why = this.lastError ? `: ${this.lastError}` : '';
      this.exited = `${name} worker exited (${signal ? `signal ${signal}` : `code ${code}`})${why}`;
      for (const p of this.pending.values()) p.reject(new Error(this.exited));
      this.pending.clear();
    });
    child.on('error', (e) => {
      this.exited = `${name} worker failed: ${e.message}`;
      for (const p of this.pending.values()) p.reject(new Error(this.exited));
      this.pending.clear();
    });
  }

  private readonly send: (msg: unknown) => void;

  /**
   * A Node worker: `file` run with tsx (a bundled .mjs with plain node), an IPC channel, stderr filtered of Dawn's
   * start-up warnings. `holdStderr` (peers): its stderr is printed only once it has answered a request.
   */
  static node(name: string, file: string, env: NodeJS.ProcessEnv, { holdStderr = false } = {}): WorkerClient {
    const execArgv = file.endsWith('.ts') ? ['--import', 'tsx'] : [];
    const child = fork(file, [], { execArgv, env, stdio: ['ignore', 'inherit', 'pipe', 'ipc'] });
    const client = new WorkerClient(name, child, (msg) => child.send(msg as object), holdStderr);
    child.on('message', (msg) => client.receive(msg as ReplyEnvelope));
    return client;
  }

  /** A Python worker speaking JSON lines on stdin/stdout. */
  static python(name: string, python: string, script: string, env: NodeJS.ProcessEnv): WorkerClient {
    const child = spawn(python, [script], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    const client = new WorkerClient(name, child, (msg) => child.stdin.write(`${JSON.stringify(msg)}\n`), false);
    createInterface({ input: child.stdout }).on('line', (line) => {
      if (!line.trim()) return;
      try {
        client.receive(JSON.parse(line) as ReplyEnvelope);
      } catch {
        process.stderr.write(`[${name}] ${line}\n`);
      }
    });
    return client;
  }

  private stderr(line: string): void {
    if (DAWN_NOISE.test(line)) return;
    if (/\b\w*Error\b/.test(line)) this.lastError = line.trim();
    if (this.held) this.held.push(line);
    else process.stderr.write(`[${this.name}] ${line}\n`);
  }

  private receive(reply: ReplyEnvelope): void {
    if (this.held) {
      for (const line of this.held) process.stderr.write(`[${this.name}] ${line}\n`);
      this.held = null;
    }
    const p = this.pending.get(reply.id);
    if (!p) return;
    this.pending.delete(reply.id);
    if (reply.ok) p.resolve(reply.result);
    else p.reject(new Error(`${this.name}: ${reply.error}`));
  }

  call<T>(request: Request): Promise<T> {
    if (this.exited) return Promise.reject(new Error(this.exited));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.send({ id, request });
    });
  }

  /** Ends the worker and waits for it to exit. */
  async close(): Promise<void> {
    if (this.exited || this.child.exitCode !== null || this.child.signalCode !== null) return;
    const done = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    if (this.child.connected) this.child.disconnect();
    this.child.stdin?.end();
    const timer = setTimeout(() => this.child.kill('SIGTERM'), 10_000);
    await done;
    clearTimeout(timer);
  }
}

const DAWN_NOISE = /artificially reduced from .* to fit dynamic offset allocation limit/;

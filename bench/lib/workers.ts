// Orchestrator side of the bench workers: a Node worker over IPC (bench/workers/*.ts through tsx, or their bundles)
// or a Python worker over JSON lines (bench/peers/torch_step.py). One request at a time per worker.
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import type { ReplyEnvelope, Request } from './protocol.js';

export class WorkerClient {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private exited: string | null = null;

  private constructor(
    readonly name: string,
    private readonly child: ChildProcess,
    send: (msg: unknown) => void,
  ) {
    this.send = send;
    child.on('exit', (code, signal) => {
      this.exited = `${name} worker exited (${signal ? `signal ${signal}` : `code ${code}`})`;
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
   * start-up warnings.
   */
  static node(name: string, file: string, env: NodeJS.ProcessEnv): WorkerClient {
    const execArgv = file.endsWith('.ts') ? ['--import', 'tsx'] : [];
    const child = fork(file, [], { execArgv, env, stdio: ['ignore', 'inherit', 'pipe', 'ipc'] });
    forwardStderr(name, child.stderr!);
    const client = new WorkerClient(name, child, (msg) => child.send(msg as object));
    child.on('message', (msg) => client.receive(msg as ReplyEnvelope));
    return client;
  }

  /** A Python worker speaking JSON lines on stdin/stdout. */
  static python(name: string, python: string, script: string, env: NodeJS.ProcessEnv): WorkerClient {
    const child = spawn(python, [script], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    forwardStderr(name, child.stderr);
    const client = new WorkerClient(name, child, (msg) => child.stdin.write(`${JSON.stringify(msg)}\n`));
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

  private receive(reply: ReplyEnvelope): void {
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
    if (this.exited) return;
    const done = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    if (this.child.connected) this.child.disconnect();
    this.child.stdin?.end();
    const timer = setTimeout(() => this.child.kill('SIGTERM'), 10_000);
    await done;
    clearTimeout(timer);
  }
}

const DAWN_NOISE = /artificially reduced from .* to fit dynamic offset allocation limit/;

function forwardStderr(name: string, stream: Readable): void {
  createInterface({ input: stream }).on('line', (line) => {
    if (!DAWN_NOISE.test(line)) process.stderr.write(`[${name}] ${line}\n`);
  });
}

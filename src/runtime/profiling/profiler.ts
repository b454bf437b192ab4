// Attributes GPU time to op calls. Attach a Profiler to a runtime, run the work, `await finish()`: every command
// recorded meanwhile comes back with its time, its kind (op-kinds.ts) and the op scope it was recorded in.
//
// Timers:
// - 'timestamp' (adapters with the timestamp-query feature): each dispatch is recorded in a compute pass of its
//   own with timestampWrites, each copy/clear between two empty timestamp passes; the queries are resolved per
//   submit and read back by finish(). Dawn rounds timestamps to about 65 us unless its `timestamp_quantization`
//   toggle is disabled (Node: the Dawn option 'disable-dawn-features=timestamp_quantization').
// - 'replay' (any adapter): the work runs normally; finish() records every command again alone, submits it and
//   waits, and takes the wall-clock time less that of an empty wait. Replaying re-runs updates (SGD, BatchNorm
//   running statistics), so profile throwaway state only.
// - 'none': scopes and commands are recorded (FLOP counts, dispatch counts), nothing is timed.
// Detached (rt.profiler === null), the runtime records exactly as without this file.
import type { CommandTimestamps, ProfilerHooks, RecordedCommand, Runtime } from '../runtime.js';
import { BufferUsage } from '../buffer-pool.js';
import { classifyKernel, type OpKind } from './op-kinds.js';

export type ProfileTimer = 'timestamp' | 'replay' | 'none';

export interface ScopeInfo {
  id: number;
  kind: OpKind;
  label: string;
  /** Direct FLOP count the op declared (0 when it declared none). */
  flop: number;
  parent: ScopeInfo | null;
}

export interface ProfiledEvent {
  seq: number;
  /** Kernel name, or 'copyBufferToBuffer' / 'clearBuffer'. */
  name: string;
  op: RecordedCommand['op'];
  kind: OpKind;
  /** Innermost op scope open when the command was recorded. */
  scope: ScopeInfo | null;
  /** Index of the submit (command buffer) it went out in. */
  submit: number;
  ms: number;
  /** Timestamp timer only: start and end on the GPU clock, ms from the first timestamp of the run. */
  startMs?: number;
  endMs?: number;
}

interface PendingEvent extends Omit<ProfiledEvent, 'ms'> {
  cmd: RecordedCommand | null;
  slot: { use: QueryUse; index: number } | null;
}

interface QueryUse {
  querySet: GPUQuerySet;
  used: number;
  resolve: GPUBuffer | null;
}

const QUERY_SET_SIZE = 4096;
const NS_PER_MS = 1e6;

export function commandName(cmd: RecordedCommand): string {
  return { dispatch: cmd.op === 'dispatch' ? cmd.def.name : '', copy: 'copyBufferToBuffer', copyToTexture: 'copyBufferToTexture', clear: 'clearBuffer' }[cmd.op];
}

export class Profiler implements ProfilerHooks {
  private readonly stack: ScopeInfo[] = [];
  private readonly allScopes: ScopeInfo[] = [];
  private readonly events: PendingEvent[] = [];
  private encoderUses: QueryUse[] = [];
  private readonly resolvedUses: QueryUse[] = [];
  private readonly freeSets: GPUQuerySet[] = [];
  private submit = 0;
  private attached = false;

  constructor(
    readonly rt: Runtime,
    readonly timer: ProfileTimer,
  ) {
    if (timer === 'timestamp' && !rt.ctx.features.has('timestamp-query')) {
      throw new Error("profiler: the 'timestamp' timer needs the adapter's timestamp-query feature; use the 'replay' timer");
    }
  }

  /** The timer to use on this runtime's device: timestamps when it has them, else replay. */
  static defaultTimer(rt: Runtime): ProfileTimer {
    return rt.ctx.features.has('timestamp-query') ? 'timestamp' : 'replay';
  }

  /** Starts recording (work recorded before this call is submitted first, unprofiled). */
  start(): this {
    if (this.rt.profiler) throw new Error('profiler: another profiler is attached to this runtime');
    this.rt.flush();
    this.stack.length = 0;
    this.allScopes.length = 0;
    this.events.length = 0;
    this.submit = 0;
    this.rt.profiler = this;
    this.attached = true;
    return this;
  }

  /** Every scope opened while attached, in opening order. */
  get scopes(): readonly ScopeInfo[] {
    return this.allScopes;
  }

  begin(kind: OpKind, label: string, flop = 0): void {
    const scope: ScopeInfo = { id: this.allScopes.length, kind, label, flop, parent: this.stack.at(-1) ?? null };
    this.allScopes.push(scope);
    this.stack.push(scope);
  }

  end(): void {
    if (!this.stack.pop()) throw new Error('profiler: end() without an open scope');
  }

  record(cmd: RecordedCommand): CommandTimestamps | undefined {
    const name = commandName(cmd);
    const scope = this.stack.at(-1) ?? null;
    const event: PendingEvent = {
      seq: this.events.length,
      name,
      op: cmd.op,
      kind: classifyKernel(name, scope?.kind ?? null),
      scope,
      submit: this.submit,
      cmd: this.timer === 'replay' ? cmd : null,
      slot: null,
    };
    this.events.push(event);
    if (this.timer !== 'timestamp') return undefined;
    let use = this.encoderUses.at(-1);
    if (!use || use.used + 2 > QUERY_SET_SIZE) {
      const querySet = this.freeSets.pop() ?? this.rt.device.createQuerySet({ type: 'timestamp', count: QUERY_SET_SIZE, label: 'profiler' });
      use = { querySet, used: 0, resolve: null };
      this.encoderUses.push(use);
    }
    event.slot = { use, index: use.used };
    use.used += 2;
    return { querySet: use.querySet, begin: event.slot.index, end: event.slot.index + 1 };
  }

  beforeSubmit(encoder: GPUCommandEncoder): void {
    for (const use of this.encoderUses) {
      use.resolve = this.rt.device.createBuffer({
        size: use.used * 8,
        usage: 0x200 /* GPUBufferUsage.QUERY_RESOLVE */ | BufferUsage.COPY_SRC,
        label: 'profiler.resolve',
      });
      encoder.resolveQuerySet(use.querySet, 0, use.used, use.resolve, 0);
      this.resolvedUses.push(use);
    }
    this.encoderUses = [];
    this.submit++;
  }

  /** Stops recording, waits for the GPU and returns the commands with their times (recording order). */
  async finish(): Promise<ProfiledEvent[]> {
    if (!this.attached) throw new Error('profiler: finish() without start()');
    if (this.stack.length) throw new Error(`profiler: scope "${this.stack.at(-1)!.label}" was not closed`);
    this.rt.flush();
    this.rt.profiler = null;
    this.attached = false;
    await this.rt.sync();
    const times = this.timer === 'timestamp' ? await this.readTimestamps() : this.timer === 'replay' ? await this.replay() : null;
    return this.events.map(({ cmd: _cmd, slot: _slot, ...e }, i) => ({ ...e, ...(times?.[i] ?? { ms: 0 }) }));
  }

  /** Detaches without timing anything (after an error). */
  abort(): void {
    if (this.rt.profiler === this) this.rt.profiler = null;
    this.attached = false;
    this.stack.length = 0;
  }

  private async readTimestamps(): Promise<{ ms: number; startMs: number; endMs: number }[]> {
    const raw = new Map<QueryUse, BigUint64Array>();
    for (const use of this.resolvedUses) {
      raw.set(use, new BigUint64Array(await this.rt.read(use.resolve!, 0, use.used * 8)));
      use.resolve!.destroy();
      this.freeSets.push(use.querySet);
    }
    this.resolvedUses.length = 0;
    let base: bigint | null = null;
    for (const e of this.events) {
      const t = raw.get(e.slot!.use)![e.slot!.index]!;
      if (base === null || t < base) base = t;
    }
    return this.events.map((e) => {
      const ts = raw.get(e.slot!.use)!;
      const start = Number(ts[e.slot!.index]! - base!) / NS_PER_MS;
      const end = Number(ts[e.slot!.index + 1]! - base!) / NS_PER_MS;
      return { ms: Math.max(0, end - start), startMs: start, endMs: end };
    });
  }

  private async replay(): Promise<{ ms: number }[]> {
    const rt = this.rt;
    const waits: number[] = [];
    for (let i = 0; i < 11; i++) {
      const t0 = performance.now();
      await rt.sync();
      waits.push(performance.now() - t0);
    }
    const emptyWait = median(waits);
    const out: { ms: number }[] = [];
    for (const e of this.events) {
      const cmd = e.cmd!;
      const t0 = performance.now();
      if (cmd.op === 'dispatch') rt.dispatch(cmd.def, cmd.workgroups, cmd.buffers, cmd.params);
      else if (cmd.op === 'copy') rt.copy(cmd.src, cmd.srcOffset, cmd.dst, cmd.dstOffset, cmd.size);
      else if (cmd.op === 'copyToTexture') rt.copyToTexture(cmd.src, cmd.srcOffset, cmd.bytesPerRow, cmd.dst, cmd.size);
      else rt.clear(cmd.buffer, cmd.offset, cmd.size);
      await rt.sync();
      out.push({ ms: Math.max(0, performance.now() - t0 - emptyWait) });
    }
    return out;
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

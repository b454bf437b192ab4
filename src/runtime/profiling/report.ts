// Aggregates profiled commands (profiler.ts) into the tables the profile CLI prints: time per op kind, per conv
// call (with its GFLOP/s from the direct-convolution FLOP count its scope declared) and per kernel. Pure.
import { CONV_KINDS, OP_KINDS, type OpKind } from './op-kinds.js';
import type { ProfiledEvent, ScopeInfo } from './profiler.js';

export interface KindRow {
  kind: OpKind;
  description: string;
  ms: number;
  /** Of the summed GPU time. */
  share: number;
  commands: number;
}

export interface ConvCallRow {
  /** 1-based, in recording order. */
  call: number;
  kind: OpKind;
  label: string;
  gflop: number;
  /** Everything recorded inside the call's scope, copies included. */
  ms: number;
  /** Without the copy-kind commands (padding, transposes). */
  gemmMs: number;
  copyMs: number;
  gflops: number;
  gemmGflops: number;
  share: number;
  commands: number;
}

export interface ConvShapeRow {
  kind: OpKind;
  label: string;
  calls: number;
  gflop: number;
  ms: number;
  gflops: number;
  share: number;
}

export interface KernelRow {
  name: string;
  kind: OpKind;
  ms: number;
  share: number;
  commands: number;
}

export interface ProfileSummary {
  /** Sum of the commands' GPU times. */
  gpuMs: number;
  /** Timestamp timer: time between consecutive commands of one submit that no command covers (pass overhead). */
  betweenCommandsMs: number | null;
  commands: number;
  submits: number;
  kinds: KindRow[];
  convCalls: ConvCallRow[];
  convShapes: ConvShapeRow[];
  kernels: KernelRow[];
  /** Direct-convolution GFLOP per conv kind (from the scopes) and in all. */
  convGflop: Record<string, number>;
  /** All conv GFLOP over the conv kinds' time. */
  convGflops: number;
}

/** The nearest enclosing scope (the event's own included) whose kind is a conv kind. */
function convScopeOf(scope: ScopeInfo | null): ScopeInfo | null {
  for (let s = scope; s; s = s.parent) if (CONV_KINDS.includes(s.kind)) return s;
  return null;
}

export function summarizeProfile(events: readonly ProfiledEvent[], scopes: readonly ScopeInfo[]): ProfileSummary {
  const gpuMs = events.reduce((a, e) => a + e.ms, 0);
  const share = (ms: number): number => (gpuMs > 0 ? ms / gpuMs : 0);

  const kindMs = new Map<OpKind, { ms: number; n: number }>();
  const kernelMs = new Map<string, { kind: OpKind; ms: number; n: number }>();
  const callMs = new Map<ScopeInfo, { ms: number; gemmMs: number; copyMs: number; n: number }>();
  for (const e of events) {
    const k = kindMs.get(e.kind) ?? { ms: 0, n: 0 };
    k.ms += e.ms;
    k.n++;
    kindMs.set(e.kind, k);
    const kn = kernelMs.get(e.name) ?? { kind: e.kind, ms: 0, n: 0 };
    kn.ms += e.ms;
    kn.n++;
    kernelMs.set(e.name, kn);
    const conv = convScopeOf(e.scope);
    if (conv) {
      const c = callMs.get(conv) ?? { ms: 0, gemmMs: 0, copyMs: 0, n: 0 };
      c.ms += e.ms;
      c.n++;
      if (e.kind === 'copy') c.copyMs += e.ms;
      else c.gemmMs += e.ms;
      callMs.set(conv, c);
    }
  }

  const kinds: KindRow[] = (Object.keys(OP_KINDS) as OpKind[])
    .filter((kind) => kindMs.has(kind))
    .map((kind) => ({ kind, description: OP_KINDS[kind], ms: kindMs.get(kind)!.ms, share: share(kindMs.get(kind)!.ms), commands: kindMs.get(kind)!.n }));

  const gflops = (gflop: number, ms: number): number => (ms > 0 ? gflop / (ms / 1e3) : 0);
  const convCalls: ConvCallRow[] = scopes
    .filter((s) => CONV_KINDS.includes(s.kind))
    .map((s, i) => {
      const t = callMs.get(s) ?? { ms: 0, gemmMs: 0, copyMs: 0, n: 0 };
      const gflop = s.flop / 1e9;
      return {
        call: i + 1,
        kind: s.kind,
        label: s.label,
        gflop,
        ms: t.ms,
        gemmMs: t.gemmMs,
        copyMs: t.copyMs,
        gflops: gflops(gflop, t.ms),
        gemmGflops: gflops(gflop, t.gemmMs),
        share: share(t.ms),
        commands: t.n,
      };
    });

  const byShape = new Map<string, ConvShapeRow>();
  for (const c of convCalls) {
    const key = `${c.kind}\u0000${c.label}`;
    const row = byShape.get(key) ?? { kind: c.kind, label: c.label, calls: 0, gflop: 0, ms: 0, gflops: 0, share: 0 };
    row.calls++;
    row.gflop += c.gflop;
    row.ms += c.ms;
    byShape.set(key, row);
  }
  const convShapes = [...byShape.values()].map((r) => ({ ...r, gflops: gflops(r.gflop, r.ms), share: share(r.ms) }));

  const kernels: KernelRow[] = [...kernelMs.entries()]
    .map(([name, k]) => ({ name, kind: k.kind, ms: k.ms, share: share(k.ms), commands: k.n }))
    .sort((a, b) => b.ms - a.ms);

  const convGflop: Record<string, number> = {};
  let totalFlop = 0;
  for (const kind of CONV_KINDS) {
    const f = convCalls.filter((c) => c.kind === kind).reduce((a, c) => a + c.gflop, 0);
    convGflop[kind] = f;
    totalFlop += f;
  }
  convGflop.total = totalFlop;
  const convKindMs = CONV_KINDS.reduce((a, k) => a + (kindMs.get(k)?.ms ?? 0), 0);

  return {
    gpuMs,
    betweenCommandsMs: betweenCommands(events),
    commands: events.length,
    submits: new Set(events.map((e) => e.submit)).size,
    kinds,
    convCalls,
    convShapes,
    kernels,
    convGflop,
    convGflops: gflops(totalFlop, convKindMs),
  };
}

/** Time inside each submit's span (first start to last end) that no command covers; null without timestamps. */
function betweenCommands(events: readonly ProfiledEvent[]): number | null {
  if (!events.length || events.some((e) => e.startMs === undefined || e.endMs === undefined)) return null;
  const spans = new Map<number, { first: number; last: number; busy: number }>();
  for (const e of events) {
    const s = spans.get(e.submit) ?? { first: Infinity, last: -Infinity, busy: 0 };
    s.first = Math.min(s.first, e.startMs!);
    s.last = Math.max(s.last, e.endMs!);
    s.busy += e.ms;
    spans.set(e.submit, s);
  }
  let gap = 0;
  for (const s of spans.values()) gap += Math.max(0, s.last - s.first - s.busy);
  return gap;
}

// ---- text tables --------------------------------------------------------------------------------------------

function table(head: string[], rows: (string | number)[][]): string {
  const cells = [head, ...rows.map((r) => r.map(String))];
  const widths = head.map((_, i) => Math.max(...cells.map((r) => r[i]!.length)));
  const line = (r: string[]): string => `| ${r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
  return [line(cells[0]!), `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`, ...cells.slice(1).map(line)].join('\n');
}

const ms = (v: number): string => v.toFixed(1);
const pct = (v: number): string => `${(v * 100).toFixed(1)}%`;
const gf = (v: number): string => v.toFixed(2);

export interface FormatOptions {
  /** Print every conv call, not only the per-shape totals. */
  calls?: boolean;
  /** How many kernels of the per-kernel table (0: none). */
  topKernels?: number;
}

export function formatProfile(s: ProfileSummary, options: FormatOptions = {}): string {
  const out: string[] = [];
  out.push(
    table(
      ['op kind', 'ms', 'share', 'commands'],
      [...s.kinds.map((k) => [k.description, ms(k.ms), pct(k.share), k.commands]), ['sum of GPU times', ms(s.gpuMs), '100.0%', s.commands]],
    ),
  );
  if (s.betweenCommandsMs !== null) out.push(`between commands inside submits (not in the sum): ${ms(s.betweenCommandsMs)} ms over ${s.submits} submits`);
  if (s.convCalls.length) {
    out.push('');
    out.push(
      `conv: ${gf(s.convGflop.total!)} GFLOP (forward ${gf(s.convGflop['conv.forward']!)}, data gradient ${gf(s.convGflop['conv.backwardData']!)}, ` +
        `weight gradient ${gf(s.convGflop['conv.backwardWeight']!)}) at ${gf(s.convGflops)} GFLOP/s (conv kinds' time, copies excluded)`,
    );
    out.push('');
    out.push(
      table(
        ['conv shape', 'direction', 'calls', 'GFLOP', 'ms', 'GFLOP/s', 'share'],
        s.convShapes.map((r) => [r.label, OP_KINDS[r.kind], r.calls, gf(r.gflop), ms(r.ms), gf(r.gflops), pct(r.share)]),
      ),
    );
  }
  if (options.calls && s.convCalls.length) {
    out.push('');
    out.push(
      table(
        ['#', 'conv call', 'direction', 'GFLOP', 'ms', 'of which copies', 'GFLOP/s', 'GFLOP/s w/o copies', 'share'],
        s.convCalls.map((c) => [c.call, c.label, OP_KINDS[c.kind], gf(c.gflop), ms(c.ms), ms(c.copyMs), gf(c.gflops), gf(c.gemmGflops), pct(c.share)]),
      ),
    );
  }
  const top = options.topKernels ?? 0;
  if (top > 0) {
    out.push('');
    out.push(table(['kernel', 'kind', 'ms', 'share', 'commands'], s.kernels.slice(0, top).map((k) => [k.name, k.kind, ms(k.ms), pct(k.share), k.commands])));
  }
  return out.join('\n');
}

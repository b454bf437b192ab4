import { describe, expect, it } from 'vitest';
import { conv2d } from '../../src/autograd/functions.js';
import { Tensor } from '../../src/runtime/tensor.js';
import { testRuntime } from '../helpers/gpu.js';
import { classifyKernel, CONV_KINDS, type KernelKindRule } from '../../src/runtime/profiling/op-kinds.js';
import { Profiler, type ProfiledEvent, type ScopeInfo } from '../../src/runtime/profiling/profiler.js';
import { formatProfile, summarizeProfile } from '../../src/runtime/profiling/report.js';

describe('classifyKernel', () => {
  const rules: KernelKindRule[] = [
    { match: /^pad$/, kind: 'copy', always: true },
    { match: /^bnStats/, kind: 'bn.forward' },
  ];
  it('attributes a dispatch to its scope, except kernels whose rule says always', () => {
    expect(classifyKernel('gemm', 'conv.forward', rules)).toBe('conv.forward');
    expect(classifyKernel('pad', 'conv.forward', rules)).toBe('copy');
    expect(classifyKernel('bnStats1', 'conv.forward', rules)).toBe('conv.forward');
  });
  it('falls back to the rules outside scopes, and to other', () => {
    expect(classifyKernel('bnStats1', null, rules)).toBe('bn.forward');
    expect(classifyKernel('pad', null, rules)).toBe('copy');
    expect(classifyKernel('mystery', null, rules)).toBe('other');
  });
  it('knows the engine commands and copy kernels by the default rules', () => {
    expect(classifyKernel('copyBufferToBuffer', 'add', undefined)).toBe('copy');
    expect(classifyKernel('clearBuffer', null)).toBe('copy');
    expect(classifyKernel('conv2dTranspose', 'conv.backwardWeight')).toBe('copy');
    expect(classifyKernel('sgdUpdate', null)).toBe('sgd');
  });
});

describe('summarizeProfile', () => {
  const fwd: ScopeInfo = { id: 0, kind: 'conv.forward', label: '4->8 3x3 s1 @8 N2', flop: 2e9, parent: null };
  const inner: ScopeInfo = { id: 1, kind: 'other', label: 'helper inside the conv', flop: 0, parent: fwd };
  const bn: ScopeInfo = { id: 2, kind: 'bn.forward', label: 'bn', flop: 0, parent: null };
  const fwd2: ScopeInfo = { id: 3, kind: 'conv.forward', label: '4->8 3x3 s1 @8 N2', flop: 2e9, parent: null };
  const ev = (seq: number, name: string, kind: ProfiledEvent['kind'], scope: ScopeInfo | null, ms: number, startMs: number, submit = 0): ProfiledEvent => ({
    seq,
    name,
    op: name === 'copyBufferToBuffer' ? 'copy' : 'dispatch',
    kind,
    scope,
    submit,
    ms,
    startMs,
    endMs: startMs + ms,
  });
  const events = [
    ev(0, 'pad', 'copy', fwd, 100, 0),
    ev(1, 'gemm', 'conv.forward', fwd, 900, 100),
    ev(2, 'helper', 'other', inner, 250, 1000),
    ev(3, 'bnStats', 'bn.forward', bn, 500, 1300), // 50 ms gap before it
    ev(4, 'gemm', 'conv.forward', fwd2, 1000, 0, 1),
    ev(5, 'copyBufferToBuffer', 'copy', null, 250, 1000, 1),
  ];
  const s = summarizeProfile(events, [fwd, inner, bn, fwd2]);

  it('sums time per kind, share of the summed GPU time', () => {
    expect(s.gpuMs).toBe(3000);
    const byKind = Object.fromEntries(s.kinds.map((k) => [k.kind, k]));
    expect(byKind['conv.forward']!.ms).toBe(1900);
    expect(byKind.copy!.ms).toBe(350);
    expect(byKind.copy!.commands).toBe(2);
    expect(byKind['bn.forward']!.share).toBeCloseTo(500 / 3000, 12);
    expect(s.kinds.reduce((a, k) => a + k.share, 0)).toBeCloseTo(1, 12);
  });

  it('gives each conv call its nested commands, copies apart, and GFLOP/s from the scope FLOP count', () => {
    expect(s.convCalls).toHaveLength(2);
    const [c1, c2] = s.convCalls;
    expect(c1).toMatchObject({ call: 1, kind: 'conv.forward', ms: 1250, copyMs: 100, gemmMs: 1150, commands: 3, gflop: 2 });
    expect(c1!.gflops).toBeCloseTo(2 / 1.25, 12);
    expect(c1!.gemmGflops).toBeCloseTo(2 / 1.15, 12);
    expect(c2!.gflops).toBeCloseTo(2, 12);
    expect(s.convShapes).toEqual([expect.objectContaining({ calls: 2, gflop: 4, ms: 2250 })]);
    expect(s.convGflop.total).toBe(4);
    expect(s.convGflops).toBeCloseTo(4 / 1.9, 12);
  });

  it('counts uncovered time inside a submit, not across submits', () => {
    expect(s.betweenCommandsMs).toBe(50);
    expect(s.submits).toBe(2);
  });

  it('formats the tables', () => {
    const text = formatProfile(s, { calls: true, topKernels: 3 });
    expect(text).toContain('| conv forward');
    expect(text).toContain('sum of GPU times');
    expect(text.split('\n').filter((l) => l.includes('4->8 3x3 s1 @8 N2')).length).toBe(3);
  });
});

describe('Profiler on the GPU', () => {
  const xShape = [2, 16, 24, 24];
  const wShape = [16, 16, 3, 3];
  const flop = 2 * 2 * 16 * 24 * 24 * 16 * 9;

  async function profileConv(timer: 'timestamp' | 'replay') {
    const rt = await testRuntime();
    const x = Tensor.fromArray(rt, new Float32Array(2 * 16 * 24 * 24).fill(0.5), xShape);
    const w = Tensor.fromArray(rt, new Float32Array(16 * 16 * 9).fill(0.25), wShape);
    const p = new Profiler(rt, timer).start();
    expect(rt.profiler).toBe(p);
    const y = conv2d(x, w, null, { stride: 1, padding: 1 });
    const copy = Tensor.empty(rt, y.shape);
    rt.copy(y.buffer, 0, copy.buffer, 0, y.byteLength);
    const events = await p.finish();
    expect(rt.profiler).toBeNull();
    const [first] = await copy.read();
    for (const t of [x, w, y, copy]) t.release();
    return { events, scopes: p.scopes, first };
  }

  for (const timer of ['timestamp', 'replay'] as const) {
    it(`times a conv call and a copy with the ${timer} timer, attributing by scope`, async () => {
      const { events, scopes, first } = await profileConv(timer);
      expect(first).toBe(0.5 * 0.25 * 16 * 4); // a corner output: 4 taps in bounds; the profiled work ran
      expect(scopes).toEqual([expect.objectContaining({ kind: 'conv.forward', label: '16->16 3x3 s1 @24 N2', flop })]);
      const inConv = events.filter((e) => e.scope === scopes[0]);
      expect(inConv.some((e) => e.kind === 'conv.forward')).toBe(true);
      expect(inConv.every((e) => e.kind === 'conv.forward' || e.kind === 'copy')).toBe(true);
      const outside = events.filter((e) => e.scope === null);
      expect(outside.map((e) => e.name)).toContain('copyBufferToBuffer');
      expect(events.every((e) => Number.isFinite(e.ms) && e.ms >= 0)).toBe(true);
      const gemmMs = inConv.filter((e) => e.kind === 'conv.forward').reduce((a, e) => a + e.ms, 0);
      expect(gemmMs).toBeGreaterThan(0);
      if (timer === 'timestamp') {
        // Commands of one submit follow each other on the GPU clock.
        for (let i = 1; i < events.length; i++) {
          if (events[i]!.submit === events[i - 1]!.submit) expect(events[i]!.startMs!).toBeGreaterThanOrEqual(events[i - 1]!.endMs!);
        }
      }
      const summary = summarizeProfile(events, scopes);
      expect(summary.convGflop['conv.forward']).toBeCloseTo(flop / 1e9, 12);
      expect(CONV_KINDS).toContain(summary.convCalls[0]!.kind);
    });
  }

  it('refuses a second profiler and an unclosed scope', async () => {
    const rt = await testRuntime();
    const p = new Profiler(rt, 'none').start();
    expect(() => new Profiler(rt, 'none').start()).toThrow(/another profiler/);
    p.begin('relu', 'open');
    await expect(p.finish()).rejects.toThrow(/"open" was not closed/);
    p.abort();
    expect(rt.profiler).toBeNull();
  });
});

import { describe, expect, it } from 'vitest';
import { testRuntime } from '../../test/helpers/gpu.js';
import { Tuner, type TuningStore } from './autotune.js';
import { kernelView } from './device.js';
import { Tensor } from './tensor.js';

function memoryStore(): TuningStore & { saved: Map<string, Record<string, string>> } {
  const saved = new Map<string, Record<string, string>>();
  return {
    saved,
    async load(key) {
      return saved.get(key) ?? null;
    },
    async save(key, choices) {
      saved.set(key, { ...choices });
    },
  };
}

describe('Tuner', () => {
  it('runs the default until a shape is tuned, then the fastest variant, and reuses saved choices', async () => {
    const rt = await testRuntime();
    const store = memoryStore();
    const tuner = new Tuner(rt, store);
    await tuner.load();
    // Two variants of the same result: 'slow' fills a large tensor 40 times first, 'fast' does not.
    const ran: string[] = [];
    const prepare = () => ({
      run(v: string) {
        ran.push(v);
        const big = Tensor.empty(rt, [1 << 22]);
        if (v === 'slow') for (let i = 0; i < 40; i++) big.fill(i);
        big.release();
        return Tensor.full(rt, [4], 1);
      },
      release() {},
    });
    expect(tuner.choose('case', ['slow', 'fast'], 'slow', prepare)).toBe('slow');
    expect(tuner.pendingCount).toBe(1);
    // One variant only: nothing to measure.
    expect(tuner.choose('single', ['only'], 'only', prepare)).toBe('only');
    expect(tuner.pendingCount).toBe(1);
    const lines: string[] = [];
    await tuner.tunePending((l) => lines.push(l));
    expect(tuner.pendingCount).toBe(0);
    // Each variant: one warm-up run and `repeats` timed runs.
    expect(ran.filter((v) => v === 'slow')).toHaveLength(1 + tuner.repeats);
    expect(ran.filter((v) => v === 'fast')).toHaveLength(1 + tuner.repeats);
    expect(lines[0]).toMatch(/^tuned case: fast [\d.]+ ms, slow [\d.]+ ms$/);
    expect(tuner.choose('case', ['slow', 'fast'], 'slow', prepare)).toBe('fast');
    expect(store.saved.get(tuner.adapterKey)).toEqual({ case: 'fast' });

    // A new tuner on the same adapter starts from the saved choice; a choice no longer offered is ignored.
    const again = new Tuner(rt, store);
    await again.load();
    expect(again.choose('case', ['slow', 'fast'], 'slow', prepare)).toBe('fast');
    expect(again.choose('case', ['slow', 'other'], 'slow', prepare)).toBe('slow');
    expect(again.pendingCount).toBe(1);
  });

  it('tunes a case noted with first before the cases noted earlier, so that they are timed with its choice', async () => {
    const rt = await testRuntime();
    const tuner = new Tuner(rt, memoryStore());
    await tuner.load();
    tuner.repeats = 1;
    const order: string[] = [];
    const prepare = (key: string) => () => ({
      run(v: string) {
        order.push(`${key}:${v}`);
        // The later cases see the first case's measured choice (here whichever it was), not its fallback.
        if (key !== 'shared') order.push(`sees ${tuner.choose('shared', ['a', 'b'], 'a', prepare('shared'), true)}`);
        return Tensor.full(rt, [4], 1);
      },
      release() {},
    });
    tuner.choose('one', ['x', 'y'], 'x', prepare('one'));
    tuner.choose('two', ['x', 'y'], 'x', prepare('two'));
    tuner.choose('shared', ['a', 'b'], 'a', prepare('shared'), true);
    expect(tuner.pendingCount).toBe(3);
    await tuner.tunePending();
    const cases = order.filter((o) => !o.startsWith('sees')).map((o) => o.split(':')[0]);
    expect([...new Set(cases)]).toEqual(['shared', 'one', 'two']);
    const chosen = tuner.choose('shared', ['a', 'b'], 'a', prepare('shared'));
    expect(new Set(order.filter((o) => o.startsWith('sees')))).toEqual(new Set([`sees ${chosen}`]));
  });

  it('does nothing when disabled', async () => {
    const rt = await testRuntime();
    const tuner = new Tuner(rt, null);
    tuner.enabled = false;
    expect(tuner.choose('case', ['a', 'b'], 'b', () => ({ run: () => Tensor.empty(rt, [1]), release() {} }))).toBe('b');
    expect(tuner.pendingCount).toBe(0);
  });

  it('never chooses an avoided variant while another applies, and forgets the avoidance on avoid([])', async () => {
    const rt = await testRuntime();
    const store = memoryStore();
    store.saved.set(new Tuner(rt, null).adapterKey, { case: 'winograd' });
    const tuner = new Tuner(rt, store);
    await tuner.load();
    const prepare = () => ({ run: (v: string) => Tensor.full(rt, [1], v.length), release() {} });
    tuner.avoid(['winograd']);
    // The saved choice and the default are both avoided: the first variant left, and the case is noted without it.
    expect(tuner.choose('case', ['winograd', 'implicit', 'im2col'], 'winograd', prepare)).toBe('implicit');
    expect(tuner.pendingCount).toBe(1);
    const lines: string[] = [];
    await tuner.tunePending((l) => lines.push(l));
    expect(lines[0]).not.toContain('winograd');
    expect(['implicit', 'im2col']).toContain(tuner.choose('case', ['winograd', 'implicit', 'im2col'], 'winograd', prepare));
    // Nothing else applies: the avoided variant is still used.
    expect(tuner.choose('only', ['winograd'], 'winograd', prepare)).toBe('winograd');
    tuner.avoid([]);
    expect(tuner.choose('fresh', ['winograd', 'implicit'], 'winograd', prepare)).toBe('winograd');
  });

  it('keys choices by the adapter and the driver settings', async () => {
    const rt = await testRuntime();
    const key = new Tuner(rt, null).adapterKey;
    expect(key).toContain(rt.ctx.adapterInfo.description);
    expect(key).toContain(rt.ctx.driverSettings);
  });

  it("keys the 'gpu' kernel mode's choices apart from the adapter's own", async () => {
    const rt = await testRuntime();
    const own = { ...rt.ctx, kernels: 'auto' as const };
    const auto = new Tuner({ ctx: own, sync: () => rt.sync() }, null).adapterKey;
    const gpu = new Tuner({ ctx: kernelView(own, 'gpu'), sync: () => rt.sync() }, null).adapterKey;
    expect(gpu).toContain('kernels=gpu');
    expect(gpu).not.toBe(auto);
    // The GPU view: no CPU driver, no known subgroup size, whatever the adapter.
    expect(kernelView(own, 'gpu')).toMatchObject({ isCpuDriver: false, subgroupSize: null, kernels: 'gpu' });
  });
});

// Per-adapter choice between kernel variants by measuring them: the first time an op meets a problem shape it
// has several correct variants for (a convolution's lowerings, matmul's storage or texture GEMM), it runs a default
// one and notes the shape; a later `tunePending()` times every variant on data of that shape and keeps the fastest.
// The training loop runs one probe pass before its first step and tunes right after it (src/train/fit.ts), so every
// step of a run computes with the measured variants. Choices are saved through a TuningStore, keyed by the adapter's identity, so the
// next run on the same machine starts tuned. Which variant wins depends on the machine: on lavapipe the CPU model
// and thread count decide (docs/kernels-performance.md).
import type { GpuContext } from './device.js';

/** What the tuner needs of the runtime: whose adapter it is, and a wait for the GPU's work (Runtime has both). */
export interface TunerHost {
  readonly ctx: Pick<GpuContext, 'adapterInfo' | 'subgroupSize' | 'driverSettings' | 'kernels'>;
  sync(): Promise<void>;
}

/** Something a variant's run produced; released once timed. */
interface Releasable {
  release(): void;
}

/** Where choices persist between runs (Node: a JSON file in the cache folder, src/node/tuning-store.ts). */
export interface TuningStore {
  load(adapterKey: string): Promise<Record<string, string> | null>;
  save(adapterKey: string, choices: Record<string, string>): Promise<void>;
}

/** A shape met before it was tuned: its variants, and how to run one of them on data of that shape. */
interface PendingCase {
  variants: readonly string[];
  /** Allocates inputs of the shape; returns a runner per variant (each returns its output) and a release. */
  prepare(): { run(variant: string): Releasable; release(): void };
}

/** Bumped when kernels change enough that earlier measurements no longer hold (2: im2col stacks small feature maps; 3: the texture GEMM loops over source lanes, 64-row tiles). */
const TUNING_VERSION = 3;

export class Tuner {
  private readonly choices = new Map<string, string>();
  private readonly pending = new Map<string, PendingCase>();
  private loaded: Promise<void> | null = null;
  /** Timed runs per variant (the fastest counts: machine noise only ever adds time). */
  repeats = 3;
  /** false: every choice is the default (tests that pin a variant, or a user who wants no measuring). */
  enabled = true;
  /** Variants never chosen where another one applies (see avoid()). */
  private readonly avoided = new Set<string>();
  /** Every key consulted through choose(): the shapes this runtime has actually met. */
  private readonly used = new Set<string>();

  constructor(
    private readonly rt: TunerHost,
    private readonly store: TuningStore | null = null,
  ) {}

  /**
   * The adapter's identity: choices are only reused on the same driver, version and thread count, and in the same
   * kernel mode (the 'gpu' mode's choices are among other variants and never mix with the adapter's own).
   */
  get adapterKey(): string {
    const { adapterInfo: i, subgroupSize, driverSettings, kernels } = this.rt.ctx;
    const mode = kernels === 'gpu' ? ' kernels=gpu' : '';
    return `v${TUNING_VERSION} ${i.vendor}/${i.architecture}/${i.device}/${i.description} sg${subgroupSize ?? '-'}${mode} ${driverSettings}`.trim();
  }

  /** Loads saved choices (once); ops consult them synchronously afterwards. */
  load(): Promise<void> {
    this.loaded ??= (async () => {
      const saved = this.store ? await this.store.load(this.adapterKey) : null;
      for (const [k, v] of Object.entries(saved ?? {})) this.choices.set(k, v);
    })();
    return this.loaded;
  }

  /**
   * The variant to use for `key`: the measured one if known, else `fallback` (and the case is noted for tuning when
   * it has more than one variant). `first`: tune it before the cases noted earlier (a choice their kernels use).
   */
  choose(key: string, offered: readonly string[], fallback: string, prepare: PendingCase['prepare'], first = false): string {
    this.used.add(key);
    const variants = this.allowed(offered);
    if (!variants.includes(fallback)) fallback = variants[0]!;
    const known = this.choices.get(key);
    if (known !== undefined && variants.includes(known)) return known;
    if (this.enabled && variants.length > 1 && !this.pending.has(key)) {
      const earlier = first ? [...this.pending] : [];
      if (first) this.pending.clear();
      this.pending.set(key, { variants, prepare });
      for (const [k, c] of earlier) this.pending.set(k, c);
    }
    return fallback;
  }

  /**
   * Never chooses these variants (measured, saved or default) where another one applies: e.g. a run that wants the
   * direct convolution's rounding, avoiding Winograd's transforms, which round about 10x more per convolution
   * (docs/kernels-performance.md, "Accuracy"). Shapes tuned meanwhile are tuned among the other variants;
   * avoid([]) lifts it.
   */
  avoid(variants: Iterable<string>): void {
    this.avoided.clear();
    for (const v of variants) this.avoided.add(v);
    for (const [k, c] of this.pending) {
      const left = this.allowed(c.variants);
      if (left.length > 1) this.pending.set(k, { ...c, variants: left });
      else this.pending.delete(k);
    }
  }

  private allowed(variants: readonly string[]): readonly string[] {
    if (!this.avoided.size) return variants;
    const left = variants.filter((v) => !this.avoided.has(v));
    return left.length ? left : variants;
  }

  get pendingCount(): number {
    return this.pending.size;
  }

  /** Times every variant of every noted shape, keeps the fastest, and saves the choices. */
  async tunePending(log?: (line: string) => void): Promise<void> {
    if (!this.pending.size) return;
    const cases = [...this.pending];
    this.pending.clear();
    for (const [key, c] of cases) {
      const data = c.prepare();
      const times: [string, number][] = [];
      for (const v of c.variants) {
        data.run(v).release(); // compiles, warms the pools
        await this.rt.sync();
        let best = Infinity;
        for (let r = 0; r < this.repeats; r++) {
          const t0 = performance.now();
          data.run(v).release();
          await this.rt.sync();
          best = Math.min(best, performance.now() - t0);
        }
        times.push([v, best]);
      }
      data.release();
      times.sort((a, b) => a[1] - b[1]);
      this.choices.set(key, times[0]![0]);
      log?.(`tuned ${key}: ${times.map(([v, ms]) => `${v} ${ms.toFixed(1)} ms`).join(', ')}`);
    }
    if (this.store) await this.store.save(this.adapterKey, Object.fromEntries(this.choices));
  }

  /** Every known choice, the saved ones of shapes this runtime never met included (reports). */
  snapshot(): Record<string, string> {
    return Object.fromEntries(this.choices);
  }

  /** The choices of the shapes this runtime has met (a run record: its own shapes, not the whole cache's). */
  usedChoices(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const k of [...this.used].sort()) {
      const v = this.choices.get(k);
      if (v !== undefined) out[k] = v;
    }
    return out;
  }

  /**
   * Uses these choices from now on (a resumed run takes its first run's, so that it computes exactly as that run
   * did: variants round differently).
   */
  pin(choices: Record<string, string>): void {
    for (const [k, v] of Object.entries(choices)) {
      this.choices.set(k, v);
      this.pending.delete(k);
    }
  }
}

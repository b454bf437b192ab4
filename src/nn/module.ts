// Modules with PyTorch's shape: parameters, buffers and children found by name, state_dict() in torch's order
// (a module's own parameters, then its buffers, then each child's, recursively), train()/eval().
import { Tensor } from '../runtime/tensor.js';
import type { Runtime } from '../runtime/runtime.js';
import { toFloat32, type StateDict, type TensorData } from '../weights/state-dict.js';


/** A module's non-tensor buffer that still belongs in the state dict (num_batches_tracked is an int64 counter). */
export interface CounterBuffer {
  kind: 'counter';
  value: number;
}

export abstract class Module {
  training = true;
  /** Names of this module's own parameters, in torch's registration order (e.g. ['weight', 'bias']). */
  protected parameterNames: readonly string[] = [];
  /** Names of this module's own buffers (running_mean, running_var, num_batches_tracked). */
  protected bufferNames: readonly string[] = [];

  constructor(readonly rt: Runtime) {}

  abstract forward(x: Tensor<'f32'>): Tensor<'f32'>;

  /** Child modules in registration order: every own property holding a Module (so `model.fc = ...` replaces it). */
  namedChildren(): [string, Module][] {
    return Object.entries(this).filter((e): e is [string, Module] => e[1] instanceof Module);
  }

  namedParameters(prefix = ''): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const name of this.parameterNames) {
      const t = this.field(name);
      if (t instanceof Tensor) out.push([prefix + name, t]);
    }
    for (const [name, child] of this.namedChildren()) out.push(...child.namedParameters(`${prefix}${name}.`));
    return out;
  }

  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }

  namedBuffers(prefix = ''): [string, Tensor | CounterBuffer][] {
    const out: [string, Tensor | CounterBuffer][] = [];
    for (const name of this.bufferNames) {
      const b = this.field(name);
      if (b instanceof Tensor || isCounter(b)) out.push([prefix + name, b]);
    }
    for (const [name, child] of this.namedChildren()) out.push(...child.namedBuffers(`${prefix}${name}.`));
    return out;
  }

  /** Entries in torch's state_dict order. */
  stateEntries(prefix = ''): [string, Tensor | CounterBuffer][] {
    const out: [string, Tensor | CounterBuffer][] = [];
    for (const name of this.parameterNames) {
      const t = this.field(name);
      if (t instanceof Tensor) out.push([prefix + name, t]);
    }
    for (const name of this.bufferNames) {
      const b = this.field(name);
      if (b instanceof Tensor || isCounter(b)) out.push([prefix + name, b]);
    }
    for (const [name, child] of this.namedChildren()) out.push(...child.stateEntries(`${prefix}${name}.`));
    return out;
  }

  /** Reads every parameter and buffer back from the GPU (f32; counters as int64, as torch stores them). */
  async stateDict(): Promise<StateDict> {
    const dict: StateDict = new Map();
    for (const [name, v] of this.stateEntries()) {
      if (v instanceof Tensor) dict.set(name, { dtype: 'float32', shape: [...v.shape], data: Float32Array.from(await v.read()) });
      else dict.set(name, { dtype: 'int64', shape: [], data: BigInt64Array.of(BigInt(v.value)) });
    }
    return dict;
  }

  /**
   * Copies a state dict into the module. Every problem (missing keys, unexpected keys, shape mismatches, wrong
   * dtypes) is collected and reported in one StateDictError, worded as torch's load_state_dict, before anything is
   * written; with strict=false missing and unexpected keys are allowed (shape mismatches never are), as in torch.
   * Returns the keys it skipped.
   */
  loadStateDict(dict: StateDict, options: { strict?: boolean; source?: string } = {}): { missing: string[]; unexpected: string[] } {
    const strict = options.strict ?? true;
    const entries = new Map(this.stateEntries());
    const missing = [...entries.keys()].filter((k) => !dict.has(k));
    const unexpected = [...dict.keys()].filter((k) => !entries.has(k));
    const mismatched: string[] = [];
    for (const [name, target] of entries) {
      const src = dict.get(name);
      if (!src) continue;
      const problem = checkCompatible(name, target, src);
      if (problem) mismatched.push(problem);
    }
    if ((strict && (missing.length || unexpected.length)) || mismatched.length) {
      throw new StateDictError(this.constructor.name, options.source, strict ? missing : [], strict ? unexpected : [], mismatched);
    }
    for (const [name, target] of entries) {
      const src = dict.get(name);
      if (!src) continue;
      if (target instanceof Tensor) this.rt.write(target.buffer, 0, toFloat32(src));
      else target.value = Number((src.data as BigInt64Array)[0] ?? 0n);
    }
    return { missing, unexpected };
  }

  train(on = true): this {
    this.training = on;
    for (const [, c] of this.namedChildren()) c.train(on);
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /** Sets requiresGrad on every parameter (freezing a backbone: model.requiresGrad(false); model.fc.requiresGrad(true)). */
  requiresGrad(on: boolean): this {
    for (const p of this.parameters()) p.requiresGrad = on;
    return this;
  }

  /** Releases every parameter and buffer's GPU storage (and their gradients). */
  release(): void {
    for (const [, v] of this.stateEntries()) {
      if (v instanceof Tensor) {
        v.grad?.release();
        v.grad = null;
        v.release();
      }
    }
  }

  private field(name: string): unknown {
    return (this as unknown as Record<string, unknown>)[name];
  }
}

function isCounter(v: unknown): v is CounterBuffer {
  return typeof v === 'object' && v !== null && (v as CounterBuffer).kind === 'counter';
}

function checkCompatible(name: string, target: Tensor | CounterBuffer, src: TensorData): string | null {
  if (target instanceof Tensor) {
    const same = src.shape.length === target.shape.length && src.shape.every((d, i) => d === target.shape[i]);
    if (!same) {
      return `size mismatch for ${name}: copying a param with shape [${src.shape.join(', ')}] from checkpoint, the shape in current model is [${target.shape.join(', ')}].`;
    }
    if (!['float32', 'float16', 'bfloat16', 'float64'].includes(src.dtype)) return `dtype mismatch for ${name}: the checkpoint holds ${src.dtype}, not a float type.`;
    return null;
  }
  if (src.shape.length !== 0 || src.dtype !== 'int64') return `dtype mismatch for ${name}: expected an int64 scalar, the checkpoint holds ${src.dtype} [${src.shape.join(', ')}].`;
  return null;
}

const quoted = (keys: readonly string[]): string => keys.map((k) => `"${k}"`).join(', ');

/**
 * A state dict that does not fit a module, worded as torch's load_state_dict error ("Error(s) in loading state_dict
 * for ResNet: Missing key(s) in state_dict: ... Unexpected key(s) in state_dict: ... size mismatch for ..."), with the
 * lists kept as fields.
 */
export class StateDictError extends Error {
  override name = 'StateDictError';
  constructor(
    readonly moduleName: string,
    readonly source: string | undefined,
    readonly missing: readonly string[],
    readonly unexpected: readonly string[],
    readonly mismatched: readonly string[],
    /** What the state dict looks like instead (ResNet names the architecture it holds). */
    readonly note?: string,
  ) {
    const lines = [`Error(s) in loading state_dict for ${moduleName}${source ? ` from ${source}` : ''}:`];
    if (missing.length) lines.push(`Missing key(s) in state_dict: ${quoted(missing)}.`);
    if (unexpected.length) lines.push(`Unexpected key(s) in state_dict: ${quoted(unexpected)}.`);
    lines.push(...mismatched);
    if (note) lines.push(note);
    super(lines.join('\n\t'));
  }
}

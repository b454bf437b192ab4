// torch.optim.SGD: parameter groups with their own lr (the fine-tuning recipe trains the new head at 10x),
// weight decay, momentum/dampening/nesterov; frozen parameters and parameters without a gradient are skipped.
// The update runs on the GPU with no readback.
import { noGrad } from '../autograd/grad-mode.js';
import { zeroGrad } from '../autograd/tape.js';
import { sgdUpdate, type SgdHyper } from '../kernels/sgd/sgd.js';
import { Tensor } from '../runtime/tensor.js';
import type { StateDict } from '../weights/state-dict.js';

export interface SgdOptions {
  lr: number;
  momentum?: number;
  dampening?: number;
  weightDecay?: number;
  nesterov?: boolean;
}

export interface ParamGroup extends Partial<SgdOptions> {
  params: Tensor[];
}

interface ResolvedGroup extends SgdHyper {
  params: Tensor[];
}

/** torch's optimizer.state_dict() shape: per-parameter state by index, groups with their hyper-parameters. */
export interface SgdStateDict {
  state: Map<number, { momentumBuffer: Float32Array }>;
  paramGroups: { lr: number; momentum: number; dampening: number; weightDecay: number; nesterov: boolean; params: number[] }[];
}

export class SGD {
  readonly paramGroups: ResolvedGroup[];
  private readonly momentumBuffers = new Map<Tensor, Tensor<'f32'>>();

  constructor(params: Tensor[] | ParamGroup[], defaults: SgdOptions) {
    const groups: ParamGroup[] = params.length && params[0] instanceof Tensor ? [{ params: params as Tensor[] }] : (params as ParamGroup[]);
    const seen = new Set<Tensor>();
    this.paramGroups = groups.map((g, i) => {
      for (const p of g.params) {
        if (seen.has(p)) throw new Error(`SGD: a parameter appears in more than one group (group ${i})`);
        seen.add(p);
      }
      const h: ResolvedGroup = {
        params: g.params,
        lr: g.lr ?? defaults.lr,
        momentum: g.momentum ?? defaults.momentum ?? 0,
        dampening: g.dampening ?? defaults.dampening ?? 0,
        weightDecay: g.weightDecay ?? defaults.weightDecay ?? 0,
        nesterov: g.nesterov ?? defaults.nesterov ?? false,
      };
      for (const [k, v] of Object.entries({ lr: h.lr, momentum: h.momentum, weightDecay: h.weightDecay })) {
        if (!(v >= 0)) throw new Error(`SGD: invalid ${k} ${v} in group ${i}`);
      }
      if (h.nesterov && (h.momentum <= 0 || h.dampening !== 0)) throw new Error('SGD: nesterov needs momentum > 0 and dampening 0');
      return h;
    });
  }

  /** Applies one update to every parameter that requires grad and has one. */
  step(): void {
    // The sgdUpdate kernels are classified by name as well, should the first group be empty.
    const rt = this.paramGroups[0]?.params[0]?.rt;
    rt?.profiler?.begin('sgd', 'SGD step');
    noGrad(() => {
      for (const group of this.paramGroups) {
        for (const p of group.params) {
          if (!p.requiresGrad || !p.grad) continue;
          let buffer: Tensor<'f32'> | null = null;
          let first = false;
          if (group.momentum !== 0) {
            buffer = this.momentumBuffers.get(p) ?? null;
            if (!buffer) {
              buffer = Tensor.empty(p.rt, p.shape, 'f32', 'momentumBuffer');
              this.momentumBuffers.set(p, buffer);
              first = true;
            }
          }
          sgdUpdate(p, p.grad, group, buffer, first);
        }
      }
    });
    rt?.profiler?.end();
  }

  zeroGrad(): void {
    for (const g of this.paramGroups) zeroGrad(g.params);
  }

  async stateDict(): Promise<SgdStateDict> {
    const index = new Map<Tensor, number>();
    const paramGroups = this.paramGroups.map((g) => ({
      lr: g.lr,
      momentum: g.momentum,
      dampening: g.dampening,
      weightDecay: g.weightDecay,
      nesterov: g.nesterov,
      params: g.params.map((p) => {
        index.set(p, index.size);
        return index.size - 1;
      }),
    }));
    const state = new Map<number, { momentumBuffer: Float32Array }>();
    for (const [p, buf] of this.momentumBuffers) state.set(index.get(p)!, { momentumBuffer: await buf.read() });
    return { state, paramGroups };
  }

  loadStateDict(dict: SgdStateDict): void {
    if (dict.paramGroups.length !== this.paramGroups.length) {
      throw new Error(`optimizer state has ${dict.paramGroups.length} parameter groups, this optimizer ${this.paramGroups.length}`);
    }
    const params = this.paramGroups.flatMap((g) => g.params);
    dict.paramGroups.forEach((saved, i) => {
      const g = this.paramGroups[i]!;
      if (saved.params.length !== g.params.length) {
        throw new Error(`optimizer state group ${i} has ${saved.params.length} parameters, this optimizer ${g.params.length}`);
      }
      Object.assign(g, { lr: saved.lr, momentum: saved.momentum, dampening: saved.dampening, weightDecay: saved.weightDecay, nesterov: saved.nesterov });
    });
    for (const [i, s] of dict.state) {
      const p = params[i];
      if (!p || s.momentumBuffer.length !== p.size) throw new Error(`optimizer state for parameter ${i} does not fit`);
      let buf = this.momentumBuffers.get(p);
      if (!buf) this.momentumBuffers.set(p, (buf = Tensor.empty(p.rt, p.shape, 'f32', 'momentumBuffer')));
      p.rt.write(buf.buffer, 0, s.momentumBuffer);
    }
  }

  release(): void {
    for (const b of this.momentumBuffers.values()) b.release();
    this.momentumBuffers.clear();
  }
}

/**
 * The optimizer state as named tensors plus string metadata, the shape a safetensors file holds
 * (`state.<index>.momentum_buffer`, torch's names; the groups' hyper-parameters as JSON in `param_groups`).
 */
export function sgdStateToTensors(state: SgdStateDict): { tensors: StateDict; metadata: Record<string, string> } {
  const tensors: StateDict = new Map();
  for (const [i, s] of state.state) {
    tensors.set(`state.${i}.momentum_buffer`, { dtype: 'float32', shape: [s.momentumBuffer.length], data: s.momentumBuffer });
  }
  return { tensors, metadata: { param_groups: JSON.stringify(state.paramGroups) } };
}

export function sgdStateFromTensors(tensors: StateDict, metadata: Record<string, string> | undefined): SgdStateDict {
  const groups = metadata?.param_groups;
  if (!groups) throw new Error('not an SGD state: no param_groups metadata');
  const state = new Map<number, { momentumBuffer: Float32Array }>();
  for (const [name, t] of tensors) {
    const m = /^state\.(\d+)\.momentum_buffer$/.exec(name);
    if (!m || t.dtype !== 'float32') throw new Error(`not an SGD state entry: ${name} (${t.dtype})`);
    state.set(Number(m[1]), { momentumBuffer: t.data as Float32Array });
  }
  return { state, paramGroups: JSON.parse(groups) as SgdStateDict['paramGroups'] };
}

// The layers ResNet-18 is made of, with torch.nn's parameter names, defaults and initialisation.
import {
  adaptiveAvgPool2d,
  batchNorm2d,
  conv2d,
  flatten,
  linear,
  maxPool2d,
  relu,
  type BatchNormState,
} from '../autograd/functions.js';
import { releaseIntermediate } from '../autograd/tape.js';
import type { Runtime } from '../runtime/runtime.js';
import { Tensor } from '../runtime/tensor.js';
import { defaultBiasInit, defaultWeightInit, generator, type Generator } from './init.js';
import { Module, type CounterBuffer } from './module.js';

function parameter(rt: Runtime, shape: number[], label: string): Tensor<'f32'> {
  const t = Tensor.empty(rt, shape, 'f32', label);
  t.requiresGrad = true;
  return t;
}

export interface Conv2dOptions {
  stride?: number;
  padding?: number;
  bias?: boolean;
  /** Generator for the default init (kaiming_uniform(a=sqrt(5)) as torch); a fixed seed when omitted. */
  generator?: Generator;
}

export class Conv2d extends Module {
  protected override parameterNames = ['weight', 'bias'];
  readonly weight: Tensor<'f32'>;
  readonly bias: Tensor<'f32'> | null;
  readonly stride: number;
  readonly padding: number;

  constructor(rt: Runtime, inChannels: number, outChannels: number, kernelSize: number, options: Conv2dOptions = {}) {
    super(rt);
    this.stride = options.stride ?? 1;
    this.padding = options.padding ?? 0;
    const g = options.generator ?? generator(0);
    this.weight = parameter(rt, [outChannels, inChannels, kernelSize, kernelSize], 'conv.weight');
    defaultWeightInit(this.weight, g);
    this.bias = options.bias === false ? null : parameter(rt, [outChannels], 'conv.bias');
    if (this.bias) defaultBiasInit(this.bias, this.weight.shape, g);
  }

  forward(x: Tensor<'f32'>): Tensor<'f32'> {
    return conv2d(x, this.weight, this.bias, { stride: this.stride, padding: this.padding });
  }
}

export class BatchNorm2d extends Module {
  protected override parameterNames = ['weight', 'bias'];
  protected override bufferNames = ['running_mean', 'running_var', 'num_batches_tracked'];
  readonly weight: Tensor<'f32'>;
  readonly bias: Tensor<'f32'>;
  readonly running_mean: Tensor<'f32'>;
  readonly running_var: Tensor<'f32'>;
  readonly num_batches_tracked: CounterBuffer & { numBatchesTracked: number };

  constructor(
    rt: Runtime,
    numFeatures: number,
    readonly eps = 1e-5,
    readonly momentum = 0.1,
  ) {
    super(rt);
    this.weight = parameter(rt, [numFeatures], 'bn.weight').fill(1);
    this.bias = parameter(rt, [numFeatures], 'bn.bias').fill(0);
    this.running_mean = Tensor.empty(rt, [numFeatures], 'f32', 'bn.running_mean').fill(0);
    this.running_var = Tensor.empty(rt, [numFeatures], 'f32', 'bn.running_var').fill(1);
    // One object serves as the state-dict counter and as the kernel's tracker, so both see every increment.
    const counter = { kind: 'counter' as const, value: 0 };
    this.num_batches_tracked = Object.defineProperty(counter, 'numBatchesTracked', {
      get: () => counter.value,
      set: (v: number) => (counter.value = v),
      enumerable: false,
    }) as CounterBuffer & { numBatchesTracked: number };
  }

  private state(): BatchNormState {
    return {
      weight: this.weight,
      bias: this.bias,
      runningMean: this.running_mean,
      runningVar: this.running_var,
      momentum: this.momentum,
      eps: this.eps,
      tracker: this.num_batches_tracked,
    };
  }

  forward(x: Tensor<'f32'>): Tensor<'f32'> {
    return batchNorm2d(x, this.state(), this.training);
  }

  /**
   * relu(bn(x) [+ residual]) in the BatchNorm kernels' passes: what `relu(bn(x))` and `relu(bn(x) + residual)` give
   * with separate modules, without the separate relu and add passes.
   */
  forwardRelu(x: Tensor<'f32'>, residual: Tensor<'f32'> | null = null): Tensor<'f32'> {
    return batchNorm2d(x, this.state(), this.training, { relu: true, residual });
  }
}

export class ReLU extends Module {
  forward(x: Tensor<'f32'>): Tensor<'f32'> {
    return relu(x);
  }
}

export class MaxPool2d extends Module {
  constructor(
    rt: Runtime,
    readonly kernelSize: number,
    readonly stride = kernelSize,
    readonly padding = 0,
  ) {
    super(rt);
  }

  forward(x: Tensor<'f32'>): Tensor<'f32'> {
    return maxPool2d(x, { kernel: this.kernelSize, stride: this.stride, padding: this.padding });
  }
}

/** AdaptiveAvgPool2d((1, 1)), the only output size ResNet uses. */
export class AdaptiveAvgPool2d extends Module {
  forward(x: Tensor<'f32'>): Tensor<'f32'> {
    return adaptiveAvgPool2d(x);
  }
}

export class Flatten extends Module {
  forward(x: Tensor<'f32'>): Tensor<'f32'> {
    return flatten(x, 1) as Tensor<'f32'>;
  }
}

export interface LinearOptions {
  bias?: boolean;
  generator?: Generator;
}

export class Linear extends Module {
  protected override parameterNames = ['weight', 'bias'];
  readonly weight: Tensor<'f32'>;
  readonly bias: Tensor<'f32'> | null;

  constructor(
    rt: Runtime,
    readonly inFeatures: number,
    readonly outFeatures: number,
    options: LinearOptions = {},
  ) {
    super(rt);
    const g = options.generator ?? generator(0);
    this.weight = parameter(rt, [outFeatures, inFeatures], 'linear.weight');
    defaultWeightInit(this.weight, g);
    this.bias = options.bias === false ? null : parameter(rt, [outFeatures], 'linear.bias');
    if (this.bias) defaultBiasInit(this.bias, this.weight.shape, g);
  }

  forward(x: Tensor<'f32'>): Tensor<'f32'> {
    return linear(x, this.weight, this.bias);
  }
}

/** Children named "0", "1", ... as torch.nn.Sequential. Frees each intermediate once the next layer consumed it. */
export class Sequential extends Module {
  private readonly layers: Module[];

  constructor(rt: Runtime, ...layers: Module[]) {
    super(rt);
    this.layers = layers;
  }

  override namedChildren(): [string, Module][] {
    return this.layers.map((m, i) => [String(i), m]);
  }

  at(i: number): Module {
    const m = this.layers[i];
    if (!m) throw new Error(`Sequential has no layer ${i}`);
    return m;
  }

  get length(): number {
    return this.layers.length;
  }

  forward(x: Tensor<'f32'>): Tensor<'f32'> {
    let h = x;
    for (const layer of this.layers) {
      const next = layer.forward(h);
      if (h !== x) releaseIntermediate(h);
      h = next;
    }
    return h;
  }
}

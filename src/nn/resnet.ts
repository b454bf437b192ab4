// torchvision.models.resnet18 with exactly torchvision's structure and parameter names (conv1, bn1,
// layer1.0.conv1 ... layer4.1.bn2, layer2.0.downsample.0/1, fc), so its state dicts load as they are.
import { flatten } from '../autograd/functions.js';
import { releaseIntermediate } from '../autograd/tape.js';
import type { Runtime } from '../runtime/runtime.js';
import type { Tensor } from '../runtime/tensor.js';
import { generator, kaimingNormalFanOut, xavierUniform, type Generator } from './init.js';
import { AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Linear, MaxPool2d, ReLU, Sequential } from './layers.js';
import { Module, StateDictError } from './module.js';
import type { StateDict } from '../weights/state-dict.js';

export class BasicBlock extends Module {
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly relu: ReLU;
  readonly conv2: Conv2d;
  readonly bn2: BatchNorm2d;
  readonly downsample: Sequential | null;

  constructor(rt: Runtime, inPlanes: number, planes: number, stride: number, g: Generator) {
    super(rt);
    this.conv1 = new Conv2d(rt, inPlanes, planes, 3, { stride, padding: 1, bias: false, generator: g });
    this.bn1 = new BatchNorm2d(rt, planes);
    this.relu = new ReLU(rt);
    this.conv2 = new Conv2d(rt, planes, planes, 3, { padding: 1, bias: false, generator: g });
    this.bn2 = new BatchNorm2d(rt, planes);
    this.downsample =
      stride !== 1 || inPlanes !== planes
        ? new Sequential(rt, new Conv2d(rt, inPlanes, planes, 1, { stride, bias: false, generator: g }), new BatchNorm2d(rt, planes))
        : null;
  }

  // relu(bn1(conv1(x))) and relu(bn2(conv2(.)) + identity) as torchvision computes them, each BatchNorm with its
  // relu (and the residual add) fused into its own passes; `relu` stays a child as in torchvision.
  forward(x: Tensor<'f32'>): Tensor<'f32'> {
    const c1 = this.conv1.forward(x);
    const a1 = this.bn1.forwardRelu(c1);
    releaseIntermediate(c1);
    const c2 = this.conv2.forward(a1);
    releaseIntermediate(a1);
    const identity = this.downsample ? this.downsample.forward(x) : x;
    const out = this.bn2.forwardRelu(c2, identity);
    releaseIntermediate(c2);
    if (identity !== x) releaseIntermediate(identity);
    return out;
  }
}

export interface ResNetOptions {
  numClasses?: number;
  /** Seed of the initialisation (torchvision's scheme, drawn from this engine's generator). */
  seed?: number;
}

export class ResNet extends Module {
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly relu: ReLU;
  readonly maxpool: MaxPool2d;
  readonly layer1: Sequential;
  readonly layer2: Sequential;
  readonly layer3: Sequential;
  readonly layer4: Sequential;
  readonly avgpool: AdaptiveAvgPool2d;
  /** The classifier head; assign a new Linear to replace it, as `model.fc = nn.Linear(512, 2)` in PyTorch. */
  fc: Linear;

  constructor(
    rt: Runtime,
    readonly blocksPerLayer: readonly [number, number, number, number],
    options: ResNetOptions = {},
  ) {
    super(rt);
    const g = generator(options.seed ?? 0);
    this.conv1 = new Conv2d(rt, 3, 64, 7, { stride: 2, padding: 3, bias: false, generator: g });
    this.bn1 = new BatchNorm2d(rt, 64);
    this.relu = new ReLU(rt);
    this.maxpool = new MaxPool2d(rt, 3, 2, 1);
    let inPlanes = 64;
    const makeLayer = (planes: number, blocks: number, stride: number): Sequential => {
      const list = [new BasicBlock(rt, inPlanes, planes, stride, g)];
      inPlanes = planes;
      for (let i = 1; i < blocks; i++) list.push(new BasicBlock(rt, planes, planes, 1, g));
      return new Sequential(rt, ...list);
    };
    this.layer1 = makeLayer(64, blocksPerLayer[0], 1);
    this.layer2 = makeLayer(128, blocksPerLayer[1], 2);
    this.layer3 = makeLayer(256, blocksPerLayer[2], 2);
    this.layer4 = makeLayer(512, blocksPerLayer[3], 2);
    this.avgpool = new AdaptiveAvgPool2d(rt);
    this.fc = new Linear(rt, 512, options.numClasses ?? 1000, { generator: g });
    // torchvision re-initialises every conv with kaiming_normal_(mode='fan_out', nonlinearity='relu'); BN starts
    // at weight 1, bias 0 (BatchNorm2d's own defaults); Linear keeps its default init.
    for (const [name, p] of this.namedParameters()) {
      if (p.shape.length === 4 && !name.startsWith('fc.')) kaimingNormalFanOut(p, g);
    }
  }

  /** The 512-dim features before the classifier (the ResNet body). */
  features(x: Tensor<'f32'>): Tensor<'f32'> {
    const c1 = this.conv1.forward(x);
    let h = this.bn1.forwardRelu(c1);
    releaseIntermediate(c1);
    for (const layer of [this.maxpool, this.layer1, this.layer2, this.layer3, this.layer4, this.avgpool]) {
      const next = layer.forward(h);
      releaseIntermediate(h);
      h = next;
    }
    const flat = flatten(h, 1) as Tensor<'f32'>;
    releaseIntermediate(h);
    return flat;
  }

  /** Module.loadStateDict, whose error also says which architecture a foreign state dict holds (resnet34, resnet50...). */
  override loadStateDict(dict: StateDict, options: { strict?: boolean; source?: string } = {}): { missing: string[]; unexpected: string[] } {
    try {
      return super.loadStateDict(dict, options);
    } catch (e) {
      if (!(e instanceof StateDictError) || e.note !== undefined) throw e;
      const note = describeStateDict(dict, this.blocksPerLayer);
      if (note === undefined) throw e;
      throw new StateDictError(e.moduleName, e.source, e.missing, e.unexpected, e.mismatched, note);
    }
  }

  forward(x: Tensor<'f32'>): Tensor<'f32'> {
    const f = this.features(x);
    const logits = this.fc.forward(f);
    releaseIntermediate(f);
    return logits;
  }
}

// torchvision's ResNets by blocks per layer.
const BASIC_RESNETS: Record<string, string> = { '2,2,2,2': 'resnet18', '3,4,6,3': 'resnet34' };
const BOTTLENECK_RESNETS: Record<string, string> = { '3,4,6,3': 'resnet50', '3,4,23,3': 'resnet101', '3,8,36,3': 'resnet152' };

/**
 * What a state dict that does not fit a ResNet holds when it is another architecture: another torchvision ResNet
 * (named), or no ResNet at all; undefined when its blocks are the model's (the problem is then in single keys).
 */
function describeStateDict(dict: StateDict, expected: readonly number[]): string | undefined {
  const keys = [...dict.keys()];
  const blocks = [1, 2, 3, 4].map((layer) => {
    let n = 0;
    while (keys.some((k) => k.startsWith(`layer${layer}.${n}.`))) n++;
    return n;
  });
  const mine = `${BASIC_RESNETS[expected.join(',')] ?? 'a ResNet'} with [${expected.join(', ')}] BasicBlocks per layer`;
  if (blocks.every((n) => n === 0)) {
    return `The state dict is not a torchvision ResNet (no layer1-4; its ${keys.length} keys begin ${quotedFew(keys)}); the model is ${mine}.`;
  }
  const bottleneck = keys.some((k) => /^layer\d\.\d+\.conv3\./.test(k));
  if (!bottleneck && blocks.join(',') === expected.join(',')) return undefined;
  const kind = bottleneck ? 'Bottleneck blocks (conv3)' : 'BasicBlocks';
  const theirs = (bottleneck ? BOTTLENECK_RESNETS : BASIC_RESNETS)[blocks.join(',')];
  return `The state dict holds a ResNet with [${blocks.join(', ')}] ${kind} per layer${theirs ? ` (torchvision's ${theirs})` : ''}; the model is ${mine}.`;
}

function quotedFew(keys: readonly string[]): string {
  return keys.length ? `${keys.slice(0, 3).map((k) => `"${k}"`).join(', ')}${keys.length > 3 ? ', ...' : ''}` : '(none)';
}

export function resnet18(rt: Runtime, options: ResNetOptions = {}): ResNet {
  return new ResNet(rt, [2, 2, 2, 2], options);
}

/** A new 2-way (or n-way) head with xavier_uniform_ weights, as the fine-tuning recipe does. */
export function replaceHead(model: ResNet, numClasses: number, seed = 0): Linear {
  const g = generator(seed);
  const old = model.fc;
  const head = new Linear(model.rt, old.inFeatures, numClasses, { generator: g });
  xavierUniform(head.weight, g);
  model.fc = head;
  old.release();
  return head;
}

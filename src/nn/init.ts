// Parameter initialisation as torch.nn.init, drawn on the CPU from a seeded generator and uploaded once.
import { Random } from '../util/random.js';
import { Tensor } from '../runtime/tensor.js';

export type Generator = Random;

export function generator(seed: number): Generator {
  return new Random(seed);
}

/** fan_in and fan_out of a weight [out, in, ...kernel] as torch's _calculate_fan_in_and_fan_out. */
export function fans(shape: readonly number[]): { fanIn: number; fanOut: number } {
  const receptive = shape.slice(2).reduce((a, b) => a * b, 1);
  return { fanIn: (shape[1] ?? 1) * receptive, fanOut: shape[0]! * receptive };
}

function normal(g: Generator, n: number, std: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    // Box-Muller: two normals per pair of uniforms.
    const u = Math.max(g.random(), Number.MIN_VALUE);
    const r = Math.sqrt(-2 * Math.log(u)) * std;
    const theta = 2 * Math.PI * g.random();
    out[i] = r * Math.cos(theta);
    if (i + 1 < n) out[i + 1] = r * Math.sin(theta);
  }
  return out;
}

function uniform(g: Generator, n: number, bound: number): Float32Array {
  return Float32Array.from({ length: n }, () => (2 * g.random() - 1) * bound);
}

function upload(t: Tensor, values: Float32Array): void {
  t.rt.write(t.buffer, 0, values);
}

/** kaiming_normal_(mode='fan_out', nonlinearity='relu'): torchvision's ResNet conv init. */
export function kaimingNormalFanOut(t: Tensor, g: Generator): void {
  upload(t, normal(g, t.size, Math.sqrt(2 / fans(t.shape).fanOut)));
}

/** nn.Linear / nn.Conv2d default: kaiming_uniform_(a=sqrt(5)) gives bound 1/sqrt(fan_in). */
export function defaultWeightInit(t: Tensor, g: Generator): void {
  upload(t, uniform(g, t.size, 1 / Math.sqrt(fans(t.shape).fanIn)));
}

/** nn.Linear / nn.Conv2d default bias: uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) of the weight's fan_in. */
export function defaultBiasInit(bias: Tensor, weightShape: readonly number[], g: Generator): void {
  const fanIn = fans(weightShape).fanIn;
  upload(bias, uniform(g, bias.size, fanIn > 0 ? 1 / Math.sqrt(fanIn) : 0));
}

/** xavier_uniform_: bound sqrt(6 / (fan_in + fan_out)), what the fine-tuning recipe uses for the new head. */
export function xavierUniform(t: Tensor, g: Generator, gain = 1): void {
  const { fanIn, fanOut } = fans(t.shape);
  upload(t, uniform(g, t.size, gain * Math.sqrt(6 / (fanIn + fanOut))));
}

export function constant(t: Tensor, value: number): void {
  t.fill(value);
}

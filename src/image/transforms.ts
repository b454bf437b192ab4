/**
 * Image transforms with torchvision 0.14 semantics on PIL images (the path torchvision's
 * ImageFolder + transforms take): RandomResizedCrop, RandomHorizontalFlip, Resize, CenterCrop,
 * ToTensor, Normalize and Compose.
 *
 * A transform maps a Sample (an 8-bit RgbImage before ToTensor, a float CHW TensorImage after) to
 * a Sample; randomness comes only from the Random passed in, so results are reproducible.
 * Every transform can describe itself as plain data (`spec`), which `transformFromSpec` turns back
 * into a transform (used to hand a pipeline to worker threads).
 */
import { crop, flipHorizontal, type Box, type RgbImage } from './image.js';
import type { Random } from '../util/random.js';
import { resizeBilinear } from './resample.js';

/** A float image, channels first (CHW): `data.length === channels * height * width`. */
export interface TensorImage {
  readonly channels: number;
  readonly height: number;
  readonly width: number;
  readonly data: Float32Array;
}

export type Sample = RgbImage | TensorImage;

export function isTensor(x: Sample): x is TensorImage {
  return x.data instanceof Float32Array;
}

export type TransformSpec =
  | { readonly name: 'RandomResizedCrop'; readonly size: readonly [number, number]; readonly scale: readonly [number, number]; readonly ratio: readonly [number, number] }
  | { readonly name: 'RandomHorizontalFlip'; readonly p: number }
  | { readonly name: 'Resize'; readonly size: number | readonly [number, number] }
  | { readonly name: 'CenterCrop'; readonly size: readonly [number, number] }
  | { readonly name: 'ToTensor' }
  | { readonly name: 'Normalize'; readonly mean: readonly number[]; readonly std: readonly number[] }
  | { readonly name: 'Compose'; readonly transforms: readonly TransformSpec[] };

export interface Transform {
  readonly spec: TransformSpec;
  apply(x: Sample, rng: Random): Sample;
}

/** ImageNet statistics used by torchvision's pretrained ResNets. */
export const IMAGENET_MEAN = [0.485, 0.456, 0.406] as const;
export const IMAGENET_STD = [0.229, 0.224, 0.225] as const;

function pair(size: number | readonly [number, number], what: string): [number, number] {
  const [h, w] = typeof size === 'number' ? [size, size] : size;
  if (!Number.isInteger(h) || !Number.isInteger(w) || h <= 0 || w <= 0) throw new RangeError(`${what}: bad size ${String(size)}`);
  return [h, w];
}

function needImage(x: Sample, what: string): RgbImage {
  if (isTensor(x)) throw new TypeError(`${what} works on 8-bit images: put it before ToTensor`);
  return x;
}

/** Python's round(): half to even. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

export class RandomResizedCrop implements Transform {
  readonly spec: TransformSpec & { name: 'RandomResizedCrop' };
  constructor(size: number | readonly [number, number], options: { scale?: readonly [number, number]; ratio?: readonly [number, number] } = {}) {
    const scale = options.scale ?? [0.08, 1.0];
    const ratio = options.ratio ?? [3 / 4, 4 / 3];
    if (scale[0] > scale[1] || ratio[0] > ratio[1]) throw new RangeError('RandomResizedCrop: scale and ratio should be of kind (min, max)');
    this.spec = { name: 'RandomResizedCrop', size: pair(size, 'RandomResizedCrop'), scale: [scale[0], scale[1]], ratio: [ratio[0], ratio[1]] };
  }

  /**
   * torchvision's RandomResizedCrop.get_params: up to 10 tries of a random area (fraction `scale`
   * of the image) and log-uniform aspect ratio, then a central crop fallback.
   * The draws are made in torchvision's order: area, ratio, then top, left.
   */
  static getParams(width: number, height: number, scale: readonly [number, number], ratio: readonly [number, number], rng: Random): Box & { fallback: boolean } {
    const area = height * width;
    const logRatio = [Math.log(ratio[0]), Math.log(ratio[1])] as const;
    for (let attempt = 0; attempt < 10; attempt++) {
      const targetArea = area * rng.uniform(scale[0], scale[1]);
      const aspectRatio = Math.exp(rng.uniform(logRatio[0], logRatio[1]));
      const w = roundHalfEven(Math.sqrt(targetArea * aspectRatio));
      const h = roundHalfEven(Math.sqrt(targetArea / aspectRatio));
      if (0 < w && w <= width && 0 < h && h <= height) {
        const top = rng.randint(0, height - h);
        const left = rng.randint(0, width - w);
        return { top, left, height: h, width: w, fallback: false };
      }
    }
    const inRatio = width / height;
    let w: number;
    let h: number;
    if (inRatio < Math.min(ratio[0], ratio[1])) {
      w = width;
      h = roundHalfEven(w / Math.min(ratio[0], ratio[1]));
    } else if (inRatio > Math.max(ratio[0], ratio[1])) {
      h = height;
      w = roundHalfEven(h * Math.max(ratio[0], ratio[1]));
    } else {
      w = width;
      h = height;
    }
    return { top: Math.floor((height - h) / 2), left: Math.floor((width - w) / 2), height: h, width: w, fallback: true };
  }

  apply(x: Sample, rng: Random): Sample {
    const img = needImage(x, 'RandomResizedCrop');
    const box = RandomResizedCrop.getParams(img.width, img.height, this.spec.scale, this.spec.ratio, rng);
    return resizedCrop(img, box, this.spec.size);
  }
}

/** torchvision.transforms.functional.resized_crop(img, top, left, height, width, size) with bilinear. */
export function resizedCrop(img: RgbImage, box: Box, size: number | readonly [number, number]): RgbImage {
  const [outH, outW] = pair(size, 'resized_crop');
  const inside = box.top >= 0 && box.left >= 0 && box.top + box.height <= img.height && box.left + box.width <= img.width;
  // PIL pads a crop that leaves the image with black; RandomResizedCrop never does.
  const { top, left, height, width } = box;
  return inside ? resizeBilinear(img, outW, outH, { top, left, height, width }) : resizeBilinear(crop(img, box), outW, outH);
}

export class RandomHorizontalFlip implements Transform {
  readonly spec: TransformSpec & { name: 'RandomHorizontalFlip' };
  constructor(p = 0.5) {
    if (!(p >= 0 && p <= 1)) throw new RangeError(`RandomHorizontalFlip: p must be in [0, 1], got ${p}`);
    this.spec = { name: 'RandomHorizontalFlip', p };
  }

  apply(x: Sample, rng: Random): Sample {
    // torchvision: `if torch.rand(1) < self.p: return F.hflip(img)`; always one draw.
    if (!(rng.random() < this.spec.p)) return x;
    if (!isTensor(x)) return flipHorizontal(x);
    const { channels, height, width, data } = x;
    const out = new Float32Array(data.length);
    for (let row = 0; row < channels * height; row++) {
      const o = row * width;
      for (let c = 0; c < width; c++) out[o + c] = data[o + width - 1 - c]!;
    }
    return { channels, height, width, data: out };
  }
}

/** torchvision's _compute_resized_output_size for Resize(int): the shorter side becomes `size`. */
export function resizedShape(width: number, height: number, size: number | readonly [number, number]): [number, number] {
  if (typeof size !== 'number') return [size[1], size[0]];
  const [short, long] = width <= height ? [width, height] : [height, width];
  const newShort = size;
  const newLong = Math.trunc((size * long) / short);
  return width <= height ? [newShort, newLong] : [newLong, newShort];
}

export class Resize implements Transform {
  readonly spec: TransformSpec & { name: 'Resize' };
  /** `size`: the shorter side's new length (aspect kept), or [height, width]. Bilinear, as torchvision's default. */
  constructor(size: number | readonly [number, number]) {
    if (typeof size === 'number') pair(size, 'Resize');
    this.spec = { name: 'Resize', size: typeof size === 'number' ? size : pair(size, 'Resize') };
  }

  apply(x: Sample): Sample {
    const img = needImage(x, 'Resize');
    const [w, h] = resizedShape(img.width, img.height, this.spec.size);
    return resizeBilinear(img, w, h);
  }
}

/** torchvision's center_crop box (after any padding): top = round((H - h) / 2), Python rounding. */
export function centerCropBox(width: number, height: number, cropHeight: number, cropWidth: number): Box {
  return { top: roundHalfEven((height - cropHeight) / 2), left: roundHalfEven((width - cropWidth) / 2), height: cropHeight, width: cropWidth };
}

export class CenterCrop implements Transform {
  readonly spec: TransformSpec & { name: 'CenterCrop' };
  constructor(size: number | readonly [number, number]) {
    this.spec = { name: 'CenterCrop', size: pair(size, 'CenterCrop') };
  }

  apply(x: Sample): Sample {
    const img = needImage(x, 'CenterCrop');
    const [ch, cw] = this.spec.size;
    // torchvision first pads a too-small image with zeros (left/top get the smaller half).
    const padLeft = cw > img.width ? Math.floor((cw - img.width) / 2) : 0;
    const padTop = ch > img.height ? Math.floor((ch - img.height) / 2) : 0;
    const width = Math.max(img.width, cw);
    const height = Math.max(img.height, ch);
    const box = centerCropBox(width, height, ch, cw);
    return crop(img, { top: box.top - padTop, left: box.left - padLeft, height: ch, width: cw });
  }
}

const TO_UNIT = (() => {
  const t = new Float32Array(256);
  for (let k = 0; k < 256; k++) t[k] = k / 255;
  return t;
})();

export class ToTensor implements Transform {
  readonly spec: TransformSpec = { name: 'ToTensor' };

  /** HWC uint8 -> CHW float32 in [0, 1] (value / 255, rounded to float32 as torch does). */
  apply(x: Sample): Sample {
    const img = needImage(x, 'ToTensor');
    const { width, height, data } = img;
    const plane = width * height;
    const out = new Float32Array(plane * 3);
    for (let p = 0, s = 0; p < plane; p++, s += 3) {
      out[p] = TO_UNIT[data[s]!]!;
      out[plane + p] = TO_UNIT[data[s + 1]!]!;
      out[2 * plane + p] = TO_UNIT[data[s + 2]!]!;
    }
    return { channels: 3, height, width, data: out };
  }
}

export class Normalize implements Transform {
  readonly spec: TransformSpec & { name: 'Normalize' };
  constructor(mean: readonly number[] = IMAGENET_MEAN, std: readonly number[] = IMAGENET_STD) {
    if (mean.length !== std.length) throw new RangeError('Normalize: mean and std differ in length');
    if (std.some((s) => s === 0)) throw new RangeError('Normalize: std evaluated to zero, leading to division by zero');
    this.spec = { name: 'Normalize', mean: [...mean], std: [...std] };
  }

  private lut: Float32Array | undefined;

  /**
   * ToTensor followed by this Normalize in one pass over an 8-bit image, through a 3 x 256 table
   * holding exactly the values the two steps compute (Compose uses it).
   */
  applyToImage(img: RgbImage): TensorImage {
    const { mean } = this.spec;
    if (mean.length !== 3 && mean.length !== 1) throw new RangeError(`Normalize: ${mean.length} means for 3 channels`);
    if (!this.lut) {
      const unit = new ToTensor().apply({ width: 256, height: 1, data: Uint8Array.from({ length: 768 }, (_, i) => Math.floor(i / 3)) }) as TensorImage;
      this.lut = (this.apply({ ...unit, channels: 3 }) as TensorImage).data; // channel c, value k at c * 256 + k
    }
    const lut = this.lut;
    const { width, height, data } = img;
    const plane = width * height;
    const out = new Float32Array(plane * 3);
    for (let p = 0, s = 0; p < plane; p++, s += 3) {
      out[p] = lut[data[s]!]!;
      out[plane + p] = lut[256 + data[s + 1]!]!;
      out[2 * plane + p] = lut[512 + data[s + 2]!]!;
    }
    return { channels: 3, height, width, data: out };
  }

  /** (x - mean) / std per channel, each step rounded to float32 like torch's sub_ / div_. */
  apply(x: Sample): Sample {
    if (!isTensor(x)) throw new TypeError('Normalize works on tensors: put it after ToTensor');
    const { channels, height, width, data } = x;
    const { mean, std } = this.spec;
    if (mean.length !== channels && mean.length !== 1) throw new RangeError(`Normalize: ${mean.length} means for ${channels} channels`);
    const plane = height * width;
    const out = new Float32Array(data.length);
    for (let c = 0; c < channels; c++) {
      const m = Math.fround(mean.length === 1 ? mean[0]! : mean[c]!);
      const s = Math.fround(std.length === 1 ? std[0]! : std[c]!);
      const base = c * plane;
      for (let p = base; p < base + plane; p++) out[p] = Math.fround(data[p]! - m) / s;
    }
    return { channels, height, width, data: out };
  }
}

export class Compose implements Transform {
  readonly spec: TransformSpec & { name: 'Compose' };
  readonly transforms: readonly Transform[];
  constructor(transforms: readonly Transform[]) {
    this.transforms = [...transforms];
    this.spec = { name: 'Compose', transforms: this.transforms.map((t) => t.spec) };
  }

  apply(x: Sample, rng: Random): Sample {
    let y = x;
    const ts = this.transforms;
    for (let i = 0; i < ts.length; i++) {
      const t = ts[i]!;
      const next = ts[i + 1];
      if (t instanceof ToTensor && next instanceof Normalize && !isTensor(y)) {
        y = next.applyToImage(y); // same values, one pass
        i++;
      } else {
        y = t.apply(y, rng);
      }
    }
    return y;
  }
}

/** Whether `transformFromSpec(t.spec)` rebuilds `t` exactly: only built-in transforms (what worker threads can run). */
export function isSerializable(t: Transform): boolean {
  if (t instanceof Compose) return t.transforms.every(isSerializable);
  return [RandomResizedCrop, RandomHorizontalFlip, Resize, CenterCrop, ToTensor, Normalize].some((cls) => t instanceof cls);
}

export function transformFromSpec(spec: TransformSpec): Transform {
  switch (spec.name) {
    case 'RandomResizedCrop':
      return new RandomResizedCrop(spec.size, { scale: spec.scale, ratio: spec.ratio });
    case 'RandomHorizontalFlip':
      return new RandomHorizontalFlip(spec.p);
    case 'Resize':
      return new Resize(spec.size);
    case 'CenterCrop':
      return new CenterCrop(spec.size);
    case 'ToTensor':
      return new ToTensor();
    case 'Normalize':
      return new Normalize(spec.mean, spec.std);
    case 'Compose':
      return new Compose(spec.transforms.map(transformFromSpec));
  }
}

/** The d2l / torchvision fine-tuning training transform: RandomResizedCrop(size), flip, ToTensor, Normalize. */
export function trainTransform(size = 224): Compose {
  return new Compose([new RandomResizedCrop(size), new RandomHorizontalFlip(0.5), new ToTensor(), new Normalize()]);
}

/**
 * The evaluation resize for a crop of `size`: the chapter's Resize(256) + CenterCrop(224), scaled (a 112 px run
 * resizes to 128, a 64 px one to 73).
 */
export function evalResize(size: number): number {
  return Math.round((size * 256) / 224);
}

/** The evaluation transform: Resize(resize), CenterCrop(size), ToTensor, Normalize; the resize derives from size. */
export function evalTransform(size = 224, resize = evalResize(size)): Compose {
  return new Compose([new Resize(resize), new CenterCrop(size), new ToTensor(), new Normalize()]);
}

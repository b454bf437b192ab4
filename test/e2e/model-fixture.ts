// Weight files for the page tests, made from the committed ResNet-18 fixture (fixtures/resnet18, a real torch.save
// file of torchvision's resnet18 with seeded weights): the .pth itself (1000 classes, as torchvision's ImageNet
// checkpoint is laid out) and a 2-way classifier in the format `npm run finetune` writes (safetensors, torchvision
// names, class names in metadata "classes").
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { classNamesMetadata, imageSizeMetadata } from '../../src/weights/classes.js';
import { readPth } from '../../src/weights/pth.js';
import { serializeSafetensors } from '../../src/weights/safetensors.js';
import { toFloat32, type StateDict } from '../../src/weights/state-dict.js';

export function fixturePthBytes(): Uint8Array {
  return new Uint8Array(gunzipSync(readFileSync(new URL('../../fixtures/resnet18/resnet18-seed0.pth.gz', import.meta.url))));
}

/**
 * The fixture network with a 2-way head: rows 934 (ImageNet's hot dog) and 0 of its 1000-way head; `imageSize`
 * writes the metadata `image_size` a run at that size would (none: the file does not say, as a .pth).
 */
export function fixtureClassifierBytes(classes: readonly string[] = ['hotdog', 'not-hotdog'], imageSize?: number): Uint8Array {
  const dict: StateDict = readPth(fixturePthBytes());
  const w = toFloat32(dict.get('fc.weight')!);
  const b = toFloat32(dict.get('fc.bias')!);
  const rows = [934, 0];
  dict.set('fc.weight', { dtype: 'float32', shape: [2, 512], data: Float32Array.from(rows.flatMap((r) => [...w.subarray(r * 512, (r + 1) * 512)])) });
  dict.set('fc.bias', { dtype: 'float32', shape: [2], data: Float32Array.from(rows, (r) => b[r]!) });
  return serializeSafetensors(dict, { ...classNamesMetadata(classes), ...(imageSize === undefined ? {} : imageSizeMetadata(imageSize)) });
}

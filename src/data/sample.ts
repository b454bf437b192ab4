/** One sample's work: decode a file and run the transform pipeline with the sample's own seed. */
import { decodeImage } from './decode.js';
import { Random } from '../util/random.js';
import { isTensor, ToTensor, type TensorImage, type Transform } from '../image/transforms.js';

/**
 * Decodes `path` and applies `transform` with a generator seeded by `seed`. A pipeline that ends
 * on an 8-bit image gets a final ToTensor, so the result is always a float CHW tensor.
 */
export async function loadSample(path: string, transform: Transform, seed: number): Promise<TensorImage> {
  const img = await decodeImage(path);
  const out = transform.apply(img, new Random(seed));
  return isTensor(out) ? out : (new ToTensor().apply(out) as TensorImage);
}

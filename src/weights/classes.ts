// What a classifier's weight file says of itself in its safetensors metadata: `classes`, a JSON array of strings in
// label order (label i = classes[i]), e.g. '["hotdog","not-hotdog"]', and `image_size`, the crop side it was trained
// at (evaluation uses the same). Written by the fine-tuning CLI and the browser page, read by the predict CLI and the
// page. Web-standard.
import { WeightFormatError } from './state-dict.js';

export const CLASSES_METADATA_KEY = 'classes';
/** The crop side the weights were trained at (decimal string): evaluation runs at the same size (evalTransform). */
export const IMAGE_SIZE_METADATA_KEY = 'image_size';

/** The metadata entry that records `classes` (distinct, non-empty names). */
export function classNamesMetadata(classes: readonly string[]): Record<string, string> {
  checkClassNames(classes, 'class names');
  return { [CLASSES_METADATA_KEY]: JSON.stringify(classes) };
}

/** The class names in a weight file's metadata; null when it has none. A malformed entry is an error. */
export function readClassNames(metadata: Record<string, string> | undefined): string[] | null {
  const raw = metadata?.[CLASSES_METADATA_KEY];
  if (raw === undefined) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new WeightFormatError(`metadata "${CLASSES_METADATA_KEY}" is not JSON: ${raw.slice(0, 80)}`);
  }
  if (!Array.isArray(parsed) || !parsed.every((c): c is string => typeof c === 'string')) {
    throw new WeightFormatError(`metadata "${CLASSES_METADATA_KEY}" must be a JSON array of strings, got ${raw.slice(0, 80)}`);
  }
  checkClassNames(parsed, `metadata "${CLASSES_METADATA_KEY}"`);
  return parsed;
}

function checkClassNames(classes: readonly string[], what: string): void {
  if (classes.length < 2) throw new WeightFormatError(`${what}: a classifier needs at least 2 classes, got ${classes.length}`);
  if (classes.some((c) => c.trim() === '')) throw new WeightFormatError(`${what}: a class name is empty`);
  if (new Set(classes).size !== classes.length) throw new WeightFormatError(`${what}: class names repeat (${classes.join(', ')})`);
}

/** The metadata entry that records the crop side the weights were trained at. */
export function imageSizeMetadata(size: number): Record<string, string> {
  if (!Number.isInteger(size) || size < 1) throw new WeightFormatError(`image size: a positive whole number of pixels, got ${size}`);
  return { [IMAGE_SIZE_METADATA_KEY]: String(size) };
}

/** The training crop side in a weight file's metadata; null when it has none. A malformed entry is an error. */
export function readImageSize(metadata: Record<string, string> | undefined): number | null {
  const raw = metadata?.[IMAGE_SIZE_METADATA_KEY];
  if (raw === undefined) return null;
  const n = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || !Number.isInteger(n) || n < 1) {
    throw new WeightFormatError(`metadata "${IMAGE_SIZE_METADATA_KEY}" must be a positive whole number of pixels, got ${raw.slice(0, 40)}`);
  }
  return n;
}

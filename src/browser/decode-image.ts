// Image decoding in a page: the browser's own decoders through createImageBitmap, pixels read back from a canvas,
// as the 8-bit RGB that src/image's transforms take (the same code Node runs after sharp).
//
// Where this can differ from the Node path (sharp, PIL semantics): JPEG decoders may round the inverse DCT and the
// chroma upsampling differently (measured on the test images: see the README); the browser applies EXIF rotation
// (PIL, torchvision and src/data do not); a transparent pixel's colour is lost (the canvas stores premultiplied
// alpha; PIL's convert('RGB') keeps it).
import { rgbFromRgba, type RgbImage } from '../image/image.js';

export class ImageDecodeError extends Error {
  override name = 'ImageDecodeError';
}

/** Decodes an image file (JPEG, PNG, WebP, GIF, BMP, AVIF: whatever the browser reads) to RGB. */
export async function decodeImageBlob(blob: Blob, name = (blob as File).name ?? 'image'): Promise<RgbImage> {
  let bitmap: ImageBitmap;
  try {
    bitmap = await createImageBitmap(blob, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  } catch (e) {
    throw new ImageDecodeError(`${name}: not an image this browser can decode (${blob.type || 'unknown type'}, ${blob.size} bytes)`, { cause: e });
  }
  try {
    const { width, height } = bitmap;
    if (width === 0 || height === 0) throw new ImageDecodeError(`${name}: the image is empty (${width}x${height})`);
    const canvas = new OffscreenCanvas(width, height);
    const ctx = canvas.getContext('2d', { willReadFrequently: true });
    if (!ctx) throw new ImageDecodeError(`${name}: this browser gives no 2D canvas to read pixels from`);
    ctx.drawImage(bitmap, 0, 0);
    const pixels = ctx.getImageData(0, 0, width, height, { colorSpace: 'srgb' });
    return rgbFromRgba(width, height, pixels.data);
  } finally {
    bitmap.close();
  }
}

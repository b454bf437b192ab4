// The pure image code shared by Node (src/data) and the browser page (src/browser): 8-bit RGB images, Pillow's
// bilinear resize, and torchvision's transforms. Web-standard: typed arrays only.
export type { RgbImage, Box } from './image.js';
export { crop, flipHorizontal, checkImage, rgbFromRgba } from './image.js';
export { resizeBilinear } from './resample.js';
export {
  Compose,
  RandomResizedCrop,
  RandomHorizontalFlip,
  Resize,
  CenterCrop,
  ToTensor,
  Normalize,
  resizedCrop,
  centerCropBox,
  resizedShape,
  roundHalfEven,
  transformFromSpec,
  isSerializable,
  trainTransform,
  evalTransform,
  evalResize,
  isTensor,
  IMAGENET_MEAN,
  IMAGENET_STD,
} from './transforms.js';
export type { Transform, TransformSpec, TensorImage, Sample } from './transforms.js';

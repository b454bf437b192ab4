/// <reference types="@webgpu/types" preserve="true" />
/**
 * hotdog-webgpu, the web-standard entry: runs in a page, a worker or Node, never loads a Node module. Under Node
 * import `hotdog-webgpu/node` instead (everything here, plus Dawn's WebGPU, files and image folders).
 *
 * ```ts
 * import { createRuntime, resnet18, readWeights, predict } from 'hotdog-webgpu';
 * const rt = await createRuntime();                        // navigator.gpu; or { gpu } to hand one in
 * const model = resnet18(rt, { numClasses: 2 });           // torchvision's names and structure
 * model.loadStateDict(readWeights('model.safetensors', bytes).tensors);  // strict, as torch's load_state_dict
 * const [p] = await predict(model, [image], { imageSize: 224, classes: ['hotdog', 'not-hotdog'] });
 * ```
 *
 * @module hotdog-webgpu
 */

// The runtime: one GPU device; every tensor and module belongs to the runtime it was made on.
export { createRuntime } from './runtime/engine.js';
export { Runtime, GpuError, RuntimeDestroyedError, ForeignTensorError, type RuntimeOptions } from './runtime/runtime.js';
export { acquireGpu, describeAdapter, type DeviceOptions, type GpuContext, type FeatureLevel } from './runtime/device.js';
export type { TuningStore } from './runtime/autotune.js';
export { Tensor, type DType as TensorDType, type TypedArrayOf, type GradFn } from './runtime/tensor.js';
// What the runtime's members take and hold (for kernels of your own: see docs/ops-conventions.md).
export type { KernelDef } from './runtime/kernel.js';
export type { Workgroups, BindingSource, BufferSource, ProfilerHooks } from './runtime/runtime.js';
export type { BufferPool, PoolStats } from './runtime/buffer-pool.js';
export type { TexturePool, TextureSize } from './runtime/texture-pool.js';
export type { Tuner } from './runtime/autotune.js';
export { Random } from './util/random.js';

// Autograd: differentiable functions (torch.nn.functional's names), backward(), no_grad.
export { relu, add, sum, mean, flatten, linear, conv2d, batchNorm2d, maxPool2d, adaptiveAvgPool2d, crossEntropy } from './autograd/functions.js';
export type { Conv2dArgs, BatchNormState, BatchNormEpilogueArgs, Reduction } from './autograd/functions.js';
export type { MaxPool2dOptions } from './kernels/max-pool/max-pool.js';
export type { BatchNormTracker } from './kernels/batch-norm/batch-norm.js';
export { backward, zeroGrad, type BackwardOptions } from './autograd/tape.js';
export { noGrad, isGradEnabled, setGradEnabled } from './autograd/grad-mode.js';

// nn: modules with torch's names, ResNet-18, SGD with parameter groups.
export { Module, StateDictError, type CounterBuffer } from './nn/module.js';
export { Conv2d, BatchNorm2d, ReLU, MaxPool2d, AdaptiveAvgPool2d, Flatten, Linear, Sequential, type Conv2dOptions, type LinearOptions } from './nn/layers.js';
export { ResNet, BasicBlock, resnet18, replaceHead, type ResNetOptions } from './nn/resnet.js';
export { SGD, type SgdOptions, type ParamGroup, type SgdStateDict } from './nn/sgd.js';

// Training: a checked step and loop over batches from any async iterable, the recipe (modes, parameter groups).
export { trainStep, fit, checkBatch, BatchError, type StepResult, type CheckedFitOptions, type BatchExpectations } from './train/checked.js';
export { DeviceFailedError, shardSizes, type Replica } from './train/data-parallel.js';
export { evaluateAccuracy, NonFiniteLossError, type HostBatch, type EpochMetrics, type BatchProgress, type FitOptions } from './train/fit.js';
export { MODES, modeDefaults, createModel, parameterGroups, recipeOptimizer, ModeError, type Mode, type Recipe, type BuiltModel } from './train/modes.js';

// Inference and the page's classifier.
export { predict, predictBatch, type PredictOptions, type ClassPrediction } from './classifier/predict.js';
export { Classifier, DEFAULT_CLASSES, type Prediction, type StepReport, type LabelledImage, type HeadTrainingOptions, type FullTrainingOptions, type ModelKind } from './classifier/classifier.js';

// Images and torchvision's transforms.
export * from './image/index.js';

// Weight files from bytes: torch.save (.pth) and safetensors, state dicts, class-name metadata.
export {
  readPth,
  parseSafetensors,
  serializeSafetensors,
  readWeightBytes as readWeights,
  detectWeightFormat,
  classNamesMetadata,
  readClassNames,
  WeightFormatError,
  PickleError,
  toFloat32,
  type StateDict,
  type TensorData,
  type DType,
  type TensorArray,
  type Safetensors,
  type ReadPthOptions,
  type WeightFileFormat,
} from './weights/index.js';
export { imageSizeMetadata, readImageSize } from './weights/classes.js';

// Decoding in a page (createImageBitmap + canvas).
export { decodeImageBlob, ImageDecodeError } from './browser/decode-image.js';

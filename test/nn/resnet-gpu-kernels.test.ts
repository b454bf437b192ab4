// The 'gpu' kernel mode (RuntimeOptions.kernels, HOTDOG_KERNELS=gpu) on whatever adapter runs the tests: a whole
// ResNet-18 training step must take only what a GPU adapter would use. No kernel that reads or writes a texture
// (the texture GEMM, and Winograd and im2col on it) and no copy into a texture may be recorded; the linear layer
// runs on the tiled GPU GEMM. The same step in the adapter's own mode is recorded too: on a CPU driver it does use
// the texture kernels, which shows the check sees them; with Winograd avoided (whose rounding, amplified by
// BatchNorm over a batch of two, moves this loss by about 1e-2) its loss agrees with the GPU choices'.
import { describe, expect, it } from 'vitest';
import { backward } from '../../src/autograd/tape.js';
import { crossEntropy } from '../../src/autograd/functions.js';
import { textureGemmSupported } from '../../src/kernels/matmul/texture-gemm.js';
import { resnet18 } from '../../src/nn/resnet.js';
import { SGD } from '../../src/nn/sgd.js';
import { createNodeRuntime, destroyNodeRuntime } from '../../src/node/engine-node.js';
import type { KernelMode } from '../../src/runtime/device.js';
import type { ProfilerHooks, RecordedCommand } from '../../src/runtime/runtime.js';
import { Tensor } from '../../src/runtime/tensor.js';
import { randn } from '../helpers/gradcheck.js';

interface StepRecord {
  loss: number;
  dispatches: string[];
  /** Kernels that bind a texture, and copies into textures. */
  textureCommands: string[];
  /** The adapter's own mode would use texture kernels here. */
  textureCapable: boolean;
  adapterKey: string;
}

/** Every command a runtime records, seen through the profiler hooks. */
function commandLog(log: RecordedCommand[]): ProfilerHooks {
  return {
    begin() {},
    end() {},
    record(cmd) {
      log.push(cmd);
      return undefined;
    },
    beforeSubmit() {},
  };
}

async function trainStep(kernels: KernelMode, avoidWinograd = false): Promise<StepRecord> {
  const rt = await createNodeRuntime({ kernels });
  try {
    if (avoidWinograd) rt.tuner.avoid(['winograd4', 'winograd2']);
    const log: RecordedCommand[] = [];
    rt.profiler = commandLog(log);
    const model = resnet18(rt, { numClasses: 2, seed: 3 }).train();
    const opt = new SGD(model.parameters(), { lr: 1e-3, weightDecay: 1e-3 });
    const x = Tensor.fromArray(rt, randn(2 * 3 * 32 * 32, 9), [2, 3, 32, 32]);
    const y = Tensor.fromArray(rt, Int32Array.from([0, 1]));
    opt.zeroGrad();
    const loss = crossEntropy(model.forward(x), y, 'sum');
    backward(loss);
    opt.step();
    const value = await loss.item();
    rt.profiler = null;
    for (const t of [x, y, loss]) t.release();
    opt.release();
    model.release();
    const dispatches = log.flatMap((c) => (c.op === 'dispatch' ? [c.def.name] : []));
    const textureCommands = log.flatMap((c) => {
      if (c.op === 'copyToTexture') return ['copyToTexture'];
      if (c.op === 'dispatch' && /\btexture_(storage_)?2d/.test(c.def.wgsl)) return [c.def.name];
      return [];
    });
    return { loss: value, dispatches, textureCommands, textureCapable: textureGemmSupported(rt), adapterKey: rt.tuner.adapterKey };
  } finally {
    destroyNodeRuntime(rt);
  }
}

describe("the 'gpu' kernel mode", () => {
  it('runs a ResNet-18 training step without any texture kernel, on the tiled GPU GEMM, with the loss of the adapter\'s own direct lowerings', async () => {
    const own = await trainStep('auto');
    const direct = await trainStep('auto', true);
    const gpu = await trainStep('gpu');
    console.log(
      `own mode: ${own.dispatches.length} dispatches, ${own.textureCommands.length} with textures; ` +
        `gpu mode: ${gpu.dispatches.length} dispatches, ${gpu.textureCommands.length} with textures; ` +
        `losses: own ${own.loss}, own without Winograd ${direct.loss}, gpu ${gpu.loss}`,
    );
    expect(gpu.textureCommands).toEqual([]);
    expect(gpu.dispatches.some((d) => d.startsWith('tiledGemm'))).toBe(true);
    expect(gpu.adapterKey).toContain('kernels=gpu');
    expect(own.adapterKey).not.toContain('kernels=gpu');
    // The check sees texture kernels where the adapter's own mode uses them (lavapipe, SwiftShader).
    if (own.textureCapable) expect(own.textureCommands.length).toBeGreaterThan(0);
    expect(Number.isFinite(gpu.loss)).toBe(true);
    expect(Math.abs(gpu.loss - direct.loss) / Math.abs(direct.loss)).toBeLessThan(1e-4);
  });
});

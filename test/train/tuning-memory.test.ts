// Memory left behind by kernel tuning: measuring every variant of every convolution shape before the first step
// allocates operands (buffers, and textures for the texture GEMM's lowerings) no training step needs again. The
// loop trims both pools after tuning, so what they hold afterwards is what the steps use, the same every step.
import { describe, expect, it } from 'vitest';
import { resnet18 } from '../../src/nn/resnet.js';
import { SGD } from '../../src/nn/sgd.js';
import { TexturePool } from '../../src/runtime/texture-pool.js';
import { trainStep, tuneKernels, type HostBatch } from '../../src/train/fit.js';
import { Random } from '../../src/util/random.js';
import { testRuntime } from '../helpers/gpu.js';

describe('pools after tuning', () => {
  it('TexturePool.trim destroys the free textures and keeps the live ones', async () => {
    const rt = await testRuntime();
    const pool = new TexturePool(rt.device);
    const a = pool.acquire({ width: 16, height: 8, layers: 1 });
    const b = pool.acquire({ width: 32, height: 8, layers: 2 });
    const c = pool.acquire({ width: 16, height: 8, layers: 1 });
    pool.release(b);
    pool.release(c);
    expect(pool.stats()).toMatchObject({ liveTextures: 1, texturesHeld: 3, bytesHeld: (16 * 8 + 32 * 8 * 2 + 16 * 8) * 16 });
    pool.trim();
    expect(pool.stats()).toMatchObject({ liveTextures: 1, texturesHeld: 1, bytesHeld: 16 * 8 * 16, allocations: 3 });
    pool.release(a);
    pool.acquire({ width: 32, height: 8, layers: 2 }); // trimmed: a new allocation
    expect(pool.stats().allocations).toBe(4);
    pool.destroy();
  });

  it('a ResNet-18 run holds no tuning leftovers: nothing free after tuning, the same bytes after steps 1 and 2', async () => {
    const rt = await testRuntime();
    const g = new Random(7);
    const n = 4;
    const batch: HostBatch = {
      images: Float32Array.from({ length: n * 3 * 32 * 32 }, () => g.uniform(-1, 1)),
      labels: Int32Array.from({ length: n }, (_, i) => i % 2),
      shape: [n, 3, 32, 32],
    };
    const model = resnet18(rt, { numClasses: 2, seed: 1 });
    const sgd = new SGD(model.parameters(), { lr: 0.01 });
    rt.tuner.enabled = true;
    await tuneKernels(model, sgd, batch);
    const afterTuning = rt.stats;
    // Nothing but live tensors (the parameters) is left: no buffer or texture of a measured variant.
    expect(afterTuning.pool.bytesHeld).toBe(afterTuning.pool.bytesInUse);
    expect(afterTuning.textures.bytesHeld).toBe(0);
    await trainStep(model, sgd, batch);
    const step1 = rt.stats;
    await trainStep(model, sgd, batch);
    const step2 = rt.stats;
    console.log(
      `after tuning: buffers ${afterTuning.pool.bytesHeld} B, textures ${afterTuning.textures.bytesHeld} B; ` +
        `after steps 1 and 2: buffers ${step1.pool.bytesHeld} / ${step2.pool.bytesHeld} B, textures ${step1.textures.bytesHeld} / ${step2.textures.bytesHeld} B (${step2.textures.texturesHeld} textures)`,
    );
    expect(step2.pool.bytesHeld).toBe(step1.pool.bytesHeld);
    expect(step2.textures.bytesHeld).toBe(step1.textures.bytesHeld);
    sgd.release();
    model.release();
  });
});

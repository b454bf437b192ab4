// Data parallelism over two adapters in one process: lavapipe and SwiftShader (Chromium's CPU Vulkan driver, added
// to the Vulkan loader's drivers with VK_ADD_DRIVER_FILES; Dawn opens one instance per adapter name). The drivers'
// kernels differ (subgroups of 8 and 4, f16 or not), so they round differently: the replicas stay identical because
// only the first steps and its parameters are copied to the second ('broadcast'), and one step matches one
// lavapipe device with accumulate 2 to the rounding of the two drivers' kernels, not bit for bit. Skipped where
// SwiftShader is not installed (Debian's chromium package ships it; CI installs it).
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNodeRuntimes } from '../../src/node/engine-node.js';
import { resnet18 } from '../../src/nn/resnet.js';
import { SGD } from '../../src/nn/sgd.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import { dataParallelStep, replicaDifference, replicaSync, replicateState, type Replica } from '../../src/train/data-parallel.js';
import { trainStep, type HostBatch } from '../../src/train/fit.js';
import { Random } from '../../src/util/random.js';

// Where scripts/test-swiftshader.sh looks for it too.
const CANDIDATES = ['/usr/lib/chromium/vk_swiftshader_icd.json', '/usr/lib/chromium-browser/vk_swiftshader_icd.json', '/opt/google/chrome/vk_swiftshader_icd.json'];
const icd = process.env.SWIFTSHADER_ICD ?? CANDIDATES.find((f) => existsSync(f));
if (icd) process.env.VK_ADD_DRIVER_FILES = [process.env.VK_ADD_DRIVER_FILES, icd].filter((s) => s).join(':');

const SIZE = 32;

function batchOf(g: Random, n: number): HostBatch {
  const images = Float32Array.from({ length: n * 3 * SIZE * SIZE }, () => Math.fround(g.uniform(-2, 2)));
  const labels = Int32Array.from({ length: n }, () => g.randint(0, 1));
  return { images, labels, shape: [n, 3, SIZE, SIZE] };
}

function replicaOn(rt: Runtime): Replica {
  const model = resnet18(rt, { numClasses: 2, seed: 3 });
  return { model, optimizer: new SGD(model.parameters(), { lr: 0.05, momentum: 0.9, weightDecay: 1e-3 }) };
}

const read = (r: Replica, what: 'grad' | 'param'): Promise<Float32Array[]> =>
  Promise.all(r.model.parameters().map(async (p) => Float32Array.from(await (what === 'grad' ? p.grad! : p).read())));

/** Largest |a - b| over a tensor, relative to the tensor's largest |b|; the worst over all tensors. */
function maxRelative(a: Float32Array[], b: Float32Array[]): number {
  let worst = 0;
  a.forEach((x, i) => {
    const y = b[i]!;
    const scale = y.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    for (let j = 0; j < x.length; j++) worst = Math.max(worst, Math.abs(x[j]! - y[j]!) / Math.max(scale, 1e-30));
  });
  return worst;
}

describe.skipIf(!icd)('lavapipe + SwiftShader as two adapters', () => {
  let rts: Runtime[];
  beforeAll(async () => {
    rts = [...(await createNodeRuntimes(2, { adapters: ['llvmpipe', 'SwiftShader'] })), ...(await createNodeRuntimes(1, { adapters: ['llvmpipe'] }))];
    for (const rt of rts) rt.tuner.enabled = false;
  });
  afterAll(() => {
    for (const rt of rts ?? []) rt.destroy();
  });

  it('opens a device on each, and one step matches one lavapipe device with accumulate 2; the replicas stay identical', async () => {
    expect(rts[0]!.ctx.adapterInfo.description).toMatch(/llvmpipe/i);
    expect(rts[1]!.ctx.adapterInfo.description).toMatch(/swiftshader/i);
    const g = new Random(7);
    const a = replicaOn(rts[0]!);
    const b = replicaOn(rts[1]!);
    const single = replicaOn(rts[2]!);
    await replicateState([a, b, single]);
    expect(replicaSync([a, b])).toBe('broadcast');
    const batch = batchOf(g, 6);
    const [dpLoss, dpCorrect] = await dataParallelStep([a, b], batch);
    const [accLoss, accCorrect] = await trainStep(single.model, single.optimizer, batch, 2);
    const lossDiff = Math.abs(dpLoss - accLoss) / Math.abs(accLoss);
    const gradDiff = maxRelative(await read(a, 'grad'), await read(single, 'grad'));
    const paramDiff = maxRelative(await read(a, 'param'), await read(single, 'param'));
    console.log(`lavapipe+SwiftShader vs lavapipe accumulate 2: loss ${lossDiff.toExponential(2)}, gradients ${gradDiff.toExponential(2)}, parameters ${paramDiff.toExponential(2)} (relative)`);
    expect(lossDiff).toBeLessThanOrEqual(1e-5);
    expect(gradDiff).toBeLessThanOrEqual(1e-4);
    expect(paramDiff).toBeLessThanOrEqual(1e-4);
    expect(dpCorrect).toBe(accCorrect);
    await dataParallelStep([a, b], batchOf(g, 4));
    expect(await replicaDifference([a, b])).toBeNull();
  });
});

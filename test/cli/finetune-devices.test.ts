// npm run finetune --devices 2 (two lavapipe devices of one adapter, in this process): run.json records both
// devices; a run stopped after its first epoch and resumed ends bit-identical to the same run left alone (the
// replicas are rebuilt from the checkpoint); a resume keeps the device count and refuses another with a clear
// message; a device destroyed mid-run stops the run with a message naming it, run.json says so, and the last
// checkpoint stays readable. And --accumulate: recorded, and fixed on resume.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseFinetuneArgs, UsageError } from '../../src/cli/finetune-options.js';
import { runFinetune } from '../../src/cli/finetune-run.js';
import { createNodeRuntimes } from '../../src/node/engine-node.js';
import { readSafetensorsFile } from '../../src/node/weights-file.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import { DeviceFailedError } from '../../src/train/data-parallel.js';
import { parseCheckpoint } from '../../src/train/checkpoint.js';
import type { RunRecord } from '../../src/train/run-record.js';
import { writeTinyImageFolder } from '../helpers/tiny-image-folder.js';

let tmp: string;
let data: string;
let rts: Runtime[];

async function run(argv: string[], runtimes: readonly Runtime[], write: (text: string) => void = () => undefined): Promise<RunRecord> {
  const command = parseFinetuneArgs(argv);
  if (command.kind === 'help') throw new Error('help');
  return (await runFinetune(command, { output: { write }, argv, runtimes })).record;
}

const readRecord = (dir: string): RunRecord => JSON.parse(readFileSync(join(dir, 'run.json'), 'utf8')) as RunRecord;

async function checkpoint(dir: string): Promise<ReturnType<typeof parseCheckpoint>> {
  const { tensors, metadata } = await readSafetensorsFile(join(dir, 'checkpoint.safetensors'));
  return parseCheckpoint(tensors, metadata, dir);
}

// 8 training images in batches of 4: two per device and shard (BatchNorm needs two values per channel at 32 px).
const recipe = (out: string, epochs: number): string[] => [
  '--data', data, '--weights', 'none', '--image-size', '32', '--batch-size', '4', '--epochs', String(epochs),
  '--momentum', '0.9', '--seed', '3', '--devices', '2', '--json', '--out', out,
];

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'finetune-devices-'));
  data = await writeTinyImageFolder(join(tmp, 'data'), { trainPerClass: 4, testPerClass: 2 });
  rts = await createNodeRuntimes(2);
});
afterAll(() => {
  for (const rt of rts ?? []) rt.destroy();
  rmSync(tmp, { recursive: true, force: true });
});

describe('npm run finetune --devices 2', () => {
  let whole: RunRecord;
  const wholeDir = (): string => join(tmp, 'whole');

  beforeAll(async () => {
    whole = await run(recipe(wholeDir(), 2), rts);
  });

  it('records both devices and trains on every example', () => {
    expect(whole.status).toBe('finished');
    expect(whole.options.devices).toBe(2);
    expect(whole.devices).toHaveLength(2);
    for (const d of whole.devices!) expect(d.adapter?.description).toMatch(/llvmpipe/i);
    expect(whole.device).toEqual(whole.devices![0]);
    expect(whole.epochs.map((e) => e.examples)).toEqual([8, 8]);
  });

  it('resumes with its two devices and ends bit-identical to the run left alone', async () => {
    const dir = join(tmp, 'resumed');
    await run(recipe(dir, 1), rts);
    const resumed = await run(['--resume', dir, '--epochs', '2', '--json'], rts);
    expect(resumed.status).toBe('finished');
    expect(resumed.options.devices).toBe(2);
    expect(resumed.epochs.map((e) => [e.loss, e.trainAcc, e.testAcc])).toEqual(whole.epochs.map((e) => [e.loss, e.trainAcc, e.testAcc]));
    const a = await readSafetensorsFile(join(dir, 'model.safetensors'));
    const b = await readSafetensorsFile(join(wholeDir(), 'model.safetensors'));
    for (const [name, t] of b.tensors) expect(Buffer.from(a.tensors.get(name)!.data.buffer).equals(Buffer.from(t.data.buffer)), name).toBe(true);
  });

  it('refuses to resume on another number of devices, saying why', async () => {
    const dir = join(tmp, 'resumed');
    const err = await run(['--resume', dir, '--epochs', '3', '--devices', '1'], rts).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toMatch(/the run trained on 2 devices; --devices 1 gives 1\. A resumed run keeps its number of devices/);
    expect((err as Error).message).toMatch(/leave --devices out or pass --devices 2/);
    expect(readRecord(dir).status).toBe('finished'); // nothing written
  });

  it('records --accumulate and keeps it on resume', async () => {
    const dir = join(tmp, 'accumulate');
    const r = await run([...recipe(dir, 1), '--accumulate', '2'].filter((a, i, all) => !(a === '--devices' || all[i - 1] === '--devices')), rts);
    expect(r.options.accumulate).toBe(2);
    expect(r.options.devices).toBe(1);
    expect(r.devices).toHaveLength(1);
    expect(r.epochs[0]!.examples).toBe(8);
    const resumed = await run(['--resume', dir, '--epochs', '2', '--json'], rts);
    expect(resumed.options.accumulate).toBe(2);
    expect(resumed.epochs.map((e) => e.examples)).toEqual([8, 8]);
  });
});

describe('a device lost mid-run', () => {
  it('stops the run naming the device; run.json says failed; the last checkpoint stays readable', async () => {
    const doomed = await createNodeRuntimes(2);
    const dir = join(tmp, 'lost');
    try {
      // With --json the first epoch's line comes after its checkpoint is written: then the second device goes.
      const err = await run(recipe(dir, 3), doomed, (text) => {
        if (/"epoch":1,/.test(text)) doomed[1]!.device.destroy();
      }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DeviceFailedError);
      expect((err as Error).message).toMatch(/^device 2 of 2 \(.*llvmpipe.*\) failed: /i);
      const record = readRecord(dir);
      expect(record.status).toBe('failed');
      expect(record.error).toMatch(/device 2 of 2 .* failed/);
      expect(record.epochs).toHaveLength(1);
      expect((await checkpoint(dir)).state.epoch).toBe(1);
    } finally {
      for (const rt of doomed) rt.destroy();
    }
  });
});

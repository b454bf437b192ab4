// npm run finetune's command line: each mode's defaults, the options that conflict, and what --resume may change.
import { describe, expect, it } from 'vitest';
import { parseFinetuneArgs, UsageError, type FinetuneOptions } from '../../src/cli/finetune-options.js';

function options(argv: string[]): FinetuneOptions {
  const c = parseFinetuneArgs(argv);
  if (c.kind !== 'run') throw new Error(`expected a run, got ${c.kind}`);
  return c.options;
}

describe('parseFinetuneArgs', () => {
  it('defaults to the chapter recipe, mode finetune', () => {
    expect(options([])).toEqual({
      mode: 'finetune', data: null, train: null, test: null, imageSize: 224, weights: 'imagenet', epochs: 5, batchSize: 128,
      lr: 5e-5, headLrMult: 10, weightDecay: 1e-3, momentum: 0, seed: 0, maxBatches: null, out: null, json: false, cacheDir: null, workers: 0,
      devices: 1, accumulate: 1,
    });
  });

  it('gives each mode its learning rates; --weights none means scratch', () => {
    expect(options(['--mode', 'scratch'])).toMatchObject({ mode: 'scratch', weights: 'none', lr: 5e-4, headLrMult: 1 });
    expect(options(['--weights', 'none'])).toMatchObject({ mode: 'scratch', lr: 5e-4, headLrMult: 1 });
    expect(options(['--mode', 'frozen'])).toMatchObject({ mode: 'frozen', lr: 5e-5, headLrMult: 10 });
    expect(options(['--mode', 'hotdog-head', '--weights', 'w.pth', '--lr', '1e-4'])).toMatchObject({ mode: 'hotdog-head', weights: 'w.pth', lr: 1e-4, headLrMult: 10 });
  });

  it('refuses conflicting or bad options, naming them', () => {
    const bad: [string[], RegExp][] = [
      [['--mode', 'best'], /--mode: 'best' is not one of finetune, scratch, frozen, hotdog-head/],
      [['--weights', 'none', '--mode', 'frozen'], /--weights none trains from scratch; it cannot be combined with --mode frozen/],
      [['--mode', 'scratch', '--weights', 'w.pth'], /--weights w\.pth would be ignored/],
      [['--train', 'a'], /--test: give it too \(or --data DIR\), since --train is given/],
      [['--lr=-1'], /--lr: '-1' is not a learning rate/],
      [['--lr', ''], /--lr: '' is not a learning rate/],
      [['--batch-size', '2.5'], /--batch-size: '2\.5' is not a positive integer/],
      [['--save', 'x'], /--save is gone/],
      [['--resume', 'runs/a', '--seed', '3'], /--resume continues a run with the options it was started with; --seed cannot change/],
      [['extra'], /Unexpected argument 'extra'/],
      [['--devices', '0'], /--devices: '0' is not a positive integer or 'all'/],
      [['--devices', 'two'], /--devices: 'two' is not a positive integer or 'all'/],
      [['--accumulate', '1.5'], /--accumulate: '1\.5' is not a positive integer/],
      [['--resume', 'runs/a', '--accumulate', '2'], /--accumulate cannot change/],
    ];
    for (const [argv, message] of bad) {
      expect(() => parseFinetuneArgs(argv), argv.join(' ')).toThrow(UsageError);
      expect(() => parseFinetuneArgs(argv), argv.join(' ')).toThrow(message);
    }
  });

  it('takes --devices N or all and --accumulate K; --resume may name its own device count', () => {
    expect(options(['--devices', '2', '--accumulate', '4'])).toMatchObject({ devices: 2, accumulate: 4 });
    expect(options(['--devices', 'all'])).toMatchObject({ devices: 'all', accumulate: 1 });
    expect(parseFinetuneArgs(['--resume', 'runs/a', '--devices', '2'])).toMatchObject({ kind: 'resume', request: { devices: 2 } });
  });

  it('lets --resume change only the epochs, learning rates, batch limit, workers and output style', () => {
    expect(parseFinetuneArgs(['--resume', 'runs/a', '--epochs', '8', '--lr', '1e-3', '--json', '--workers', '2'])).toEqual({
      kind: 'resume',
      request: { resume: 'runs/a', json: true, workers: 2, devices: null, changes: { epochs: 8, lr: 1e-3 } },
    });
    expect(parseFinetuneArgs(['-h'])).toEqual({ kind: 'help' });
  });
});

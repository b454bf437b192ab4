// What npm run finetune shows while it runs. On a terminal: a bar per epoch (running loss, accuracy,
// examples/sec, ETA) and one for the test pass. Elsewhere (a pipe, a log file): plain lines at the trace points
// (ten per epoch) and one after the test pass. With --json: nothing but the JSON objects.
import cliProgress from 'cli-progress';
import type { BatchProgress } from '../train/fit.js';
import { isTracePoint, type EpochRecord } from '../train/run-record.js';

/** Where text goes: process.stdout, or a collector in tests. */
export interface Output {
  write(text: string): void;
  readonly isTTY?: boolean;
}

export interface Progress {
  /** A header or closing line (not printed with --json). */
  info(line: string): void;
  epochStart(epoch: number, epochs: number, batches: number): void;
  batch(p: BatchProgress, epochs: number, batches: number): void;
  testStart(epoch: number, batches: number): void;
  testBatch(done: number, images: number): void;
  epochEnd(m: EpochRecord, epochs: number): void;
  /** The final summary: the run's files (text lines, or one JSON object). */
  done(files: Record<string, string>): void;
  /** Clears any bar before an error message. */
  stop(): void;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

/** The chapter's per-epoch line (the engine and the PyTorch reference print the same). */
export function epochLine(m: EpochRecord, epochs: number): string {
  return (
    `epoch ${m.epoch}/${epochs}: loss ${m.loss.toFixed(3)}, train acc ${m.trainAcc.toFixed(3)}, test acc ${m.testAcc.toFixed(3)}, ` +
    `${m.examplesPerSec.toFixed(2)} examples/sec (${m.examples} images in ${m.trainSeconds.toFixed(1)} s; test ${m.testSeconds.toFixed(1)} s)`
  );
}

function eta(p: BatchProgress, batches: number): number {
  return (p.seconds / p.batch) * (batches - p.batch);
}

class PlainProgress implements Progress {
  private testImages = 0;
  constructor(private readonly out: Output) {}
  info(line: string): void {
    this.out.write(`${line}\n`);
  }
  epochStart(_epoch: number, _epochs: number, _batches: number): void {}
  batch(p: BatchProgress, epochs: number, batches: number): void {
    if (!isTracePoint(p.batch, batches)) return;
    this.out.write(
      `epoch ${p.epoch}/${epochs} batch ${p.batch}/${batches}: loss ${(p.lossSum / p.examples).toFixed(3)}, train acc ${(p.correct / p.examples).toFixed(3)}, ` +
        `${(p.examples / p.seconds).toFixed(1)} examples/sec, ETA ${formatDuration(eta(p, batches))}\n`,
    );
  }
  testStart(_epoch: number, _batches: number): void {
    this.testImages = 0;
  }
  testBatch(_done: number, images: number): void {
    this.testImages = images;
  }
  epochEnd(m: EpochRecord, epochs: number): void {
    this.out.write(`  test: ${this.testImages} images, acc ${m.testAcc.toFixed(3)} (${m.testSeconds.toFixed(1)} s)\n`);
    this.out.write(`${epochLine(m, epochs)}\n`);
  }
  done(files: Record<string, string>): void {
    this.out.write(`run folder: ${files.dir}\n`);
    for (const [k, v] of Object.entries(files)) if (k !== 'dir') this.out.write(`  ${k.padEnd(11)} ${v}\n`);
  }
  stop(): void {}
}

class TtyProgress extends PlainProgress {
  private bar: cliProgress.SingleBar | null = null;
  constructor(private readonly stream: NodeJS.WritableStream & Output) {
    super(stream);
  }
  private start(format: string, total: number, payload: Record<string, string>): void {
    this.stop();
    this.bar = new cliProgress.SingleBar(
      { format, stream: this.stream, hideCursor: true, clearOnComplete: true, barsize: 24, fps: 5, etaBuffer: 1e9 },
      cliProgress.Presets.shades_classic,
    );
    this.bar.start(total, 0, payload);
  }
  override epochStart(epoch: number, epochs: number, batches: number): void {
    this.start(`epoch ${epoch}/${epochs} {bar} {value}/{total} batches | loss {loss} | acc {acc} | {rate} examples/s | ETA {left}`, batches, {
      loss: '-',
      acc: '-',
      rate: '-',
      left: '-',
    });
  }
  override batch(p: BatchProgress, _epochs: number, batches: number): void {
    this.bar?.update(p.batch, {
      loss: (p.lossSum / p.examples).toFixed(3),
      acc: (p.correct / p.examples).toFixed(3),
      rate: (p.examples / p.seconds).toFixed(1),
      left: formatDuration(eta(p, batches)),
    });
  }
  override testStart(epoch: number, batches: number): void {
    super.testStart(epoch, batches);
    this.start(`  test     {bar} {value}/{total} batches | {images} images`, batches, { images: '0' });
  }
  override testBatch(done: number, images: number): void {
    super.testBatch(done, images);
    this.bar?.update(done, { images: String(images) });
  }
  override epochEnd(m: EpochRecord, epochs: number): void {
    this.stop();
    super.epochEnd(m, epochs);
  }
  override stop(): void {
    this.bar?.stop();
    this.bar = null;
  }
}

class JsonProgress implements Progress {
  constructor(private readonly out: Output) {}
  info(): void {}
  epochStart(): void {}
  batch(): void {}
  testStart(): void {}
  testBatch(): void {}
  epochEnd(m: EpochRecord): void {
    this.out.write(`${JSON.stringify(m)}\n`);
  }
  done(files: Record<string, string>): void {
    this.out.write(`${JSON.stringify({ files })}\n`);
  }
  stop(): void {}
}

export function createProgress(out: Output, json: boolean): Progress {
  if (json) return new JsonProgress(out);
  if (out.isTTY && 'on' in out) return new TtyProgress(out as NodeJS.WritableStream & Output);
  return new PlainProgress(out);
}

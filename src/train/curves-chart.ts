// curves.svg: train loss, train accuracy (running means, ten points an epoch) and test accuracy (at the end of
// each epoch) against epochs, like the chapter's figure, for one run or several overlaid. Drawn with vega-lite,
// rendered to SVG by vega's headless renderer (no browser, no canvas).
import { parse, View } from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import type { RunRecord } from './run-record.js';

export interface LabelledRun {
  label: string;
  record: RunRecord;
}

interface Row {
  run: string;
  metric: 'train loss' | 'train acc' | 'test acc';
  epoch: number;
  value: number;
}

function rows(runs: readonly LabelledRun[]): Row[] {
  const out: Row[] = [];
  for (const { label, record } of runs) {
    // A point at epoch 0 would be a guess; the curves start at the first trace point, as d2l's do.
    for (const t of record.trace) {
      out.push({ run: label, metric: 'train loss', epoch: t.epoch, value: t.loss });
      out.push({ run: label, metric: 'train acc', epoch: t.epoch, value: t.trainAcc });
    }
    for (const e of record.epochs) {
      if (Number.isFinite(e.testAcc)) out.push({ run: label, metric: 'test acc', epoch: e.epoch, value: e.testAcc });
    }
  }
  return out;
}

/** One label per run folder: the folder name plus engine and mode, made unique. */
export function runLabel(dir: string, record: RunRecord): string {
  const name = dir.replace(/[/\\]+$/, '').split(/[/\\]/).pop() || dir;
  return `${name} (${record.engine.split(' ')[0]}, ${record.options.mode})`;
}

/** Breaks a long title into lines of at most `width` characters, at spaces (vega estimates text widths without a canvas, generously). */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line ? `${line} ${word}` : word;
    }
  }
  return line ? [...lines, line] : lines;
}

export function curvesSpec(runs: readonly LabelledRun[], title: string): TopLevelSpec {
  const several = runs.length > 1;
  const maxEpoch = Math.max(1, ...runs.flatMap((r) => r.record.options.epochs));
  const x = {
    field: 'epoch',
    type: 'quantitative' as const,
    title: 'epoch',
    scale: { domain: [0, maxEpoch], nice: false },
    axis: { tickMinStep: 1, grid: true },
  };
  // One run: colour tells the metric. Several: colour tells the run, the dash tells train from test.
  const color = several
    ? { field: 'run', type: 'nominal' as const, title: 'run', legend: { orient: 'bottom' as const, direction: 'vertical' as const, labelLimit: 600 } }
    : { field: 'metric', type: 'nominal' as const, title: null, scale: { domain: ['train loss', 'train acc', 'test acc'] }, legend: { orient: 'bottom' as const } };
  const dash = several
    ? { strokeDash: { field: 'metric', type: 'nominal' as const, title: 'curve', scale: { domain: ['train loss', 'train acc', 'test acc'], range: [[1, 0], [1, 0], [6, 3]] }, legend: { orient: 'bottom' as const, symbolType: 'stroke', symbolStrokeWidth: 2, symbolSize: 300, encode: { symbols: { update: { stroke: { value: '#444' } } } } } } }
    : {};
  const panel = (metrics: string[], yTitle: string, yAxis: Record<string, unknown>, yScale: Record<string, unknown>) => ({
    width: 360,
    height: 260,
    transform: [{ filter: { field: 'metric', oneOf: metrics } }],
    mark: { type: 'line' as const, point: { size: 28 }, strokeWidth: 1.6, clip: true },
    encoding: {
      x,
      y: { field: 'value', type: 'quantitative' as const, title: yTitle, axis: yAxis, scale: yScale },
      color,
      detail: { field: 'metric', type: 'nominal' as const },
      ...dash,
      tooltip: [{ field: 'run' }, { field: 'metric' }, { field: 'epoch', format: '.2f' }, { field: 'value', format: '.3f' }],
    },
  });
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: wrap(title, 80), anchor: 'start', fontSize: 13 },
    data: { values: rows(runs) as unknown as Record<string, unknown>[] },
    config: { font: 'DejaVu Sans, Helvetica, Arial, sans-serif', axis: { labelFontSize: 11, titleFontSize: 12 }, legend: { labelFontSize: 11, titleFontSize: 11 } },
    resolve: { scale: { color: 'shared', strokeDash: 'shared' } },
    hconcat: [
      panel(['train loss'], 'train loss (cross-entropy per example, nats)', {}, { zero: true }),
      panel(['train acc', 'test acc'], 'accuracy (% of images correct)', { format: '.0%' }, { domain: [0, 1] }),
    ],
  } as TopLevelSpec;
}

export async function renderCurvesSvg(runs: readonly LabelledRun[], title: string): Promise<string> {
  const view = new View(parse(compile(curvesSpec(runs, title)).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

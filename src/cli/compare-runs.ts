// npm run compare-runs -- RUN_DIR... [--out FILE]: overlays the curves of several runs (engine or PyTorch
// reference, any mix) in one SVG and prints their per-epoch figures side by side.
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { writeFileAtomic } from '../node/atomic-file.js';
import { renderCurvesSvg, runLabel, type LabelledRun } from '../train/curves-chart.js';
import { checkRunRecord } from '../train/run-record.js';

const HELP = `Overlay the curves of several runs in one SVG.

usage: npm run compare-runs -- RUN_DIR RUN_DIR... [--out FILE] [--title TEXT]

  RUN_DIR        a folder with a run.json (npm run finetune's --out, or scripts/reference/finetune_torch.py's)
  --out FILE     the SVG to write (default: compare.svg in the current folder)
  --title TEXT   the chart's title
  -h, --help`;

function loadRun(dir: string): LabelledRun {
  const path = join(dir, 'run.json');
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(`${path}: cannot read (${(e as Error).message})`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new Error(`${path}: not JSON`);
  }
  const record = checkRunRecord(value, path);
  return { label: runLabel(dir, record), record };
}

/** The per-epoch figures of the runs, one table row per epoch. */
export function sideBySide(runs: readonly LabelledRun[]): string {
  const lines = [`| epoch | ${runs.map((r) => r.label).join(' | ')} |`, `| --- | ${runs.map(() => '---').join(' | ')} |`];
  const epochs = Math.max(0, ...runs.map((r) => r.record.epochs.length));
  for (let e = 0; e < epochs; e++) {
    const cells = runs.map((r) => {
      const m = r.record.epochs[e];
      return m ? `loss ${m.loss.toFixed(3)}, train ${m.trainAcc.toFixed(3)}, test ${m.testAcc.toFixed(3)}, ${m.examplesPerSec.toFixed(1)} ex/s` : '';
    });
    lines.push(`| ${e + 1} | ${cells.join(' | ')} |`);
  }
  return lines.join('\n');
}

async function main(argv: string[]): Promise<number> {
  let values;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      options: { out: { type: 'string' }, title: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    }));
  } catch (e) {
    process.stderr.write(`compare-runs: ${(e as Error).message}\n${HELP}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  if (positionals.length === 0) {
    process.stderr.write(`compare-runs: give at least one run folder\n${HELP}\n`);
    return 2;
  }
  let runs: LabelledRun[];
  try {
    runs = positionals.map(loadRun);
  } catch (e) {
    process.stderr.write(`compare-runs: ${(e as Error).message}\n`);
    return 2;
  }
  const out = resolve(values.out ?? 'compare.svg');
  const title = values.title ?? runs.map((r) => r.label).join(' vs ');
  await writeFileAtomic(out, await renderCurvesSvg(runs, title));
  process.stdout.write(`${sideBySide(runs)}\n\nwrote ${out}\n`);
  return 0;
}

process.exitCode = await main(process.argv.slice(2));

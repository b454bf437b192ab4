#!/usr/bin/env node
// npm run finetune: the transfer-learning experiment of d2l's fine-tuning chapter (see FINETUNE_HELP).
// Exit status: 0 done, 1 the run failed, 2 a bad command line or input found before training.
import { DatasetError } from '../data/index.js';
import { ModeError } from '../train/modes.js';
import { FINETUNE_HELP, parseFinetuneArgs, UsageError } from './finetune-options.js';
import { runFinetune } from './finetune-run.js';

async function main(argv: string[]): Promise<number> {
  try {
    const command = parseFinetuneArgs(argv);
    if (command.kind === 'help') {
      process.stdout.write(`${FINETUNE_HELP}\n`);
      return 0;
    }
    await runFinetune(command, { output: process.stdout, argv: ['npm', 'run', 'finetune', '--', ...argv] });
    return 0;
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    if (e instanceof UsageError || e instanceof ModeError || e instanceof DatasetError) {
      process.stderr.write(`finetune: ${message}\n(npm run finetune -- --help lists the options)\n`);
      return 2;
    }
    process.stderr.write(`finetune: ${message}\n`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));

// Converts a torch.save checkpoint (state dict) to safetensors.
//   npx tsx scripts/pth-to-safetensors.ts in.pth out.safetensors [--keep-dtypes]
// float16/bfloat16/float64 tensors become float32 unless --keep-dtypes is given.

import { readStateDictFile, writeSafetensorsFile } from '../src/node/weights-file.js';
import { numElements } from '../src/weights/state-dict.js';

async function main(argv: string[]): Promise<number> {
  const keep = argv.includes('--keep-dtypes');
  const positional = argv.filter((a) => !a.startsWith('--'));
  const unknown = argv.filter((a) => a.startsWith('--') && a !== '--keep-dtypes');
  if (positional.length !== 2 || unknown.length > 0) {
    console.error('usage: tsx scripts/pth-to-safetensors.ts <in.pth> <out.safetensors> [--keep-dtypes]');
    return 2;
  }
  const [input, output] = positional as [string, string];
  const t0 = performance.now();
  const dict = await readStateDictFile(input, { convertToFloat32: !keep });
  const t1 = performance.now();
  await writeSafetensorsFile(output, dict, { format: 'pt', source: 'pth-to-safetensors' });
  const t2 = performance.now();
  let elements = 0;
  for (const t of dict.values()) elements += numElements(t.shape);
  console.log(
    `${dict.size} tensors, ${elements} elements: read ${(t1 - t0).toFixed(0)} ms, wrote ${output} in ${(t2 - t1).toFixed(0)} ms`,
  );
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    console.error(e instanceof Error ? e.message : String(e));
    process.exitCode = 1;
  },
);

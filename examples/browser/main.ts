// Classify an image in a page: the browser's WebGPU, a weight file and a photo chosen by the user.
// Bundle it with vite (`npx vite build`): the package's web-standard entry has no Node module in it.
import { Classifier, createRuntime, decodeImageBlob, type Runtime } from 'hotdog-webgpu';

const out = document.querySelector<HTMLPreElement>('#out')!;
let runtime: Runtime | null = null;
let classifier: Classifier | null = null;

document.querySelector<HTMLInputElement>('#weights')!.addEventListener('change', async (event) => {
  const file = (event.target as HTMLInputElement).files?.[0];
  if (!file) return;
  try {
    runtime ??= await createRuntime(); // navigator.gpu
    classifier?.release();
    classifier = Classifier.fromBytes(runtime, file.name, new Uint8Array(await file.arrayBuffer()));
    out.textContent = `${file.name}: classes ${classifier.classes.join(', ')}, ${classifier.imageSize} px`;
  } catch (e) {
    out.textContent = (e as Error).message;
  }
});

document.querySelector<HTMLInputElement>('#image')!.addEventListener('change', async (event) => {
  const file = (event.target as HTMLInputElement).files?.[0];
  if (!file || !classifier) return;
  try {
    const { probabilities, label } = await classifier.predict(await decodeImageBlob(file));
    const lines = classifier.classes.map((c, i) => `${c}: ${(probabilities[i]! * 100).toFixed(1)}%`);
    out.textContent = `${file.name}: ${classifier.classes[label]}\n${lines.join('\n')}`;
  } catch (e) {
    out.textContent = (e as Error).message;
  }
});

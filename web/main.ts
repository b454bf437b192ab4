// The demo page: load a ResNet-18 weight file, classify photos, fine-tune in the tab, download the weights.
// All engine work goes through src/ (web-standard); this file is only the page's wiring.
import 'uplot/dist/uPlot.min.css';
import './style.css';
import { Classifier, DEFAULT_CLASSES, type LabelledImage, type StepReport } from '../src/classifier/classifier.js';
import { acquireGpu, describeAdapter, type FeatureLevel } from '../src/runtime/device.js';
import { Runtime } from '../src/runtime/runtime.js';
import type { RgbImage } from '../src/image/image.js';
import { evalResize } from '../src/image/transforms.js';
import { decodeImageBlob } from '../src/browser/decode-image.js';
import { TrainingChart } from './chart.js';

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`page element #${id} is missing`);
  return el as T;
};

let runtime: Runtime | null = null;
let classifier: Classifier | null = null;
let training = false;
let stopRequested = false;
const examples: { image: RgbImage; url: string; name: string }[][] = [[], []];
const chart = new TrainingChart($('chart'));

// ---- messages -------------------------------------------------------------------------------------------------

function say(kind: 'error' | 'info', text: string): void {
  const box = document.createElement('div');
  box.className = `message ${kind}`;
  box.setAttribute('role', kind === 'error' ? 'alert' : 'status');
  box.textContent = text;
  const close = document.createElement('button');
  close.className = 'close';
  close.textContent = '×';
  close.title = 'Dismiss';
  close.onclick = () => box.remove();
  box.append(close);
  $('messages').append(box);
  if (kind === 'info') setTimeout(() => box.remove(), 6000);
}

const errorText = (e: unknown): string => (e instanceof Error ? e.message : String(e));

// ---- GPU ------------------------------------------------------------------------------------------------------

async function startGpu(): Promise<void> {
  const level = new URLSearchParams(location.search).get('gpu') ?? 'auto';
  ($('feature-level') as HTMLSelectElement).value = level;
  const status = $('gpu-status');
  try {
    const featureLevel = level === 'core' || level === 'compatibility' ? (level as FeatureLevel) : 'auto';
    const ctx = await acquireGpu({ featureLevel });
    runtime = new Runtime(ctx);
    status.dataset.state = 'ready';
    status.title = describeAdapter(ctx);
    const i = ctx.adapterInfo;
    const name = [i.vendor, i.architecture].filter((s) => s).join(' ') || i.description || 'WebGPU';
    $('gpu-text').textContent = `${name} · ${ctx.featureLevel}${ctx.subgroups ? ` · subgroups ${ctx.subgroupMinSize}` : ''}`;
  } catch (e) {
    status.dataset.state = 'error';
    $('gpu-text').textContent = 'No WebGPU';
    const fatal = $('fatal');
    fatal.hidden = false;
    fatal.innerHTML = '<h2>This browser cannot run the model</h2>';
    const p = document.createElement('pre');
    p.textContent = errorText(e);
    fatal.append(p);
  }
  updateButtons();
}

$('feature-level').addEventListener('change', (ev) => {
  const url = new URL(location.href);
  url.searchParams.set('gpu', (ev.target as HTMLSelectElement).value);
  location.href = url.href;
});

// ---- model ----------------------------------------------------------------------------------------------------

async function loadModel(name: string, bytes: () => Promise<Uint8Array>): Promise<void> {
  if (!runtime) return say('error', 'No WebGPU device: the model cannot be loaded.');
  if (training) return say('error', 'Wait for the training to finish (or stop it) before loading another model.');
  const info = $('model-info');
  info.dataset.state = 'loading';
  info.textContent = `Loading ${name}…`;
  const start = performance.now();
  try {
    const data = await bytes();
    const next = Classifier.fromBytes(runtime, name, data);
    await runtime.sync();
    classifier?.release();
    classifier = next;
    const seconds = (performance.now() - start) / 1000;
    info.dataset.state = 'loaded';
    info.dataset.kind = next.kind;
    info.innerHTML = '';
    const title = document.createElement('strong');
    title.textContent = name;
    const detail = document.createElement('span');
    detail.textContent =
      next.kind === 'imagenet'
        ? ` · ImageNet ResNet-18 (1000 classes): hot dog = class 934 against the rest · ${(data.length / 2 ** 20).toFixed(1)} MB in ${seconds.toFixed(1)} s`
        : ` · ResNet-18, classes ${next.classes.join(' / ')} · ${(data.length / 2 ** 20).toFixed(1)} MB in ${seconds.toFixed(1)} s`;
    detail.textContent += ` · ${sizeNote(next)}`;
    info.dataset.imageSize = String(next.imageSize);
    info.append(title, detail);
    $('results').innerHTML = '';
    chart.reset();
    renderClasses();
  } catch (e) {
    info.dataset.state = classifier ? 'loaded' : 'none';
    info.textContent = classifier ? `Still using ${classifier.source}.` : 'No model loaded yet.';
    say('error', `Cannot use this weight file. ${errorText(e)}`);
  }
  updateButtons();
}

$('model-file').addEventListener('change', (ev) => {
  const file = (ev.target as HTMLInputElement).files?.[0];
  if (file) void loadModel(file.name, async () => new Uint8Array(await file.arrayBuffer()));
  (ev.target as HTMLInputElement).value = '';
});

$('model-url-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const url = ($('model-url') as HTMLInputElement).value.trim();
  if (!url) return;
  const name = decodeURIComponent(new URL(url, location.href).pathname.split('/').pop() || url);
  void loadModel(name, async () => {
    let res: Response;
    try {
      res = await fetch(url);
    } catch (e) {
      throw new Error(`${url} could not be fetched (${errorText(e)}); the server must allow this page's origin (CORS).`);
    }
    if (!res.ok) throw new Error(`${url} answered HTTP ${res.status} ${res.statusText}.`);
    return new Uint8Array(await res.arrayBuffer());
  });
});

dropTarget($('model-drop'), (files) => {
  const file = files[0];
  if (file) void loadModel(file.name, async () => new Uint8Array(await file.arrayBuffer()));
});

// ---- classification -------------------------------------------------------------------------------------------

/** The size photos are classified at: the one the weights were trained at (their `image_size`), as npm run predict does. */
function sizeNote(c: Classifier): string {
  return `classifies at ${c.imageSize} px (Resize ${evalResize(c.imageSize)}, CenterCrop ${c.imageSize})`;
}

async function classify(files: File[]): Promise<void> {
  if (!classifier) return say('error', 'Load a model first (step 1).');
  if (training) return say('error', 'The GPU is busy training; classify when it is done.');
  for (const file of files) {
    const card = resultCard(file);
    $('results').prepend(card);
    try {
      const image = await decodeImageBlob(file, file.name);
      const start = performance.now();
      const p = await classifier.predict(image);
      const ms = performance.now() - start;
      fillResult(card, p.probabilities, p.label, ms);
    } catch (e) {
      card.dataset.state = 'error';
      card.querySelector('.verdict')!.textContent = 'Unreadable';
      card.querySelector('.bars')!.textContent = errorText(e);
      say('error', errorText(e));
    }
  }
}

function resultCard(file: File): HTMLElement {
  const card = document.createElement('article');
  card.className = 'result';
  card.dataset.name = file.name;
  card.dataset.state = 'working';
  const img = document.createElement('img');
  img.src = URL.createObjectURL(file);
  img.alt = file.name;
  img.onerror = () => img.classList.add('broken');
  const body = document.createElement('div');
  body.className = 'body';
  body.innerHTML = '<div class="verdict">Classifying…</div><div class="bars"></div><div class="meta"></div>';
  body.querySelector('.meta')!.textContent = file.name;
  card.append(img, body);
  return card;
}

function fillResult(card: HTMLElement, probabilities: number[], label: number, ms: number): void {
  const names = classifier!.kind === 'imagenet' ? ['hotdog', 'not hotdog'] : classifier!.classes;
  card.dataset.state = 'done';
  card.dataset.probs = JSON.stringify(probabilities);
  card.dataset.label = names[label];
  card.dataset.ms = ms.toFixed(1);
  card.classList.toggle('is-hotdog', /^hot\s*-?dog$/i.test(names[label]!));
  card.querySelector('.verdict')!.textContent = pretty(names[label]!);
  const bars = card.querySelector('.bars')!;
  bars.innerHTML = '';
  probabilities.forEach((p, i) => {
    const row = document.createElement('div');
    row.className = 'bar-row';
    row.innerHTML = '<span class="name"></span><span class="track"><span class="fill"></span></span><span class="pct"></span>';
    row.querySelector('.name')!.textContent = pretty(names[i]!);
    (row.querySelector('.fill') as HTMLElement).style.width = `${(p * 100).toFixed(1)}%`;
    row.querySelector('.pct')!.textContent = `${(p * 100).toFixed(1)}%`;
    if (i === label) row.classList.add('top');
    bars.append(row);
  });
  card.querySelector('.meta')!.textContent = `${ms.toFixed(0)} ms · ${card.dataset.name}`;
}

const pretty = (name: string): string => name.replace(/[-_]/g, ' ').replace(/hotdog/gi, 'hot dog');

$('images').addEventListener('change', (ev) => {
  const input = ev.target as HTMLInputElement;
  void classify([...(input.files ?? [])]);
  input.value = '';
});
dropTarget($('classify-drop'), (files) => void classify(files));

// ---- fine-tuning ----------------------------------------------------------------------------------------------

function classNames(): string[] {
  return classifier && classifier.kind === 'classifier' ? classifier.classes : [...DEFAULT_CLASSES];
}

function renderClasses(): void {
  const names = classNames();
  while (examples.length < names.length) examples.push([]);
  const box = $('train-classes');
  box.innerHTML = '';
  names.forEach((name, c) => {
    const zone = document.createElement('label');
    zone.className = 'drop class-drop';
    zone.id = `train-${c}`;
    zone.innerHTML = `<input type="file" accept="image/*" multiple hidden data-class="${c}" /><strong></strong><span class="hint"></span><div class="thumbs"></div>`;
    zone.querySelector('strong')!.textContent = pretty(name);
    zone.querySelector('.hint')!.textContent = `${examples[c]!.length} photo${examples[c]!.length === 1 ? '' : 's'} · drop or click to add`;
    const thumbs = zone.querySelector('.thumbs')!;
    for (const ex of examples[c]!) {
      const t = document.createElement('img');
      t.src = ex.url;
      t.alt = ex.name;
      t.title = ex.name;
      thumbs.append(t);
    }
    zone.querySelector('input')!.addEventListener('change', (ev) => {
      const input = ev.target as HTMLInputElement;
      void addExamples(c, [...(input.files ?? [])]);
      input.value = '';
    });
    dropTarget(zone, (files) => void addExamples(c, files));
    box.append(zone);
  });
}

async function addExamples(label: number, files: File[]): Promise<void> {
  for (const file of files) {
    try {
      const image = await decodeImageBlob(file, file.name);
      examples[label]!.push({ image, url: URL.createObjectURL(file), name: file.name });
    } catch (e) {
      say('error', errorText(e));
    }
  }
  renderClasses();
  updateButtons();
}

async function train(): Promise<void> {
  if (!classifier || training) return;
  const names = classNames();
  const set: LabelledImage[] = examples.slice(0, names.length).flatMap((list, label) => list.map((e) => ({ image: e.image, label })));
  if (examples.slice(0, names.length).some((l) => l.length === 0)) return say('error', 'Add at least one photo to every class.');
  const mode = ($('mode') as HTMLSelectElement).value;
  const steps = Number(($('steps') as HTMLInputElement).value);
  const lr = Number(($('lr') as HTMLInputElement).value);
  const imageSize = Number(($('size') as HTMLSelectElement).value);
  if (!Number.isInteger(steps) || steps < 1 || steps > 1000) return say('error', 'Steps: a whole number from 1 to 1000.');
  if (!(lr > 0 && lr < 10)) return say('error', 'Learning rate: a positive number below 10.');
  training = true;
  stopRequested = false;
  updateButtons();
  const status = $('train-status');
  chart.reset();
  try {
    if (classifier.kind === 'imagenet') {
      classifier.setClasses(names);
      say('info', `The ImageNet head was replaced by a new ${names.length}-way one (${names.join(' / ')}).`);
    }
    const onStep = async (r: StepReport): Promise<void> => {
      chart.add(r.step, r.loss, r.accuracy);
      status.dataset.state = 'training';
      status.dataset.loss = JSON.stringify(chart.losses);
      status.textContent = `Step ${r.step}/${steps} · loss ${r.loss.toFixed(4)} · accuracy ${(r.accuracy * 100).toFixed(0)}% · ${(r.seconds * 1000).toFixed(0)} ms/step`;
      await new Promise((resolve) => requestAnimationFrame(resolve)); // let the page paint
    };
    const common = { steps, lr, imageSize, weightDecay: 1e-3, onStep, shouldStop: () => stopRequested };
    const start = performance.now();
    if (mode === 'head') {
      status.dataset.state = 'features';
      await classifier.trainHead(set, {
        ...common,
        onFeatures: (done, total) => (status.textContent = `Computing features once: ${done}/${total} photos…`),
      });
    } else {
      status.dataset.state = 'training';
      status.textContent = `Training the whole network at ${imageSize} px…`;
      await classifier.trainAll(set, common);
    }
    const losses = chart.losses;
    status.dataset.state = 'done';
    status.textContent = `Done in ${((performance.now() - start) / 1000).toFixed(1)} s · loss ${losses[0]?.toFixed(4)} → ${losses.at(-1)?.toFixed(4)} · accuracy ${(chart.accuracies.at(-1)! * 100).toFixed(0)}%. The network now ${sizeNote(classifier)}, the size it was trained at. Classify again, or download the weights.`;
    $('model-info').dataset.kind = classifier.kind;
    $('model-info').dataset.imageSize = String(classifier.imageSize);
  } catch (e) {
    status.dataset.state = 'error';
    status.textContent = `Training failed: ${errorText(e)}`;
    say('error', `Training failed: ${errorText(e)}`);
  } finally {
    training = false;
    updateButtons();
  }
}

async function download(): Promise<void> {
  if (!classifier) return;
  try {
    const bytes = await classifier.toSafetensors();
    const url = URL.createObjectURL(new Blob([bytes as Uint8Array<ArrayBuffer>], { type: 'application/octet-stream' }));
    const a = document.createElement('a');
    a.href = url;
    a.download = 'model.safetensors';
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  } catch (e) {
    say('error', errorText(e));
  }
}

$('train').addEventListener('click', () => void train());
$('stop').addEventListener('click', () => {
  stopRequested = true;
});
$('download').addEventListener('click', () => void download());
$('mode').addEventListener('change', () => {
  const head = ($('mode') as HTMLSelectElement).value === 'head';
  ($('size') as HTMLSelectElement).value = head ? '224' : '96';
  // The recipe's rates (loss summed over the batch): the new head at 5e-4; the body at 5e-5 with the head at 10x.
  ($('lr') as HTMLInputElement).value = head ? '0.0005' : '0.00005';
});

function updateButtons(): void {
  const ready = !!runtime && !!classifier;
  const haveExamples = examples.slice(0, classNames().length).every((l) => l.length > 0);
  ($('train') as HTMLButtonElement).disabled = !ready || training || !haveExamples;
  ($('stop') as HTMLButtonElement).disabled = !training;
  ($('download') as HTMLButtonElement).disabled = !ready || training || classifier?.kind !== 'classifier';
  for (const id of ['model-file', 'images']) ($(id) as HTMLInputElement).disabled = !runtime;
}

// ---- drag and drop --------------------------------------------------------------------------------------------

function dropTarget(el: HTMLElement, onFiles: (files: File[]) => void): void {
  el.addEventListener('dragover', (ev) => {
    ev.preventDefault();
    el.classList.add('over');
  });
  el.addEventListener('dragleave', () => el.classList.remove('over'));
  el.addEventListener('drop', (ev) => {
    ev.preventDefault();
    el.classList.remove('over');
    const files = [...(ev.dataTransfer?.files ?? [])];
    if (files.length) onFiles(files);
  });
}

renderClasses();
($('mode') as HTMLSelectElement).dispatchEvent(new Event('change'));
void startGpu();

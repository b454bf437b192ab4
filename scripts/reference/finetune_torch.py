#!/usr/bin/python3
"""PyTorch side of `npm run finetune`: the same recipe, flags, per-epoch lines and run.json (not run by CI).

    /usr/bin/python3 scripts/reference/finetune_torch.py --train DIR --test DIR --weights FILE.pth [options]

Debian's python3-torch / python3-torchvision (1.13 / 0.14). It follows d2l's train_ch13 as the engine does:
CrossEntropyLoss(reduction='none') summed over the batch, SGD with the new head at --head-lr-mult times the lr,
weight decay 0.001; loss per example, train accuracy, test accuracy and examples/sec per epoch. Transforms:
RandomResizedCrop(N) + RandomHorizontalFlip + Normalize for training, Resize(round(N*256/224)) + CenterCrop(N)
for testing. The random streams (shuffling, augmentation, head initialisation) are torch's, seeded by --seed, so
a run is repeatable but does not draw the same crops as the engine.

It writes OUT/run.json (the engine's shape; the GPU fields are null) after every epoch and OUT/model.pth
(torch.save of the state dict, with its head) at the end; `npm run compare-runs -- OUT runs/ENGINE` overlays
the curves. It does not resume, predict or write safetensors checkpoints.
"""
import argparse
import datetime
import json
import os
import platform
import resource
import struct
import sys
import time

import numpy as np
import PIL
import torch
import torchvision
from torch import nn
from torchvision import datasets, transforms

HOTDOG_CLASS_IMAGENET = 934  # 'hotdog, hot dog, red hot' in ImageNet's 1000 classes
MODES = ('finetune', 'scratch', 'frozen', 'hotdog-head')
FORMAT = 'hotdog-webgpu-run/1'


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--data', help='folder with train/ and test/ class folders')
    p.add_argument('--train', help='training folder (overrides DATA/train)')
    p.add_argument('--test', help='test folder (overrides DATA/test)')
    p.add_argument('--image-size', type=int, default=224)
    p.add_argument('--mode', choices=MODES, default=None)
    p.add_argument('--weights', default='imagenet',
                   help="'imagenet' (the cached resnet18-f37072fd.pth), a .pth or .safetensors file, or 'none'")
    p.add_argument('--epochs', type=int, default=5)
    p.add_argument('--batch-size', type=int, default=128)
    p.add_argument('--lr', type=float)
    p.add_argument('--head-lr-mult', type=float)
    p.add_argument('--weight-decay', type=float, default=1e-3)
    p.add_argument('--momentum', type=float, default=0.0)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--max-batches', type=int)
    p.add_argument('--workers', type=int, default=0, help='DataLoader worker processes (0: main process)')
    p.add_argument('--threads', type=int, default=os.cpu_count(), help='torch CPU threads (default: every core)')
    p.add_argument('--out', help='run folder (default runs/torch-<date-time>)')
    p.add_argument('--json', action='store_true', help='print one JSON object per epoch instead of text')
    p.add_argument('--cache-dir', help='where the engine caches resnet18-f37072fd.pth (for --weights imagenet)')
    a = p.parse_args(argv)
    if a.weights == 'none':
        if a.mode not in (None, 'scratch'):
            p.error(f'--weights none trains from scratch; it cannot be combined with --mode {a.mode}')
        a.mode = 'scratch'
    a.mode = a.mode or 'finetune'
    if a.mode == 'scratch':
        a.weights = 'none'
    if a.lr is None:
        a.lr = 5e-4 if a.mode == 'scratch' else 5e-5
    if a.head_lr_mult is None:
        a.head_lr_mult = 1.0 if a.mode == 'scratch' else 10.0
    if not a.data and not (a.train and a.test):
        p.error('pass --data DIR or both --train DIR and --test DIR')
    a.train = os.path.abspath(a.train or os.path.join(a.data, 'train'))
    a.test = os.path.abspath(a.test or os.path.join(a.data, 'test'))
    for flag, d in (('train', a.train), ('test', a.test)):
        if not os.path.isdir(d):
            p.error(f'--{flag}: the {flag} folder {d} does not exist')
    return a


def read_safetensors(path):
    with open(path, 'rb') as f:
        raw = f.read()
    (n,) = struct.unpack('<Q', raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop('__metadata__', {})
    dtypes = {'F32': np.float32, 'F64': np.float64, 'I64': np.int64, 'I32': np.int32, 'F16': np.float16}
    out = {}
    for name, e in header.items():
        b, end = e['data_offsets']
        arr = np.frombuffer(raw[8 + n + b:8 + n + end], dtype=dtypes[e['dtype']]).reshape(e['shape'])
        out[name] = torch.from_numpy(arr.copy())
    return out, meta


def load_weights(a):
    if a.weights == 'imagenet':
        cache = a.cache_dir or os.environ.get('HOTDOG_CACHE_DIR') or os.path.join(
            os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache'), 'hotdog-webgpu')
        path = os.path.join(cache, 'resnet18-f37072fd.pth')
        if not os.path.exists(path):
            sys.exit(f'finetune_torch: {path} does not exist; run `npm run finetune` once to download it, or pass --weights FILE')
    else:
        path = os.path.abspath(a.weights)
    if path.endswith('.safetensors'):
        sd, _ = read_safetensors(path)
    else:
        sd = torch.load(path, map_location='cpu')
        if isinstance(sd, dict) and 'state_dict' in sd and isinstance(sd['state_dict'], dict):
            sd = sd['state_dict']
    return path, sd


def build_model(a, classes):
    """The mode's model and its parameter groups (the same rules as src/train/modes.ts)."""
    n = len(classes)
    if a.mode == 'scratch':
        model = torchvision.models.resnet18(num_classes=n)
        return model, [{'params': list(model.parameters())}], 'random init (from scratch)'
    path, sd = load_weights(a)
    old_classes = sd['fc.weight'].shape[0]
    model = torchvision.models.resnet18(num_classes=old_classes)
    model.load_state_dict(sd)
    old_fc = model.fc
    model.fc = nn.Linear(model.fc.in_features, n)
    nn.init.xavier_uniform_(model.fc.weight)
    source = f'{path} ({old_classes}-way head replaced by a new {n}-way one)'
    if a.mode == 'hotdog-head':
        hot = hotdog_index(classes)
        if old_classes <= HOTDOG_CLASS_IMAGENET:
            sys.exit(f'finetune_torch: --mode hotdog-head needs a 1000-way ImageNet head; {path} has {old_classes} classes')
        with torch.no_grad():
            model.fc.weight[hot] = old_fc.weight[HOTDOG_CLASS_IMAGENET]
            model.fc.bias[hot] = old_fc.bias[HOTDOG_CLASS_IMAGENET]
        source += f'; its row {hot} ({classes[hot]}) copied from ImageNet class {HOTDOG_CLASS_IMAGENET}'
    head = list(model.fc.parameters())
    body = [p for name, p in model.named_parameters() if not name.startswith('fc.')]
    if a.mode == 'frozen':
        for p in body:
            p.requires_grad = False
    return model, [{'params': body}, {'params': head, 'lr': a.lr * a.head_lr_mult}], source


def hotdog_index(classes):
    norm = [''.join(ch for ch in c.lower() if ch.isalnum()) for c in classes]
    if 'hotdog' not in norm:
        sys.exit(f'finetune_torch: --mode hotdog-head needs a class named hotdog; the classes are {", ".join(classes)}')
    return norm.index('hotdog')


def rss_bytes():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def write_json_atomic(path, obj):
    tmp = f'{path}.{os.getpid()}.tmp'
    with open(tmp, 'w') as f:
        json.dump(obj, f, indent=2)
        f.write('\n')
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def trace_every(batches):
    return max(1, batches // 10)


def main(argv):
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    out = os.path.abspath(a.out or os.path.join('runs', 'torch-' + datetime.datetime.now().strftime('%Y%m%d-%H%M%S')))
    os.makedirs(out, exist_ok=True)

    resize = round(a.image_size * 256 / 224)
    normalize = transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    train_set = datasets.ImageFolder(a.train, transforms.Compose([
        transforms.RandomResizedCrop(a.image_size), transforms.RandomHorizontalFlip(), transforms.ToTensor(), normalize]))
    test_set = datasets.ImageFolder(a.test, transforms.Compose([
        transforms.Resize(resize), transforms.CenterCrop(a.image_size), transforms.ToTensor(), normalize]))
    if train_set.classes != test_set.classes:
        sys.exit(f'finetune_torch: the train classes ({", ".join(train_set.classes)}) and test classes '
                 f'({", ".join(test_set.classes)}) differ')
    gen = torch.Generator().manual_seed(a.seed)
    train_iter = torch.utils.data.DataLoader(train_set, batch_size=a.batch_size, shuffle=True, generator=gen,
                                             num_workers=a.workers)
    test_iter = torch.utils.data.DataLoader(test_set, batch_size=a.batch_size, num_workers=a.workers)

    model, groups, source = build_model(a, train_set.classes)
    optimizer = torch.optim.SGD(groups, lr=a.lr, weight_decay=a.weight_decay, momentum=a.momentum)
    loss_fn = nn.CrossEntropyLoss(reduction='none')
    batches = len(train_iter) if a.max_batches is None else min(a.max_batches, len(train_iter))
    every = trace_every(batches)

    options = {
        'mode': a.mode, 'train': a.train, 'test': a.test, 'imageSize': a.image_size, 'weights': a.weights,
        'epochs': a.epochs, 'batchSize': a.batch_size, 'lr': a.lr, 'headLrMult': a.head_lr_mult,
        'weightDecay': a.weight_decay, 'momentum': a.momentum, 'seed': a.seed, 'maxBatches': a.max_batches,
        'workers': a.workers, 'out': out,
    }
    record = {
        'format': FORMAT,
        'engine': f'pytorch {torch.__version__}',
        'command': ['/usr/bin/python3', 'scripts/reference/finetune_torch.py', *argv],
        'started': datetime.datetime.now(datetime.timezone.utc).isoformat(),
        'finished': None,
        'status': 'running',
        'options': options,
        'seed': a.seed,
        'data': {'train': a.train, 'test': a.test, 'classes': train_set.classes, 'trainImages': len(train_set),
                 'testImages': len(test_set), 'batchesPerEpoch': batches},
        'model': {'mode': a.mode, 'weights': source,
                  'parameters': sum(p.numel() for p in model.parameters()),
                  'trainableParameters': sum(p.numel() for p in model.parameters() if p.requires_grad)},
        'device': {'kind': 'torch-cpu', 'name': f'{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads',
                   'adapter': None, 'limits': None},
        'versions': {'python': platform.python_version(), 'torch': torch.__version__,
                     'torchvision': torchvision.__version__, 'pillow': PIL.__version__},
        'epochs': [],
        'trace': [],
        'resumes': [],
        'files': {'runJson': 'run.json', 'model': 'model.pth'},
    }
    write_json_atomic(os.path.join(out, 'run.json'), record)
    if not a.json:
        print(f'device: {record["device"]["name"]}')
        print(f'weights: {source}')
        print(f'data: {len(train_set)} training images in {a.train}, {len(test_set)} test images in {a.test}; '
              f'classes {", ".join(train_set.classes)}')
        print(f'recipe: {a.mode}, {a.epochs} epochs, batch {a.batch_size}, {a.image_size}px, lr {a.lr:g} '
              f'(head x{a.head_lr_mult:g}), weight decay {a.weight_decay:g}, momentum {a.momentum:g}, seed {a.seed}')
        print(f'run folder: {out}', flush=True)

    for epoch in range(a.epochs):
        model.train()
        loss_sum, correct, examples = 0.0, 0, 0
        start = time.perf_counter()
        for i, (x, y) in enumerate(train_iter):
            if i >= batches:
                break
            optimizer.zero_grad()
            pred = model(x)
            l = loss_fn(pred, y)
            l.sum().backward()
            optimizer.step()
            loss_sum += float(l.sum())
            correct += int((pred.argmax(dim=1) == y).sum())
            examples += y.numel()
            if not np.isfinite(loss_sum):
                sys.exit(f'finetune_torch: the loss became {loss_sum} in epoch {epoch + 1}, batch {i + 1} (lr {a.lr:g})')
            if (i + 1) % every == 0 or i + 1 == batches:
                elapsed = time.perf_counter() - start
                point = {'epoch': epoch + (i + 1) / batches, 'batch': i + 1, 'loss': loss_sum / examples,
                         'trainAcc': correct / examples, 'examples': examples}
                record['trace'].append(point)
                if not a.json:
                    eta = elapsed / (i + 1) * (batches - i - 1)
                    print(f'epoch {epoch + 1}/{a.epochs} batch {i + 1}/{batches}: loss {point["loss"]:.3f}, '
                          f'train acc {point["trainAcc"]:.3f}, {examples / elapsed:.1f} examples/sec, ETA {eta:.0f} s',
                          flush=True)
        train_seconds = time.perf_counter() - start
        test_start = time.perf_counter()
        model.eval()
        test_correct, test_total = 0, 0
        with torch.no_grad():
            for x, y in test_iter:
                test_correct += int((model(x).argmax(dim=1) == y).sum())
                test_total += y.numel()
        test_seconds = time.perf_counter() - test_start
        m = {'epoch': epoch + 1, 'loss': loss_sum / examples, 'trainAcc': correct / examples,
             'testAcc': test_correct / test_total, 'examples': examples, 'trainSeconds': train_seconds,
             'examplesPerSec': examples / train_seconds, 'testSeconds': test_seconds,
             'memory': {'gpuPoolBytesHeld': None, 'gpuPoolBytesInUse': None, 'gpuBuffers': None, 'rssBytes': rss_bytes(),
                        'jsHeapBytes': None, 'afterGc': False}}
        record['epochs'].append(m)
        write_json_atomic(os.path.join(out, 'run.json'), record)
        torch.save(model.state_dict(), os.path.join(out, 'model.pth'))
        if a.json:
            print(json.dumps(m), flush=True)
        else:
            print(f'  test: {test_total} images, acc {m["testAcc"]:.3f} ({test_seconds:.1f} s)')
            print(f'epoch {m["epoch"]}/{a.epochs}: loss {m["loss"]:.3f}, train acc {m["trainAcc"]:.3f}, '
                  f'test acc {m["testAcc"]:.3f}, {m["examplesPerSec"]:.2f} examples/sec '
                  f'({examples} images in {train_seconds:.1f} s; test {test_seconds:.1f} s)', flush=True)
    record['finished'] = datetime.datetime.now(datetime.timezone.utc).isoformat()
    record['status'] = 'finished'
    write_json_atomic(os.path.join(out, 'run.json'), record)
    if not a.json:
        print(f'run record: {os.path.join(out, "run.json")}\nweights: {os.path.join(out, "model.pth")}')


if __name__ == '__main__':
    main(sys.argv[1:])

#!/usr/bin/python3
"""The PyTorch peer of `npm run bench` (bench/run.ts starts it as `$BENCH_PYTHON bench/peers/torch_step.py`, by
default /usr/bin/python3). On the CPU unless BENCH_TORCH_DEVICE names another torch device (cuda on a GPU machine).

The same step as the engine's end-to-end bench: torchvision resnet18(num_classes=2), cross-entropy summed over the
batch, SGD (lr 1e-3) with the case's momentum and weight decay, on a random batch (uniform in [-2, 2), labels
alternating); inference in eval mode under no_grad. torch uses as many threads as the machine has cores.

Protocol (one JSON object per line, as bench/lib/protocol.ts): stdin {"id": n, "request": {...}} ->
stdout {"id": n, "ok": true, "result": {...}} or {"id": n, "ok": false, "error": "..."}.
Requests: info; prepare {spec: {type: train|inference, size, batch, momentum?, weightDecay?}} (set-up plus one
untimed warm-up run); run {minSeconds, minRuns, maxRuns} -> {seconds: [...]}; release; rss -> {maxRssBytes}.
Needs Debian's python3-torch and python3-torchvision (scripts/setup-peers.sh); they import only with /usr/bin/python3.
"""
import json
import os
import resource
import sys
import time

import torch
import torchvision

torch.set_num_threads(os.cpu_count() or 1)
DEVICE = torch.device(os.environ.get("BENCH_TORCH_DEVICE") or "cpu")
current = None


def prepare(spec):
    global current
    current = None
    t0 = time.perf_counter()
    torch.manual_seed(0)
    n, size = spec["batch"], spec["size"]
    x = ((torch.rand(n, 3, size, size) - 0.5) * 4).to(DEVICE)
    y = (torch.arange(n) % 2).to(DEVICE)
    model = torchvision.models.resnet18(num_classes=2).to(DEVICE)
    if spec["type"] == "train":
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=spec["momentum"], weight_decay=spec["weightDecay"])
        loss_fn = torch.nn.CrossEntropyLoss(reduction="sum")

        def once():
            opt.zero_grad()
            logits = model(x)
            correct = (logits.argmax(1) == y).sum()
            loss = loss_fn(logits, y)
            loss.backward()
            opt.step()
            return loss.item(), correct.item()

    elif spec["type"] == "inference":
        model.eval()

        def once():
            with torch.no_grad():
                return model(x).cpu().numpy()

    else:
        raise ValueError(f"the PyTorch peer does not run {spec!r}")
    once()
    current = once
    return {"seconds": time.perf_counter() - t0}


def run(r):
    if current is None:
        raise RuntimeError("run before prepare")
    seconds, total = [], 0.0
    while len(seconds) < r["maxRuns"] and (len(seconds) < r["minRuns"] or total < r["minSeconds"]):
        t0 = time.perf_counter()
        current()
        s = time.perf_counter() - t0
        seconds.append(s)
        total += s
    return {"seconds": seconds}


def handle(request):
    global current
    op = request["op"]
    if op == "info":
        return {
            "adapter": str(DEVICE) if DEVICE.type != "cuda" else f"cuda: {torch.cuda.get_device_name(DEVICE)}",
            "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__, "python": sys.version.split()[0]},
            "threads": torch.get_num_threads(),
        }
    if op == "prepare":
        return prepare(request["spec"])
    if op == "run":
        return run(request)
    if op == "release":
        current = None
        return {}
    if op == "rss":
        return {"maxRssBytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    raise ValueError(f"unknown request {op!r}")


def main():
    for line in sys.stdin:
        if not line.strip():
            continue
        msg = json.loads(line)
        try:
            reply = {"id": msg["id"], "ok": True, "result": handle(msg["request"])}
        except Exception as e:  # the orchestrator reports it and goes on without this peer
            reply = {"id": msg["id"], "ok": False, "error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()

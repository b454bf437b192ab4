#!/usr/bin/env bash
# Installs the benchmark peers that come from Debian: PyTorch 1.13 CPU and torchvision 0.14 (python3-torch,
# python3-torchvision), the reference `npm run bench` compares the engine with (bench/peers/torch_step.py).
# Idempotent: does nothing when the system python3 already imports both. Prints every step it takes.
# The Debian packages import only with /usr/bin/python3 (another python3 may come first on PATH).
set -euo pipefail

py=/usr/bin/python3

have_torch() {
  [ -x "$py" ] && "$py" -c 'import torch, torchvision' >/dev/null 2>&1
}

if have_torch; then
  echo "setup-peers: $("$py" -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__)') already importable by $py; nothing to do."
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup-peers: no apt-get here. Install PyTorch 1.13 and torchvision 0.14 for $py yourself." >&2
  exit 1
fi

sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi

echo "setup-peers: apt-get update"
$sudo apt-get update -qq
echo "setup-peers: installing python3-torch python3-torchvision"
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-torch python3-torchvision

if have_torch; then
  echo "setup-peers: $("$py" -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__)') now importable by $py."
else
  echo "setup-peers: the packages installed, but $py still cannot import torch and torchvision." >&2
  exit 1
fi

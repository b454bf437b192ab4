#!/bin/bash
# `npm run bench` on the lent GPU machine (the `device` tool), from what scripts/stage-device.sh staged in .dev/.
# One device call, from the repository root:
#   carry [".dev", ".gl"], timeout_s 600, command: bash scripts/device-bench.sh
# Brings the Vulkan loader from .gl/*.deb when the machine has none, unpacks node and Dawn outside the repository,
# prints the GPU and the adapter Dawn finds, then runs the bundled bench, by default
#   node bench.mjs --only fma,kernels,e2e --rounds 2        (other arguments replace these)
# with the PyTorch peer on CUDA where python3's torch sees a GPU. latest.json (written after every part, so a run cut
# short keeps what it measured), bench.log and the kernel tuning cache (cache/kernel-tuning.json) go to $OUT
# (bench/results/device when OUT is unset, e.g. when this is tried on another machine).
set -uo pipefail
cd "$(dirname "$0")/.."
[ -f .dev/bench.mjs ] || { echo "device-bench: no .dev/bench.mjs: run bash scripts/stage-device.sh first and carry .dev" >&2; exit 1; }
out=${OUT:-$PWD/bench/results/device}
mkdir -p "$out"
if ! ldconfig -p | grep -q 'libvulkan\.so\.1'; then
  ls .gl/*.deb >/dev/null 2>&1 || { echo "device-bench: no Vulkan loader here and no .gl/*.deb to bring one (see the README)" >&2; exit 1; }
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
run=$(mktemp -d "${TMPDIR:-/tmp}/hotdog-bench.XXXXXX")
cp -r .dev/. "$run/"
cd "$run" || exit 1
{ xz -dc node.xz > node && chmod +x node && mkdir -p node_modules && tar -C node_modules -xJf webgpu.tar.xz; } || exit 1
export XDG_RUNTIME_DIR="$run/xdg" HOTDOG_CACHE_DIR="$out/cache" BENCH_RESULTS_DIR="$out"
mkdir -p -m 700 "$XDG_RUNTIME_DIR"
echo "staged: $(cat VERSIONS)"
nvidia-smi -L 2>/dev/null
echo "vulkan loader: $(ldconfig -p | grep -c 'libvulkan\.so\.1') entries"
if ! ./node probe.mjs; then
  # Where the loader finds no ICD by itself (device notes).
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  echo "retrying with VK_DRIVER_FILES=$VK_DRIVER_FILES"
  ./node probe.mjs || { echo "device-bench: Dawn finds no adapter" >&2; exit 1; }
fi
if command -v python3 >/dev/null; then
  export BENCH_PYTHON=${BENCH_PYTHON:-$(command -v python3)}
  if "$BENCH_PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    export BENCH_TORCH_DEVICE=${BENCH_TORCH_DEVICE:-cuda}
  fi
fi
[ $# -gt 0 ] || set -- --only fma,kernels,e2e --rounds 2
# Stops inside the device tool's 600 s per command, leaving time to hand $OUT back.
timeout "${BENCH_TIMEOUT:-560}" ./node bench.mjs "$@" 2>&1 | tee "$out/bench.log"
status=$?
cd / && rm -rf "$run"
exit $status

#!/bin/bash
# Stages `npm run bench` for a GPU machine that has no npm and no network (the `device` tool, see the README's
# "Benchmarks on a GPU machine"). Writes .dev/ (git-ignored; a call carries at most 64 MiB):
#   node.xz                     this machine's node binary (linux x64)
#   webgpu.tar.xz               node_modules/webgpu with Dawn's linux-x64 dawn.node only
#   bench.mjs                   bench/run.ts bundled by esbuild, and the workers it starts by path:
#   workers/engine.mjs, workers/tfjs.mjs
#   peers/torch_step.py         the PyTorch peer (skipped with one line where torch does not import)
#   probe.mjs                   prints the adapter Dawn finds (scripts/probe-adapter.mjs)
# Only the webgpu package stays outside the bundles (it loads dawn.node by a computed path). When .gl/ holds no .deb
# yet, it also downloads the Vulkan and EGL loaders (amd64) there with apt-get, as the device tool's notes say: the
# GPU machine may lack them (also git-ignored, carried beside .dev).
# Usage, from the repository root after npm ci:  bash scripts/stage-device.sh
# Then on the GPU machine: bash scripts/device-bench.sh (carry .dev and .gl).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f node_modules/webgpu/dist/linux-x64/dawn.node ] || { echo "stage-device: node_modules/webgpu is missing: run npm ci first" >&2; exit 1; }
[ "$(node -p 'process.platform + "-" + process.arch')" = linux-x64 ] || { echo "stage-device: the GPU machine runs linux x64; stage on linux x64 (this node is $(node -p 'process.platform + "-" + process.arch'))" >&2; exit 1; }
dev=.dev
rm -rf "$dev"
mkdir -p "$dev/peers" "$dev/nm/webgpu/dist/linux-x64"
# Bundled modules may import createRequire themselves (webgpu's own index.js does): the banner's is aliased.
node_modules/.bin/esbuild bench=bench/run.ts workers/engine=bench/workers/engine.ts workers/tfjs=bench/workers/tfjs.ts \
  --bundle --platform=node --format=esm --target=node20 --external:webgpu --outdir="$dev" --out-extension:.js=.mjs \
  --log-level=warning \
  --banner:js="import { createRequire as bundleCreateRequire } from 'module'; const require = bundleCreateRequire(import.meta.url);"
cp bench/peers/torch_step.py "$dev/peers/"
cp scripts/probe-adapter.mjs "$dev/probe.mjs"
cp node_modules/webgpu/index.js node_modules/webgpu/package.json "$dev/nm/webgpu/"
cp node_modules/webgpu/dist/linux-x64/dawn.node "$dev/nm/webgpu/dist/linux-x64/"
tar -C "$dev/nm" -cf - webgpu | xz -6 -T2 > "$dev/webgpu.tar.xz"
rm -rf "$dev/nm"
xz -6 -T2 -c "$(command -v node)" > "$dev/node.xz"
echo "node $(node --version), webgpu $(node -p 'require("./node_modules/webgpu/package.json").version')" > "$dev/VERSIONS"
du -b "$dev"/*.mjs "$dev"/workers/*.mjs "$dev"/*.xz | awk '{ printf "%8.0f KiB  %s\n", $1 / 1024, $2 }'
total=$(du -sb "$dev" | cut -f1)
echo "staged $((total / 1024)) KiB in $dev"
[ "$total" -lt $((64 * 1048576)) ] || { echo "stage-device: $dev is over the 64 MiB a device call carries" >&2; exit 1; }
if ! ls .gl/*.deb >/dev/null 2>&1; then
  mkdir -p .gl /tmp/amd64/partial
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  # shellcheck disable=SC2086
  if apt-get $o update >/dev/null && (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 >/dev/null); then
    echo "downloaded the Vulkan/EGL loaders into .gl: $(ls .gl | tr '\n' ' ')"
  else
    echo "stage-device: could not download the loaders into .gl (apt-get); device-bench.sh needs them only where the GPU machine has no libvulkan" >&2
  fi
fi
echo "carry: .dev $(du -sh .dev | cut -f1), .gl $(du -sh .gl 2>/dev/null | cut -f1)"

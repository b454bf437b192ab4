#!/usr/bin/env bash
# The Node test suite on a second Vulkan driver: Dawn on SwiftShader (the CPU Vulkan driver inside Chromium) instead
# of lavapipe, through VK_ICD_FILENAMES. Another implementation, with subgroup size 4, 1 GiB storage bindings and no
# shader-f16: a check that the kernels assume nothing about the driver. The page tests (test/e2e) are left out: they
# run Chromium, whose WebGPU is SwiftShader already.
#   bash scripts/test-swiftshader.sh [vitest arguments]      (npm run test:swiftshader)
set -euo pipefail
cd "$(dirname "$0")/.."

icd="${SWIFTSHADER_ICD:-}"
if [ -z "$icd" ]; then
  for candidate in /usr/lib/chromium/vk_swiftshader_icd.json /usr/lib/chromium-browser/vk_swiftshader_icd.json /opt/google/chrome/vk_swiftshader_icd.json; do
    if [ -f "$candidate" ]; then icd="$candidate"; break; fi
  done
fi
if [ -z "$icd" ] || [ ! -f "$icd" ]; then
  echo "No SwiftShader Vulkan driver found: install Debian's chromium (apt-get install -y chromium), or set SWIFTSHADER_ICD" >&2
  echo "to a vk_swiftshader_icd.json." >&2
  exit 1
fi
echo "Node test suite on SwiftShader ($icd)"
VK_ICD_FILENAMES="$icd" HOTDOG_SKIP_PAGE_TESTS=1 exec npx vitest run --project node "$@"

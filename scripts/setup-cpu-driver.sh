#!/usr/bin/env bash
# Installs a WebGPU-capable CPU Vulkan driver (Mesa lavapipe) on a GPU-less Debian/Ubuntu machine.
# Idempotent: does nothing when Node's `webgpu` package already finds an adapter, or when the
# needed packages are already installed. Prints every step it takes.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-${TMPDIR:-/tmp}/xdg-runtime-$(id -u)}"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"

have_adapter() {
  [ -d "$root/node_modules/webgpu" ] || return 1
  (cd "$root" && timeout 60 node scripts/probe-adapter.mjs >/dev/null 2>&1)
}

if have_adapter; then
  echo "setup-cpu-driver: a WebGPU adapter already exists; nothing to do."
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup-cpu-driver: no apt-get here. Install a Vulkan driver with WebGPU support yourself:" >&2
  echo "  Mesa >= 24 'lavapipe' (mesa-vulkan-drivers) and the Vulkan loader (libvulkan1), or a GPU driver." >&2
  exit 1
fi

sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi

installed_mesa_major() {
  dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null | sed -E 's/^([0-9]+:)?([0-9]+).*/\2/' || true
}

major="$(installed_mesa_major)"
if [ -n "$major" ] && [ "$major" -ge 24 ] && dpkg-query -W libvulkan1 >/dev/null 2>&1; then
  echo "setup-cpu-driver: mesa-vulkan-drivers $major.x and libvulkan1 already installed."
  exit 0
fi

. /etc/os-release
target=""
if [ "${ID:-}" = debian ] && [ "${VERSION_CODENAME:-}" = bookworm ]; then
  # bookworm's own Mesa (22.3) lacks what Dawn needs; bookworm-backports carries 25.x.
  target="bookworm-backports"
  list=/etc/apt/sources.list.d/bookworm-backports.sources
  if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "setup-cpu-driver: adding the bookworm-backports suite ($list)"
    $sudo tee "$list" >/dev/null <<SRC
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  fi
fi

echo "setup-cpu-driver: apt-get update"
$sudo apt-get update -qq
if [ -n "$target" ]; then
  echo "setup-cpu-driver: installing mesa-vulkan-drivers libvulkan1 from $target"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq -t "$target" mesa-vulkan-drivers libvulkan1
else
  echo "setup-cpu-driver: installing mesa-vulkan-drivers libvulkan1"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq mesa-vulkan-drivers libvulkan1
fi
major="$(installed_mesa_major)"
echo "setup-cpu-driver: mesa-vulkan-drivers major version now ${major:-unknown}"
if [ -z "$major" ] || [ "$major" -lt 24 ]; then
  echo "setup-cpu-driver: Mesa ${major:-?} is too old for Dawn (needs >= 24); no backports suite known for ${PRETTY_NAME:-this system}." >&2
  exit 1
fi

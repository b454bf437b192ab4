#!/usr/bin/env bash
# Installs Debian's chromium, the browser the page tests drive (playwright with executablePath; nothing downloads a
# browser). Idempotent: does nothing when a Chromium binary exists already (or CHROMIUM_PATH names one).
set -euo pipefail

for candidate in "${CHROMIUM_PATH:-}" /usr/lib/chromium/chromium /usr/bin/chromium /usr/bin/chromium-browser; do
  if [ -n "$candidate" ] && [ -x "$candidate" ]; then
    echo "setup-chromium: $candidate is there; nothing to do."
    exit 0
  fi
done

if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup-chromium: no apt-get here. Install Chromium or Chrome yourself and set CHROMIUM_PATH to its binary." >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
echo "setup-chromium: apt-get update && apt-get install -y chromium"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium

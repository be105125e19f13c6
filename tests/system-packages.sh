#!/usr/bin/env bash
# The system packages the suite drives besides Python's: Chromium (the playground's browser tests, through
# Playwright) and ffmpeg (ffprobe reads the settings tags written into every clip). Debian's packages, so no
# browser download from outside the package registries. As root (CI) it installs what is missing; otherwise it
# says what to install and goes on (the tests that need them are skipped, naming this script).
set -euo pipefail

need=()
command -v chromium >/dev/null 2>&1 || [ -x /usr/lib/chromium/chromium ] || need+=(chromium)
command -v ffprobe >/dev/null 2>&1 || need+=(ffmpeg)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
    echo "tests/system-packages.sh: install ${need[*]} (e.g. sudo apt-get install ${need[*]}); the tests that need" \
         "them are skipped until then" >&2
fi

#!/usr/bin/env bash
# Here, with the package registry, before a lent GPU is used: the few wheels its image lacks, pinned and without
# their dependencies (the image holds numpy, torch, transformers, huggingface_hub, safetensors, regex, requests,
# filelock, zipp, pillow, pytest, hypothesis, httpx: /work/.library/device/KINDS.md), for its Python (3.12 unless
# PYVER says otherwise), into .gpu-wheels/ (git-ignored: carry it). Then the size check: what the device tool sends
# (the tracked tree, the untracked files git does not ignore, and the carried wheels) must stay under its 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/../.."
pyver="${PYVER:-3.12}"
WHEELS=(diffusers==0.42.1 importlib_metadata==10.2.0 soundfile==0.14.0 cffi==2.1.1 pycparser==3.12 soxr==1.1.0)
rm -rf .gpu-wheels && mkdir -p .gpu-wheels
python3 -m pip download --quiet --no-deps --only-binary=:all: --dest .gpu-wheels --python-version "$pyver" \
    --implementation cp --abi "cp${pyver/./}" --abi abi3 --abi none --platform manylinux_2_28_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any "${WHEELS[@]}"
ls .gpu-wheels
python3 - <<'PY'
import os, subprocess, sys
LIMIT = 64 * 2**20
files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], capture_output=True,
                       check=True).stdout.decode().split("\0")
tree = sum(os.lstat(f).st_size for f in files if f and os.path.lexists(f))
wheels = sum(os.path.getsize(os.path.join(".gpu-wheels", f)) for f in os.listdir(".gpu-wheels"))
total = tree + wheels
print(f"travels: tree {tree / 2**20:.1f} MiB + wheels {wheels / 2**20:.1f} MiB = {total / 2**20:.1f} MiB "
      f"(limit {LIMIT / 2**20:.0f} MiB)")
sys.exit(0 if total < LIMIT else "too large for the device tool: leave files out or carry fewer wheels")
PY

#!/usr/bin/env bash
# Here, with the package registry: the wheels the GPU machine lacks (its image has torch, transformers, numpy, onnx,
# onnxruntime, tokenizers, huggingface_hub, tqdm; not diffusers, soundfile, pytest), with their dependencies, and
# setuptools (it builds the editable install of this checkout there), for that machine's Python (3.12 unless PYVER
# says otherwise), into .gpu-wheels/ (git-ignored, about 40 MB: carry it).
set -euo pipefail
cd "$(dirname "$0")/../.."
pyver="${PYVER:-3.12}"
abi="cp${pyver/./}"
rm -rf .gpu-wheels && mkdir -p .gpu-wheels
python3 -m pip download --quiet --only-binary=:all: --dest .gpu-wheels --python-version "$pyver" --implementation cp \
    --abi "$abi" --abi abi3 --abi none --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any \
    "diffusers==0.42.1" "soundfile>=0.12" "pytest>=8" "safetensors>=0.4" "setuptools>=69"
du -sh .gpu-wheels && ls .gpu-wheels

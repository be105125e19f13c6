#!/usr/bin/env bash
# On the GPU machine (no registry there): install the carried wheels offline, make tango_rt importable from this
# checkout, then the whole first-contact check: nvidia-smi, the GPU tests, and benchmarks/first_gpu.py's table.
#   device run: bash benchmarks/gpu/run.sh          (carry .gpu-wheels; about 6-8 minutes)
#   CPU dry run: DRY_RUN=1 bash benchmarks/gpu/run.sh   (random:tiny on the CPU, in a venv of the image's versions)
set -uo pipefail
cd "$(dirname "$0")/../.."
out="${OUT:-gpu_results}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1

echo "== installing the carried wheels (offline)"
if [ -n "${VIRTUAL_ENV:-}" ]; then where=(); else where=(--user --break-system-packages); fi
python3 -m pip install --quiet --no-index --find-links .gpu-wheels "${where[@]}" diffusers soundfile pytest \
    || { echo "offline install failed: run benchmarks/gpu/prepare.sh here and carry .gpu-wheels"; exit 2; }

echo "== tango_rt from this checkout (editable, no dependencies; setuptools comes from the carried wheels)"
python3 -m pip install --quiet --no-index --find-links .gpu-wheels "${where[@]}" --no-deps -e . \
    || { echo "installing tango-rt from the checkout failed"; exit 2; }
python3 -c "import diffusers, numpy, torch, transformers, tango_rt.runtime.tango as t
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'gpu', torch.cuda.is_available())
print('transformers', transformers.__version__, 'diffusers', diffusers.__version__, 'numpy', numpy.__version__)" \
    | tee "$out/versions.txt"

status=0
if [ -n "${DRY_RUN:-}" ]; then
    args=(--device cpu --model random:tiny --variants fp32 --repeat 1)
else
    args=()
fi
echo "== GPU tests"
python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_tensorrt_gpu.py 2>&1 | tee "$out/gpu_tests.txt" \
    || status=1
echo "== first GPU check"
python3 -m tango_rt.benchmarks.first_gpu --out "$out" "${args[@]}" || status=1
exit $status

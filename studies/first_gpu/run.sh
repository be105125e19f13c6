#!/usr/bin/env bash
# On the lent GPU machine (no registry there), the whole first-contact check in about 540 s, each step under its own
# time cap so one failure or hang cannot take the rest, everything written to $OUT as it finishes:
#   here first:   bash studies/first_gpu/prepare.sh            (the wheels, and the size check)
#   device run:   bash studies/first_gpu/run.sh                (carry .gpu-wheels; timeout_s 600)
#   CPU dry run:  DRY_RUN=1 bash studies/first_gpu/run.sh      (random:tiny on the CPU, python3 of a venv of the
#                                                               image's versions first on PATH, not activated)
# The carried wheels are unpacked with `pip install --target` into a scratch folder and tango_rt is made importable
# from this checkout through a shim (its folders linked under one tango_rt package): nothing is installed into the
# image's environment, so no virtual environment, --user or setuptools question arises. (-P keeps this checkout's
# own tango_rt/ folder, which holds only the CLI, from shadowing the shim.)
set -uo pipefail
cd "$(dirname "$0")/../.."
root="$PWD"
out="${OUT:-gpu_results}"
mkdir -p "$out"
work="$(mktemp -d)"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TANGO_RT_DEBUG=1

echo "== the carried wheels, unpacked (offline, no dependencies)"
timeout 120 python3 -m pip install --quiet --no-index --no-deps --target "$work/site" .gpu-wheels/*.whl \
    || { echo "unpacking .gpu-wheels failed: run studies/first_gpu/prepare.sh here and carry .gpu-wheels"; exit 2; }
mkdir -p "$work/shim/tango_rt"
cp tango_rt/*.py "$work/shim/tango_rt/"
for folder in runtime export engines benchmarks serving; do ln -s "$root/$folder" "$work/shim/tango_rt/$folder"; done
export PYTHONPATH="$work/shim:$work/site${PYTHONPATH:+:$PYTHONPATH}"
python3 -P -c "import diffusers, numpy, soundfile, soxr, torch, transformers, tango_rt.runtime.tango
print('python', __import__('platform').python_version(), 'torch', torch.__version__, 'cuda', torch.version.cuda,
      'gpu', torch.cuda.is_available())
print('transformers', transformers.__version__, 'diffusers', diffusers.__version__, 'numpy', numpy.__version__)" \
    2>&1 | tee "$out/versions.txt"
nvidia-smi 2>&1 | tee "$out/nvidia-smi.txt" || true

status=0
if [ -n "${DRY_RUN:-}" ]; then
    args=(--device cpu --model random:tiny --variants fp32,fp32+turbo --repeat 1 --cap-scale 3)
else
    args=(--budget-s 400)
fi
echo "== GPU tests (cap 110 s)"
timeout 110 python3 -P -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_tensorrt_gpu.py 2>&1 \
    | tee "$out/gpu_tests.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
echo "== first GPU check (each variant in its own process and time cap; the table rewritten after each)"
timeout 420 python3 studies/first_gpu/first_gpu.py --out "$out" "${args[@]}" || status=1
rm -rf "$work"
exit $status

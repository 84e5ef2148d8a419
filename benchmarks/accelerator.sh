#!/usr/bin/env bash
# jaxdl vs PyTorch on whatever accelerator this machine has, in at most 7 minutes.
#
#   benchmarks/accelerator.sh --fetch    # with network: the wheels a GPU machine lacks -> .whl/
#   benchmarks/accelerator.sh            # there: installs .whl/ into /tmp, runs every case
#   benchmarks/accelerator.sh --race     # there: the GPU race instead (benchmarks/gpu_race.py)
#   benchmarks/accelerator.sh --quick    # tiny shapes, any machine (a CPU: a few minutes)
#
# Writes ${OUT:-benchmarks}/accelerator.json (or gpu_race.json) and prints the table. The
# H200 machine has jax 0.11.2 + CUDA, flax, optax, orbax, chex and torch 2.11 but not
# ml_collections, tensorboardX, grain, array_record or portpicker (wheels fetched here for
# its Python 3.12; the rest of what they need is there).
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=(ml_collections==1.1.0 tensorboardX==2.6.5 grain==0.2.18 array_record==0.8.6
        portpicker==1.6.0)
PYTHON=${PYTHON:-python3}

if [[ "${1:-}" == "--fetch" ]]; then
  "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "${WHEELS[@]}"
  ls .whl
  exit 0
fi

if compgen -G ".whl/*.whl" > /dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/jaxdl-site .whl/*.whl
  export PYTHONPATH=/tmp/jaxdl-site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
out=${OUT:-benchmarks}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
if [[ "${1:-}" == "--race" ]]; then
  shift
  timeout 360 "$PYTHON" -m benchmarks.gpu_race --out "$out/gpu_race.json" "$@"
else
  timeout 430 "$PYTHON" -m benchmarks.accelerator --out "$out/accelerator.json" "$@"
fi

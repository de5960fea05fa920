#!/usr/bin/env bash
# Sets up a virtual environment in .venv with the tested versions of torch, PyG and
# its compiled extensions, and installs tg_samplenet in editable mode with its test
# extras. Safe to run again: installed pieces are skipped and built wheels are cached.
set -euo pipefail
cd "$(dirname "$0")"

python=${PYTHON:-$(command -v python3.11 || command -v python3)}
venv=${VENV:-.venv}
pins=requirements/pins.txt
export PIP_DISABLE_PIP_VERSION_CHECK=1
export MAX_JOBS=${MAX_JOBS:-$(nproc)}

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --quiet)

# torch first: an unpinned torch would pull a multi-GB CUDA build.
"${pip[@]}" -c "$pins" torch setuptools wheel scipy
"${pip[@]}" -c "$pins" torch-geometric

# torch-scatter and torch-cluster ship as source on PyPI: their setup.py imports torch,
# so they build against the installed torch (--no-build-isolation). pip reuses a
# binary or previously built wheel when one is found, so this is slow only once.
if ! "$venv/bin/python" -c "import torch_scatter, torch_cluster" 2>/dev/null; then
  echo "Building torch-scatter and torch-cluster (about 12 minutes on 2 cores, once)..."
  "${pip[@]}" -c "$pins" --no-build-isolation torch-scatter torch-cluster
fi

# fpsample (the "bench" extra: a peer benchmarks/speed.py measures, skipped where missing) can
# come as source: it builds in pip's own isolated environment (scikit-build-core, CMake), which
# the editable install below turns off; a machine that cannot build it still gets the rest.
"${pip[@]}" -c "$pins" fpsample || echo "fpsample could not be installed: benchmarks/speed.py skips it"
"${pip[@]}" -c "$pins" --no-build-isolation -e ".[full,data,examples,test]"
echo "tg_samplenet is set up in $venv"

#!/usr/bin/env bash
# Sets up a virtual environment with the tested torch (CPU), the newest PyG and this package
# in editable mode, with the extras the examples, benchmarks, tests and docs use.
#
#     bash setup.sh          # nothing to compile: torch 2.13.0, torch-geometric 2.8.1 (~2 min)
#     bash setup.sh --full   # also the compiled torch-scatter and torch-cluster (with PyG 2.7.0):
#                            # the fast path on a GPU; built from source, ~12 min on 2 cores
#
# VENV=path picks the environment's folder (default .venv). Safe to run again: installed
# pieces are skipped and built wheels are cached by pip.
set -euo pipefail
cd "$(dirname "$0")"

full=0
case "${1:-}" in
  "") ;;
  --full) full=1 ;;
  *) echo "usage: bash setup.sh [--full]" >&2; exit 2 ;;
esac
python=${PYTHON:-$(command -v python3.11 || command -v python3)}
venv=${VENV:-.venv}
pins=requirements/pins.txt
[ "$full" = 1 ] && pins=requirements/pins-full.txt
export PIP_DISABLE_PIP_VERSION_CHECK=1 MAX_JOBS=${MAX_JOBS:-$(nproc)}

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
printf '*\n' >"$venv/.gitignore" # the environment never shows up in git status
pip=("$venv/bin/python" -m pip install --quiet -c "$pins")

# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build.
"${pip[@]}" torch setuptools wheel
"${pip[@]}" --no-build-isolation -e ".[data,examples,test,docs]"
# The FPS peers that the benchmarks measure (skipped there when missing; fpsample can come as
# source and need a compiler).
"${pip[@]}" torch-quickfps || echo "torch-quickfps could not be installed: the benchmarks skip it"
"${pip[@]}" fpsample || echo "fpsample could not be installed: the benchmarks skip it"

if [ "$full" = 1 ]; then
  # Source-only on PyPI: their setup.py imports torch, so they build against it.
  echo "Building torch-scatter and torch-cluster (about 12 minutes on 2 cores, once)..."
  "${pip[@]}" --no-build-isolation torch-scatter torch-cluster
elif command -v nvidia-smi >/dev/null 2>&1; then
  echo "A GPU is present: 'bash setup.sh --full' adds the compiled GPU kernels."
fi
"$venv/bin/python" -c "import tg_samplenet, torch, torch_geometric as g; from tg_samplenet.ops import available_backends as a; print(f'tg_samplenet {tg_samplenet.__version__} with torch {torch.__version__}, PyG {g.__version__}, back-ends {a()}')"
echo "set up in $venv"

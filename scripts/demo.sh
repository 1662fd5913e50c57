#!/usr/bin/env bash
# Install polyvec with its model and eval extras into ./.venv and run the demo (the main job).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first, pinned: the local CPU wheel (an unpinned torch pulls a multi-GB CUDA build)
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e '.[models,eval]'
.venv/bin/python examples/demo.py "$@"

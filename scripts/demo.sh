#!/usr/bin/env bash
# Install polyvec into ./.venv and run the demo (the main job).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e .
.venv/bin/python examples/demo.py "$@"

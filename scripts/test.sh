#!/usr/bin/env bash
# Install polyvec with its test extras into ./.venv and run the full test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
.venv/bin/python -m ruff check src tests benchmarks examples
.venv/bin/python -m pytest -q "$@"

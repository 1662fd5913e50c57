#!/usr/bin/env bash
# Install polyvec with every extra into ./.venv and run the full test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
# the dashboard's browser test drives Debian's headless chromium through its chromedriver
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  sudo_=""; [ "$(id -u)" -ne 0 ] && sudo_="sudo"
  $sudo_ apt-get install -y -q chromium chromium-driver >/dev/null \
    || { $sudo_ apt-get update -q >/dev/null && $sudo_ apt-get install -y -q chromium chromium-driver >/dev/null; }
fi
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first, pinned: the local CPU wheel (an unpinned torch pulls a multi-GB CUDA build)
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e '.[test,models,eval,server,langchain,llamaindex,haystack,lexical,ray]'
.venv/bin/python -m ruff check src tests benchmarks examples scripts
.venv/bin/python -m mypy src/polyvec
.venv/bin/python -m pytest -q "$@"

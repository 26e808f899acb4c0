#!/usr/bin/env bash
# Create .venv and install nctk with every extra and the test tools. Idempotent: a second
# run only re-checks. torch/torchvision are pinned to the builds this project is tested with
# (installed first so that no other package pulls a different torch).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
"$VPY" -m pip install -q --upgrade pip >/dev/null
"$VPY" -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
"$VPY" -m pip install -q -e ".[all,test]"
echo "nctk installed in $(pwd)/.venv"

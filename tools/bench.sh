#!/usr/bin/env bash
# ./podnet-dev bench (make bench): run every benchmark in one run (bench/run_all.py) and write docs/performance.md
# with its plots under docs/img/ (and the benchmarks' own docs/performance-*.md).
# Runs as root with the venv's Python; installs matplotlib (requirements/bench.txt) if missing.
# Extra arguments go to bench/run_all.py, e.g. tools/bench.sh --quick --out /tmp/perf
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY="$PWD/$VENV/bin/python"
if [ "$(id -u)" -ne 0 ]; then
  echo "the benchmarks need root: they create network namespaces, bridges and taps" >&2
  exit 1
fi
if ! "$PY" -c 'import matplotlib' 2>/dev/null; then
  echo "installing the plotting packages into $VENV (requirements/bench.txt)"
  "$PY" -m pip install --quiet --disable-pip-version-check -r requirements/bench.txt
fi
export PATH="$PWD/$VENV/bin:$PATH"
export ANSIBLE_PYTHON_INTERPRETER="$PY"  # pyenv shims break interpreter discovery
export ANSIBLE_NOCOLOR=1
exec "$PY" bench/run_all.py "$@"

#!/usr/bin/env bash
# Print the real path of a usable Python: 3.12 (what the lock file is tested with), else
# 3.13, 3.14, else 3.11 (with the ansible-core 2.19 lock). >= 3.12 gets the
# newest ansible-core. Real paths, not pyenv shims: shims break Ansible's interpreter
# discovery and depend on the caller's directory.
set -euo pipefail
candidates=()
for v in 3.12 3.13 3.14 3.11; do
  candidates+=("python$v")
  for d in /root/.pyenv/versions/"$v".*/bin /usr/local/bin /usr/bin; do
    [ -x "$d/python$v" ] && candidates+=("$d/python$v")
  done
done
for c in "${candidates[@]}"; do
  real=$("$c" -c 'import sys, venv, ensurepip; print(sys.executable) if sys.version_info >= (3, 11) else sys.exit(1)' 2>/dev/null) || continue
  [ -n "$real" ] && { echo "$real"; exit 0; }
done
echo "no Python >= 3.11 with venv and ensurepip found (on Debian: apt-get install python3-venv)" >&2
exit 1

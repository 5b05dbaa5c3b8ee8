#!/usr/bin/env bash
# shellcheck disable=SC2317  # the *_run functions are called indirectly, through step()
# The whole suite, step by step. Every step runs even when an earlier one failed, and a
# summary at the end says which failed; the exit code is non-zero when any did.
# Usage: tools/run_tests.sh all|unit|integration|sanity|lint|molecule
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
VENV=${VENV:-.venv}
export PATH="$PWD/$VENV/bin:$PATH"
PY="$PWD/$VENV/bin/python"
# Ansible must use the venv's interpreter: pyenv shims break interpreter discovery.
export ANSIBLE_PYTHON_INTERPRETER="$PY"
export ANSIBLE_COLLECTIONS_PATH="$PWD/.build/pytest-collections"
export ANSIBLE_FORCE_COLOR=0 PY_COLORS=0
what=${1:-all}
declare -a names=() results=()

step() {  # step NAME COMMAND...
  local name=$1; shift
  echo
  echo "=== $name: $*"
  local start=$SECONDS
  "$@"
  local rc=$?
  names+=("$name")
  results+=("$([ $rc -eq 0 ] && echo ok || echo "FAILED (exit $rc)") in $((SECONDS - start))s")
}

pytest_run() { "$PY" -m pytest -p no:cacheprovider "$@"; }

sanity_run() {
  local dir
  dir=$("$PY" tools/prepare_ansible_test.py "$PWD/.build/ansible-test") || return 1
  local pyver
  pyver=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  (cd "$dir" && ansible-test sanity --local --python "$pyver" --color no 2>&1 \
     | grep -v -E '^(WARNING: Location|Looking in|Collecting|  Downloading|     ━|Processing|Successfully installed|Using cached pip|Requirement already)')
}

# The collection as ansible_collections/virtnet/podnet on ANSIBLE_COLLECTIONS_PATH: a link to
# this checkout (tests/conftest.py makes the same one). ansible-lint needs it to resolve
# virtnet.podnet.* in the molecule playbooks, molecule to run them.
collection_link() {
  local link="$PWD/.build/pytest-collections/ansible_collections/virtnet/podnet"
  mkdir -p "$(dirname "$link")"
  [ "$(readlink "$link")" = "$PWD" ] || ln -sfn "$PWD" "$link"
}

lint_run() { collection_link && ansible-lint --offline --nocolor; }

molecule_run() {
  # molecule 26 (collection mode) runs from the collection root: it finds the scenarios as
  # extensions/molecule/*/molecule.yml and the shared extensions/molecule/config.yml there.
  local scenarios
  scenarios=$(find extensions/molecule -mindepth 2 -maxdepth 2 -name molecule.yml -printf '%h\n' 2>/dev/null \
              | xargs -r -n1 basename | sort)
  [ -n "$scenarios" ] || { echo "no molecule scenarios yet"; return 0; }
  # The scenarios use the collection through ANSIBLE_COLLECTIONS_PATH (the link above).
  collection_link
  # molecule's prerun installs the collection into ansible-compat's cache, which is
  # ~/.ansible/collections unless ANSIBLE_HOME says otherwise: keep it under .build/, so no
  # copy in the user's collection path ever hides a missing collections path.
  local rc=0 s
  for s in $scenarios; do
    ANSIBLE_HOME="$PWD/.build/ansible-home" molecule test -s "$s" || rc=1
  done
  return "$rc"
}

case $what in
  unit) step unit pytest_run tests/unit -q ;;
  integration) step integration pytest_run tests/integration -q ;;
  sanity) step sanity sanity_run ;;
  lint) step ansible-lint lint_run ;;
  molecule) step molecule molecule_run ;;
  all)
    step sanity sanity_run
    step ansible-lint lint_run
    step molecule molecule_run
    step pytest pytest_run tests/unit tests/integration -q
    ;;
  *) echo "usage: $0 all|unit|integration|sanity|lint|molecule" >&2; exit 2 ;;
esac

echo
echo "=== summary"
failed=0
for i in "${!names[@]}"; do
  printf '  %-14s %s\n' "${names[$i]}" "${results[$i]}"
  [[ ${results[$i]} == ok* ]] || failed=1
done
exit $failed

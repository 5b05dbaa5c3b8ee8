#!/usr/bin/env bash
# Run the main job: playbooks/demo.yml on this machine, with the collection from this checkout.
# The lab is removed afterwards (playbooks/demo_cleanup.yml) - also when the demo fails or is
# interrupted halfway - unless DEMO_KEEP=1 and the demo succeeded. See docs/demo.md.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY="$PWD/$VENV/bin/python"
link=.build/collections/ansible_collections/virtnet/podnet
mkdir -p "$(dirname "$link")"
ln -sfn "$PWD" "$link"
export ANSIBLE_COLLECTIONS_PATH="$PWD/.build/collections"
export ANSIBLE_PYTHON_INTERPRETER="$PY"  # pyenv shims break interpreter discovery
export ANSIBLE_STDOUT_CALLBACK=default ANSIBLE_CALLBACK_RESULT_FORMAT=yaml ANSIBLE_CALLBACK_YAML_LINE_WIDTH=no-break
export ANSIBLE_PIPELINING=1
playbook="$PWD/$VENV/bin/ansible-playbook"
status=1
cleanup() {
  if [ "${DEMO_KEEP:-0}" = 1 ] && [ "$status" = 0 ]; then
    echo
    echo "DEMO_KEEP=1: the lab stays (namespaces podnet-demo-*); remove it with:"
    echo "  ANSIBLE_COLLECTIONS_PATH=$ANSIBLE_COLLECTIONS_PATH $playbook -i localhost, -e ansible_python_interpreter=$PY playbooks/demo_cleanup.yml"
    return
  fi
  echo
  echo "=== removing the demo lab (playbooks/demo_cleanup.yml)"
  "$playbook" -i localhost, playbooks/demo_cleanup.yml >/dev/null 2>.build/demo-cleanup.err \
    || { echo "cleanup failed:"; cat .build/demo-cleanup.err; }
  local left=() ns
  for ns in /run/netns/podnet-demo-*; do
    [ -e "$ns" ] && left+=("${ns##*/}")
  done
  if [ ${#left[@]} -gt 0 ]; then
    echo "namespaces left behind: ${left[*]}"
  else
    echo "no podnet-demo-* namespace left"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
"$playbook" -i localhost, playbooks/demo.yml "$@"
status=0

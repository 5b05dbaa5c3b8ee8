#!/usr/bin/env bash
# Run the main job: playbooks/demo.yml on this machine, with the collection from this checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY="$PWD/$VENV/bin/python"
link=.build/collections/ansible_collections/virtnet/podnet
mkdir -p "$(dirname "$link")"
ln -sfn "$PWD" "$link"
export ANSIBLE_COLLECTIONS_PATH="$PWD/.build/collections"
export ANSIBLE_PYTHON_INTERPRETER="$PY"  # pyenv shims break interpreter discovery
export ANSIBLE_STDOUT_CALLBACK=default ANSIBLE_CALLBACK_RESULT_FORMAT=yaml
exec "$PWD/$VENV/bin/ansible-playbook" -i localhost, playbooks/demo.yml "$@"

#!/usr/bin/env bash
# shellcheck disable=SC2317  # the *_run functions are called indirectly, through lane()
# The whole suite, or one step. `all` runs independent steps at the same time, in lanes: most
# of the suite waits (DHCP clients, nodes booting, SSH round trips, qemu guests), so on two
# cores the lanes overlap their waiting with each other's work. Each lane's output goes to
# .build/test-logs/NAME.log and is printed whole when the lane ends; every step runs even when
# another failed, and the summary at the end says which failed, with each step's wall time.
# Usage: tools/run_tests.sh all|quick|stock|unit|integration|sanity|lint|molecule
#   quick   the edit loop (a few minutes): unit tests, sanity, and a few integration tests
#   stock   what depends on the machine's Python and ansible-core (see STOCK_TESTS), and ansible-lint
# Environment: VENV (default .venv), PYTEST_WORKERS (default 4).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
VENV=${VENV:-.venv}
# Four workers on two cores: most tests wait on clients, timers and the kernel, not the CPU.
# worksteal: an idle worker takes tests queued on a busy one, so no worker idles while
# another still holds a queue of short tests behind a long one.
PARALLEL=(-n "${PYTEST_WORKERS:-4}" --dist worksteal)
LOGS="$PWD/.build/test-logs"
export ANSIBLE_FORCE_COLOR=0 PY_COLORS=0
what=${1:-all}
declare -a names=() results=()
mkdir -p "$LOGS"

use_venv() {  # use_venv DIR: PATH, interpreter and collections path of that venv
  local dir=$1
  export PATH="$PWD/$dir/bin:${PATH#"$PWD/$VENV/bin:"}"
  PY="$PWD/$dir/bin/python"
  # Ansible must use the venv's interpreter: pyenv shims break interpreter discovery.
  export ANSIBLE_PYTHON_INTERPRETER="$PY"
  export ANSIBLE_COLLECTIONS_PATH="$PWD/.build/pytest-collections"
}
use_venv "$VENV"

# Every inotify instance of root on this machine counts against one limit (128 by default): the fleet
# lane's three systemd nodes, the fresh-machine container and four pytest workers' responders together
# went past it (EMFILE from inotify_init1 in a clean-clone CI run). Raised for the run when we may.
if [ "$(id -u)" = 0 ] && [ -w /proc/sys/fs/inotify/max_user_instances ] \
   && [ "$(cat /proc/sys/fs/inotify/max_user_instances)" -lt 1024 ]; then
  echo "raising fs.inotify.max_user_instances to 1024 (was $(cat /proc/sys/fs/inotify/max_user_instances))"
  echo 1024 > /proc/sys/fs/inotify/max_user_instances || true
fi

pyver() { "$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])'; }

# -- steps -------------------------------------------------------------------------------------
pytest_run() {  # pytest_run NAME ARGS...: junit XML per step, for the closing count
  local name=$1; shift
  "$PY" -m pytest -p no:cacheprovider --junitxml="$LOGS/$name.xml" "$@"
  local rc=$?
  [ "$rc" -eq 5 ] && echo "pytest collected no test" >&2  # exit 5 stays a failure
  return "$rc"
}

sanity_run() {
  local dir
  dir=$("$PY" tools/prepare_ansible_test.py "$PWD/.build/ansible-test-$(pyver)") || return 1
  (cd "$dir" && ansible-test sanity --local --python "$(pyver)" --color no 2>&1 \
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

checks_run() {  # sanity, then ansible-lint, even when sanity failed
  local rc=0
  sanity_run || rc=1
  echo "--- ansible-lint"
  lint_run || rc=1
  return "$rc"
}

scenarios() {
  find extensions/molecule -mindepth 2 -maxdepth 2 -name molecule.yml -printf '%h\n' 2>/dev/null \
    | xargs -r -n1 basename | sort
}

molecule_run() {  # molecule_run [SCENARIO...]: those (default: every one), one after another
  # molecule 26 (collection mode) runs from the collection root: it finds the scenarios as
  # extensions/molecule/*/molecule.yml and the shared extensions/molecule/config.yml there.
  local list=("$@")
  [ ${#list[@]} -gt 0 ] || mapfile -t list < <(scenarios)
  # A suite without scenarios is a broken checkout, not a pass.
  [ ${#list[@]} -gt 0 ] || { echo "no molecule scenario found under extensions/molecule" >&2; return 1; }
  collection_link
  local rc=0 s
  for s in "${list[@]}"; do
    # molecule's prerun installs the collection into ansible-compat's cache, which is
    # ~/.ansible/collections unless ANSIBLE_HOME says otherwise: keep it under .build/, one per
    # scenario (scenarios run at the same time), so no copy in the user's collection path ever
    # hides a missing collections path.
    echo "--- molecule scenario $s"
    ANSIBLE_HOME="$PWD/.build/ansible-home-$s" molecule test -s "$s" || rc=1
  done
  return "$rc"
}

# Two molecule lanes beside pytest: the fleet (containers booting, SSH) then sanity, and the
# scenarios on localhost then ansible-lint. Each static check follows a lane's scenarios.
fleet_then_sanity() {
  local rc=0
  molecule_run fleet || rc=1
  echo "--- sanity"
  sanity_run || rc=1
  return "$rc"
}

local_scenarios_then_lint() {
  local rc=0 list
  mapfile -t list < <(scenarios | grep -vx fleet)
  [ ${#list[@]} -gt 0 ] || { echo "no molecule scenario on localhost under extensions/molecule" >&2; rc=1; }
  [ ${#list[@]} -eq 0 ] || molecule_run "${list[@]}" || rc=1
  echo "--- ansible-lint"
  lint_run || rc=1
  return "$rc"
}

# What depends on the Python and ansible-core a machine has, or on a machine where nothing ran
# before (the fresh-machine test runs this step in a Debian 12 container): the unit tests, the
# real DHCP clients (IPv4 and IPv6), ansible-doc, the role docs and the filters through ansible-core.
STOCK_TESTS=(
  tests/unit
  tests/integration/test_dhcp_responder.py::test_client_gets_the_pod_address
  tests/integration/test_dhcp6_responder_clients.py::test_client_gets_the_ipv6_address_default_route_and_reaches_the_gateway
  tests/integration/test_playbook_plan_and_filters.py
)
# The edit loop adds the module path: its crash, check-mode and playbook tests.
QUICK_TESTS=("${STOCK_TESTS[@]}" tests/integration/test_pod_bridge.py)

# -- lanes -------------------------------------------------------------------------------------
declare -A lane_pid=() lane_start=()
lane() {  # lane NAME COMMAND...: run in the background, output to $LOGS/NAME.log
  local name=$1; shift
  echo "=== started $name: $*"
  lane_start[$name]=$SECONDS
  # The lane writes its own wall time: it may end long before finish_lanes collects it.
  ( "$@" > "$LOGS/$name.log" 2>&1; rc=$?; echo $((SECONDS - lane_start[$name])) > "$LOGS/$name.seconds"; exit $rc ) &
  lane_pid[$name]=$!
}

finish_lanes() {  # wait for every lane, print its log, record its result
  local name rc took
  while [ ${#lane_pid[@]} -gt 0 ]; do
    wait -n -p done_pid "${lane_pid[@]}"
    rc=$?
    for name in "${!lane_pid[@]}"; do
      [ "${lane_pid[$name]}" = "$done_pid" ] || continue
      unset "lane_pid[$name]"
      took=$(cat "$LOGS/$name.seconds" 2>/dev/null || echo $((SECONDS - lane_start[$name])))
      echo
      echo "=== $name ($([ $rc -eq 0 ] && echo ok || echo "FAILED, exit $rc"), ${took}s)"
      cat "$LOGS/$name.log"
      record "$name" "$rc" "$took"
    done
  done
}

record() {  # record NAME RC SECONDS
  names+=("$1")
  results+=("$([ "$2" -eq 0 ] && echo ok || echo "FAILED (exit $2)") in ${3}s")
}

step() {  # step NAME COMMAND...: in the foreground
  local name=$1; shift
  echo
  echo "=== $name: $*"
  local start=$SECONDS
  "$@"
  record "$name" $? $((SECONDS - start))
}

closing_count() {  # the plain closing line: every pytest run of this invocation, added up
  "$PY" - "$LOGS" "$@" <<'EOF'
import sys, xml.etree.ElementTree as ET
from pathlib import Path
logs, names = Path(sys.argv[1]), sys.argv[2:]
passed = failed = skipped = 0
for name in names:
    path = logs / f"{name}.xml"
    if not path.exists():
        continue
    for suite in ET.parse(path).getroot().iter("testsuite"):
        tests, skip = int(suite.get("tests", 0)), int(suite.get("skipped", 0))
        bad = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        passed, failed, skipped = passed + tests - skip - bad, failed + bad, skipped + skip
print(f"tests: {passed} passed, {failed} failed, {skipped} skipped")
EOF
}

rm -f "$LOGS"/*.xml "$LOGS"/*.seconds
case $what in
  unit) step unit pytest_run unit tests/unit -q "${PARALLEL[@]}" ;;
  integration) step integration pytest_run integration tests/integration -q "${PARALLEL[@]}" ;;
  sanity) step sanity sanity_run ;;
  lint) step ansible-lint lint_run ;;
  molecule) step molecule molecule_run ;;
  stock)
    step pytest pytest_run pytest -q "${PARALLEL[@]}" "${STOCK_TESTS[@]}"
    step ansible-lint lint_run
    ;;
  quick)
    lane checks checks_run
    step pytest pytest_run pytest -q "${PARALLEL[@]}" "${QUICK_TESTS[@]}"
    finish_lanes
    ;;
  all)
    lane molecule-fleet fleet_then_sanity
    lane molecule-local local_scenarios_then_lint
    step pytest pytest_run pytest -q "${PARALLEL[@]}" --durations=25 tests/unit tests/integration
    finish_lanes
    ;;
  *) echo "usage: $0 all|quick|stock|unit|integration|sanity|lint|molecule" >&2; exit 2 ;;
esac

echo
echo "=== summary"
failed=0
for i in "${!names[@]}"; do
  printf '  %-14s %s\n' "${names[$i]}" "${results[$i]}"
  [[ ${results[$i]} == ok* ]] || failed=1
done
closing_count pytest unit integration
exit $failed

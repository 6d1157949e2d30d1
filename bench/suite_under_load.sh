#!/usr/bin/env bash
# The whole test suite, twice in a row, beside two CPU-bound busy processes: tests must wait
# on events or generous bounds, never on a machine being idle. Prints each run's result and
# time; exits non-zero if either run failed.
#   bash bench/suite_under_load.sh [pytest args...]
set -uo pipefail
cd "$(dirname "$0")/.."
python3 -c "while True: pass" & busy1=$!
python3 -c "while True: pass" & busy2=$!
trap 'kill $busy1 $busy2 2>/dev/null' EXIT
failed=0
for run in 1 2; do
  started=$(date +%s)
  .venv/bin/pytest -q -p no:cacheprovider -n auto --dist loadfile "$@" > "/tmp/suite-under-load-$run.log" 2>&1
  rc=$?
  echo "run $run: exit $rc in $(( $(date +%s) - started )) s ($(tail -n 1 "/tmp/suite-under-load-$run.log"))"
  [ "$rc" -eq 0 ] || failed=1
done
exit $failed

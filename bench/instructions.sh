#!/usr/bin/env bash
# Instructions per task of bench/task_path.py, counted by valgrind's callgrind: unlike CPU
# time, the count does not move with the VM's speed or with what else runs on the machine,
# so two trees compare in one run each. The count is of user space only (a system call is one
# instruction however long the kernel takes): pair it with task_path.py's CPU time.
# Two runs of different lengths, so that start-up and warm-up cancel out. About 3 minutes.
#   bash bench/instructions.sh [SRC] [SUBMITTERS]   (SRC: a tree's src/, default this one's)
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:-src}
submitters=${2:-32}
short=320; long=960  # (tasks: SUBMITTERS must divide both)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for n in $short $long; do
  PYTHONPATH=$src valgrind --tool=callgrind --callgrind-out-file="$out/cg.$n" \
    .venv/bin/python bench/task_path.py -c "$submitters" -n "$n" >/dev/null 2>"$out/err.$n"
  grep -o "Collected : [0-9]*" "$out/err.$n" | awk '{print $3}' > "$out/total.$n"
done
# task_path.py runs n/4 tasks of warm-up before its n: the difference is 1.25 (long - short)
per_task=$(( ($(cat "$out/total.$long") - $(cat "$out/total.$short")) * 4 / (5 * (long - short)) ))
echo "$src, $submitters submitters: $per_task instructions per task"

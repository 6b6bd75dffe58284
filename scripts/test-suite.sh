#!/usr/bin/env bash
# The whole suite as two pytest processes at once, each one half of it by the durations
# recorded in tests/.test_durations (pytest-split, in collection order: a module stays in
# one half, bar the one the cut falls in). Most tests wait on consumers, brokers, servers
# and a browser rather than compute, so two halves on two cores take little more than one.
# The first half reports as it goes; the second's report follows when both are done.
# Arguments go to both pytest processes. WANGGE_TEST_GROUPS=1 runs the suite in one.
set -uo pipefail
cd "$(dirname "$0")/.."

groups=${WANGGE_TEST_GROUPS:-2}
run_dir=$(mktemp -d -t wangge-suite.XXXXXX)
split=(--splits "$groups" --splitting-algorithm duration_based_chunks
       --durations-path tests/.test_durations)

pids=()
for group in $(seq 2 "$groups"); do
  .venv/bin/pytest "${split[@]}" --group "$group" --basetemp "$run_dir/tmp$group" "$@" \
    > "$run_dir/group$group.log" 2>&1 &
  pids+=("$!")
done
echo "test-suite: half 1 of $groups here; the others' reports follow (logs in $run_dir)"
.venv/bin/pytest "${split[@]}" --group 1 --basetemp "$run_dir/tmp1" "$@"
status=$?

group=2
for pid in "${pids[@]}"; do
  wait "$pid"
  code=$?
  echo
  echo "================ test-suite: half $group of $groups (exit $code) ================"
  cat "$run_dir/group$group.log"
  if [ "$code" -ne 0 ]; then status=$code; fi
  group=$((group + 1))
done
exit "$status"

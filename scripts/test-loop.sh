#!/usr/bin/env bash
# Runs the test command again and again, to catch flaky tests:
#
#   bash scripts/test-loop.sh [RUNS] [ts|python|go]    default: 10 runs of every suite
#
# Each run's output goes to .tools/test-loop/run-N.log; a failed run's log
# path is printed. Ends with one line "N passed, M failed" and exits 1 when
# any run failed.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUNS="${1:-10}"
SUITE="${2:-all}"
LOGS="$ROOT/.tools/test-loop"
mkdir -p "$LOGS"
passed=0
failed=0
for i in $(seq 1 "$RUNS"); do
  log="$LOGS/run-$i.log"
  started=$(date +%s)
  if bash "$ROOT/scripts/test-all.sh" "$SUITE" >"$log" 2>&1; then
    passed=$((passed + 1))
    echo "run $i of $RUNS: passed in $(($(date +%s) - started)) s"
  else
    failed=$((failed + 1))
    echo "run $i of $RUNS: FAILED in $(($(date +%s) - started)) s; see $log"
  fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

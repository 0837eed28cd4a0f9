#!/usr/bin/env bash
# Reads a JUnit 4 console log and prints "N passed, F failed"; exits non-zero when a test
# failed, JUnit exited non-zero, or the log holds no JUnit summary at all.
#
#   bash android_demo/junit_summary.sh LOG JUNIT_EXIT_STATUS
set -euo pipefail
LOG="$1"
STATUS="$2"
# JUnit prints "OK (N tests)" or "Tests run: N,  Failures: F".
if OK=$(grep -Eo '^OK \([0-9]+ tests?\)' "$LOG"); then
  RUN=$(echo "$OK" | grep -Eo '[0-9]+'); FAILED=0
else
  RUN=$(grep -Eo 'Tests run: [0-9]+' "$LOG" | grep -Eo '[0-9]+' | tail -1 || true)
  FAILED=$(grep -Eo 'Failures: [0-9]+' "$LOG" | grep -Eo '[0-9]+' | tail -1 || true)
  RUN=${RUN:-0}; FAILED=${FAILED:-1}
fi
if ! grep -q '^OK\|^Tests run' "$LOG"; then
  echo "no JUnit summary in $LOG: the test run did not complete"
  exit 1
fi
echo "$((RUN - FAILED)) passed, $FAILED failed"
[[ $STATUS -eq 0 && $FAILED -eq 0 ]]

#!/bin/sh
# make test-load: `make test` three times in a row while busy loops keep both CPUs busy, as a
# loaded CI machine would. Any failure fails the whole run. The loops are ended by pid.
# PYZFS_LOAD_LOOPS: how many busy loops (2; 1 when another job, a fuzzer say, keeps a CPU busy).
set -u
cd "$(dirname "$0")/.."
loops=""
trap 'for p in $loops; do kill "$p" 2>/dev/null; done' EXIT
# A trap that does not exit would let the loop below start the next run.
trap 'exit 130' INT
trap 'exit 143' TERM
n=0
while [ "$n" -lt "${PYZFS_LOAD_LOOPS:-2}" ]; do
  n=$((n + 1))
  sh -c 'while :; do :; done' &
  loops="$loops $!"
done
status=0
summary=""
for n in 1 2 3; do
  start=$(date +%s)
  if make --no-print-directory test > ".build/test-load-$n.log" 2>&1; then result=passed; else result=FAILED; status=1; fi
  line=$(grep -E 'Test run with [0-9]+ tests' ".build/test-load-$n.log" | tail -1 | sed 's/^[^A-Za-z]*//')
  summary="$summary
run $n: $result in $(( $(date +%s) - start )) s: $line (log: .build/test-load-$n.log)"
done
echo "make test-load, ${PYZFS_LOAD_LOOPS:-2} busy loop(s) on $(nproc) CPUs:$summary"
exit $status

#!/bin/bash
# usage: agree_long.sh SETNAME BUDGET_S -- profiles mobilenet_v3_large on core 0, 1 thread, default precision, the given budget
set -u
SET=$1; BUDGET=$2; OUT=/work/notes/agree/$SET; mkdir -p $OUT
cd /work/main
for m in mobilenet_v3_large; do
  echo "$(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg) start $m budget $BUDGET" | tee -a $OUT/log.txt
  .venv/bin/edgesim profile $m --device-name agree-$SET --threads 1 --cores 0 --time-budget $BUDGET --out $OUT/$m.json > $OUT/$m.log 2>&1
  echo "$(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg) end $m rc=$?" | tee -a $OUT/log.txt
done

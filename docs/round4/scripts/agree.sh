#!/bin/bash
# usage: agree.sh SETNAME   -- profiles 3 models on core 0, 1 thread, default precision/budget
set -u
SET=$1; OUT=/work/notes/agree/$SET; mkdir -p $OUT
cd /work/main
for m in resnet18 densenet201 mobilenet_v3_large; do
  echo "$(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg) start $m" | tee -a $OUT/log.txt
  .venv/bin/edgesim profile $m --device-name agree-$SET --threads 1 --cores 0 --out $OUT/$m.json > $OUT/$m.log 2>&1
  echo "$(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg) end $m rc=$?" | tee -a $OUT/log.txt
done

#!/usr/bin/env bash
# Device helper: regenerate the numbers in docs/ (SNFL small scale, SNFL attack, privacy defenses,
# default attack) in parallel, each pinned to its own CPU cores. Results land in $OUT.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=$PWD/src:/tmp/site PYTHONUNBUFFERED=1 COLUMNS=160
sf="python3 -m spikefed"
( OMP_NUM_THREADS=1 taskset -c 0-9 timeout 560 $sf reproduce snfl --scale small --workers 10 --out /tmp/snfl > /tmp/snfl.log 2>&1
  echo "snfl rc=$?"; tail -2 /tmp/snfl.log
  for f in $(find /tmp/snfl -name '*.md' | sort); do echo "## FILE $f"; cat "$f"; done > "$OUT/snfl_all.md" ) &
( OMP_NUM_THREADS=2 taskset -c 10-11 timeout 560 $sf reproduce snfl-attack --out /tmp/sa > /tmp/sa.log 2>&1
  echo "snfl-attack rc=$?"; tail -2 /tmp/sa.log; cp /tmp/sa/summary.md "$OUT/snfl_attack.md" ) &
( OMP_NUM_THREADS=2 taskset -c 12-13 timeout 560 $sf attack configs/attack_defenses.yaml --out /tmp/def > /tmp/def.log 2>&1
  echo "defenses rc=$?"; tail -2 /tmp/def.log; cp /tmp/def/summary.md "$OUT/defenses.md" ) &
( OMP_NUM_THREADS=2 taskset -c 14-15 timeout 560 $sf attack --out /tmp/att > /tmp/att.log 2>&1
  echo "attack rc=$?"; tail -2 /tmp/att.log; cp /tmp/att/summary.md "$OUT/attack_default.md"; cp /tmp/att/reconstructions.png "$OUT/" ) &
wait

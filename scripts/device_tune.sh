#!/usr/bin/env bash
# Device helper: time candidate default configs pinned to 2 CPU cores each (mimics the CI machine).
# Reads "NAME --set k=v ..." lines on stdin; prints wall time, final accuracy and per-round accuracy.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=$PWD/src:/tmp/site OMP_NUM_THREADS=2 PYTHONUNBUFFERED=1
i=0
while read -r name sets; do
  cores="$((2*i)),$((2*i+1))"
  ( start=$(date +%s); taskset -c "$cores" timeout 560 python3 -m spikefed run --out "/tmp/runs/$name" $sets > "/tmp/$name.log" 2>&1
    echo "== $name: $(( $(date +%s) - start )) s rc=$? :: $(grep -E 'final|error' /tmp/$name.log | tr '\n' ' ')"
    python3 -c "import json,sys; print([round(json.loads(l).get('server_acc') or 0,3) for l in open('/tmp/runs/$name/metrics.jsonl')])" 2>/dev/null ) &
  i=$((i+1))
done
wait

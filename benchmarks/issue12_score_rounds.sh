#!/bin/bash
# Scoring-only rounds, alternating code versions (head, new, head, new, ...), from the repo root:
#   git archive c299c69 detectors | tar -x -C /tmp/head && cp -r benchmarks /tmp/head/
#   HEAD_EXPORT=/tmp/head bash benchmarks/issue12_score_rounds.sh [--models gan]
# Rows of benchmarks.scoring_cpu_throughput, one JSON line each, labelled head / new.
export VIGIL_DATASETS_DIR=${VIGIL_DATASETS_DIR:-$PWD/../shared/datasets}
PY=$PWD/.venv/bin/python
OUT=${OUT:-$PWD/benchmarks/results/issue12_score_rounds.jsonl}
for r in 1 2 3 4; do
  for v in head new; do
    dir=${HEAD_EXPORT:?git archive of the previous commit, with this benchmarks/ copied in}; [ $v = new ] && dir=$PWD
    (cd $dir && nice -n 10 timeout 600 $PY -m benchmarks.scoring_cpu_throughput --label $v --round $r --no-fit --repeats 7 --out $OUT "$@")
  done
done

#!/usr/bin/env bash
# The regression study (docs/regression-study.md): run from the repository root after `make install`.
# Training settings were chosen on a validation split of each training set (scripts/tune.py, see the study).
set -euo pipefail
UCI=../shared/data/uci/UCI_Datasets
OUT=docs/regression-study/runs
COMMON="--strategies random,llal,llal-mse,coreset,mc-variance,dnal --trials 3 --cycles 10 --initial 20 --budget 20
        --subset 0 --batch-size 16 --split 0 --parallel-trials 2 --quiet"
run() { local name=$1; shift; [ -f $OUT/$name/store.sqlite ] && .venv/bin/activeloss run --resume --out $OUT/$name --quiet \
        || .venv/bin/activeloss run "$@" $COMMON --out $OUT/$name; }
run concrete --dataset uci:$UCI/concrete --epochs 200 --lr 0.03
run energy   --dataset uci:$UCI/energy   --epochs 100 --lr 0.03
run kin8nm   --dataset uci:$UCI/kin8nm   --epochs 100 --lr 0.01
run diabetes --dataset diabetes --epochs 100 --lr 0.001
for name in concrete energy kin8nm diabetes; do
    .venv/bin/activeloss report $OUT/$name --out docs/regression-study/$name \
        --markdown docs/regression-study/$name/tables.md --csv docs/regression-study/$name/summary.csv > /dev/null
done

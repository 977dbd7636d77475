#!/usr/bin/env bash
# How the study's training settings were chosen: on a validation split (20 %) of each TRAINING set,
# 100 random labels (80 for diabetes), 3 seeds, plain training (scripts/tune.py); the test splits are never read.
set -euo pipefail
UCI=../shared/data/uci/UCI_Datasets
for name in concrete energy kin8nm; do
    echo "### $name"; echo
    .venv/bin/python scripts/tune.py --dataset uci:$UCI/$name --labels 100 --grid epochs=100,200,300 lr=0.003,0.01,0.03
    echo
done
echo "### diabetes"; echo
.venv/bin/python scripts/tune.py --dataset diabetes --labels 80 --grid epochs=30,100,300 lr=0.001,0.003,0.01,0.03

#!/usr/bin/env bash
# Everything a GPU session should measure and check, in one command (about 6 minutes on an H200):
#   bash bench/gpu.sh [OUTDIR]          # figures and logs go to OUTDIR (default: bench-gpu)
# It uses the machine's own python3 with PyTorch (no install step: GPU machines may be offline)
# and the checkout's src/. Every step has its own time limit, so one slow step cannot eat the
# others' time; docs/performance.md holds the figures it printed, with the device named.
set -u
OUT=${1:-bench-gpu}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
run() {  # run NAME SECONDS COMMAND...: log to OUT/NAME.txt, the tail to OUT/summary.txt
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  echo "== $name: $*" | tee -a "$OUT/summary.txt"
  timeout "$limit" "$@" >"$OUT/$name.txt" 2>&1
  echo "   exit $? after $((SECONDS - t0)) s" | tee -a "$OUT/summary.txt"
  tail -n 12 "$OUT/$name.txt" | tee -a "$OUT/summary.txt"
}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$OUT/device.txt" 2>&1
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" >>"$OUT/device.txt" 2>&1
cat "$OUT/device.txt" | tee -a "$OUT/summary.txt"
PROTO="--device cuda --n 50000 --test 10000 --initial 1000 --budget 1000 --subset 10000"
# training throughput per objective, eager and with --cuda-graphs, at the papers' batch and DNAL's
run throughput-128   70 $PY bench/bench_throughput.py --device cuda --n 20000 --eval-n 50000 --eval-batch-size 2048 --repeats 2
run throughput-64    40 $PY bench/bench_throughput.py --device cuda --n 20000 --batch-size 64 --repeats 2 --no-formats --strategies random,dnal
# the Learning Loss protocol, 3 cycles x 30 epochs, eager then graphed (the default), extrapolated to 10 x 200
run protocol-eager   60 $PY bench/bench_protocol.py $PROTO --cycles 3 --epochs 30 --no-cuda-graphs
run protocol-graphs  45 $PY bench/bench_protocol.py $PROTO --cycles 3 --epochs 30
# the gradient-norm query over 10k candidates: first call of a fresh process and warm, two conv forms
run gradnorm         45 $PY bench/bench_gradnorm.py --device cuda --n 10000 --batch-size 1000 --loop-n 100 --repeats 2
run gradnorm-grouped 40 $PY bench/bench_gradnorm.py --device cuda --n 10000 --batch-size 1000 --loop-n 20 --repeats 2 --conv grouped
# several trials at once on the one GPU (graphed, the default): aggregate throughput
run parallel-1       40 $PY bench/bench_protocol.py $PROTO --cycles 2 --epochs 20 --trials 2 --parallel-trials 1
run parallel-4       40 $PY bench/bench_protocol.py $PROTO --cycles 2 --epochs 20 --trials 4 --parallel-trials 4
# the CUDA tests: the default path, --deterministic, parallel trials, the recorded graphs' bits
run gpu-tests       150 $PY -m pytest -q -p no:cacheprovider tests/test_gpu.py
echo "total $SECONDS s" | tee -a "$OUT/summary.txt"

#!/usr/bin/env bash
# Everything a GPU session should measure and check, in one command (about 25 minutes on an H100):
#   bash bench/gpu.sh [OUTDIR]          # figures and logs go to OUTDIR (default: bench-gpu)
# It uses the machine's own python3 with PyTorch (no install step: GPU machines may be offline)
# and the checkout's src/. Commit the files it writes under docs/performance/ with the device name.
set -u
OUT=${1:-bench-gpu}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
run() { local name=$1; shift; echo "== $name: $*" | tee -a "$OUT/summary.txt"; "$@" >"$OUT/$name.txt" 2>&1; echo "   exit $?" | tee -a "$OUT/summary.txt"; tail -n 6 "$OUT/$name.txt" | tee -a "$OUT/summary.txt"; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$OUT/device.txt" 2>&1
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" >>"$OUT/device.txt" 2>&1
run gpu-tests       $PY -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_selection.py tests/test_performance.py
run throughput      $PY bench/bench_throughput.py --device cuda --n 20000 --eval-n 50000 --eval-batch-size 2048 --repeats 3 --compile
run gradnorm        $PY bench/bench_gradnorm.py --device cuda --n 10000 --batch-size 1000 --loop-n 200 --repeats 3
run kcenter         $PY bench/bench_kcenter.py --device cuda --n 10000 --m 5000 --dim 512 --k 1000
run protocol-short  $PY bench/bench_protocol.py --device cuda --cycles 2 --epochs 20
run parallel-1      $PY bench/bench_protocol.py --device cuda --cycles 2 --epochs 20 --trials 2 --parallel-trials 1
run parallel-2      $PY bench/bench_protocol.py --device cuda --cycles 2 --epochs 20 --trials 2 --parallel-trials 2
# the full LL4AL protocol (10 cycles x 200 epochs, 1k -> 10k labels, subset 10k): the 8-minute target
run protocol-full   $PY bench/bench_protocol.py --device cuda --cycles 10 --epochs 200

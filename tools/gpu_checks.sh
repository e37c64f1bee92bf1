#!/usr/bin/env bash
# The checks only a GPU can make, in one go, logs under DIR (default gpu-logs/).
#
#     bash tools/gpu_checks.sh [DIR] [PART ...]
#
# PART is any of: tests online detector fp16 latency train-probe (default: all).
#   tests        pytest -m gpu (CuPy kernels and device step vs the NumPy/Numba
#                references, CUDA graphs, detector runtimes vs eager)
#   online       bench/online.py --backend cuda at 256/60, 512/300, 512/1000,
#                with and without CUDA graphs
#   detector     bench/detector.py speed on CUDA (eager fp32, torch.compile fp16)
#   fp16         tools/detector_fp16_diag.py: where fp16 outputs depart from float32
#   latency      rtcal bench latency with the cuda backend, 512x512, 1000 neurons, 1 kHz
#   train-probe  seconds per training step of the default and gpu presets on CUDA
# Each part runs under its own time limit and a failure does not stop the rest;
# every command is echoed into DIR/summary.log with its exit status.
set -u
DIR=${1:-gpu-logs}
shift || true
PARTS=${*:-tests online detector fp16 latency train-probe}
mkdir -p "$DIR"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}

step() {  # step NAME LIMIT_S CMD...
    local name=$1 limit=$2
    shift 2
    echo "== $name: $*" | tee -a "$DIR/summary.log"
    local t0=$SECONDS
    timeout "$limit" "$@" >"$DIR/$name.log" 2>&1
    local rc=$?
    echo "   rc=$rc in $((SECONDS - t0)) s" | tee -a "$DIR/summary.log"
    tail -n 25 "$DIR/$name.log" >>"$DIR/summary.log"
}

{ nvidia-smi -L; $PY -c "import torch, cupy, numba; print('torch', torch.__version__,
'cuda', torch.version.cuda, '| cupy', cupy.__version__, '| numba', numba.__version__)"; } \
    >>"$DIR/summary.log" 2>&1

for part in $PARTS; do
    case $part in
    tests)
        step gpu_tests 240 $PY -m pytest -q -m gpu -p no:cacheprovider tests ;;
    online)
        step online_256 120 $PY bench/online.py --backend cuda --sizes 256 --runs 2
        step online_512_1000 180 $PY bench/online.py --backend cuda --sizes 512 --neurons 1000 --runs 2
        step online_512_1000_graphs 180 $PY bench/online.py --backend cuda --cuda-graphs --sizes 512 --neurons 1000 --runs 2 ;;
    detector)
        step detector_cuda 300 $PY bench/detector.py --skip-ablation --device cuda --runtimes eager compile --threads 8 --runs 5 ;;
    fp16)
        step fp16_diag_tiny 150 $PY tools/detector_fp16_diag.py
        step fp16_diag_shipped 150 $PY tools/detector_fp16_diag.py --shipped ;;
    latency)
        printf 'backend = "cuda"\n' >"$DIR/cuda.toml"
        step latency_cuda_1khz 240 $PY -m rtcal bench latency --config "$DIR/cuda.toml" --size 512 512 --neurons 1000 --fps 1000 --duration 30 --detect-every 0 --json "$DIR/latency_cuda.json" ;;
    train-probe)
        step train_probe_default 200 $PY -m rtcal train --preset default --device cuda --steps 40 --workers 12 --out /tmp/probe_default --no-plot
        step train_probe_gpu 200 $PY -m rtcal train --preset gpu --device cuda --steps 40 --workers 12 --out /tmp/probe_gpu --no-plot ;;
    *) echo "unknown part $part" | tee -a "$DIR/summary.log" ;;
    esac
done

#!/usr/bin/env bash
# The GPU figures of issue 15 (speed against the reference code) in one script: the GPU-only equality
# tests of the fast paths first, then evaluation training against a plain loop, then every distillation
# method against its reference loop (MTT's memory against syn_steps and at 50 images per class
# included). Each step has its own time limit and writes as it goes, so a step cut short still leaves
# its output in $OUT.
#
#   OUT=/tmp/gpu DDCAL_DATA=.devdata bash benchmarks/gpu_speed.sh                   # on a CUDA machine
#   OUT=/tmp/gpu DEVICE=cpu QUICK=1 bash benchmarks/gpu_speed.sh                    # smoke test of the script
#
# Needs DDCAL_DATA (folder with cifar10-jpg.tar.gz) unless QUICK=1. Wheels in .whl/ are installed
# into /tmp/site on a machine without skorch / imbalanced-learn (benchmarks/_device_env.sh).
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:?set OUT to a folder for the results}
DEVICE=${DEVICE:-cuda}
PY=${PY:-python3}
mkdir -p "$OUT"
source benchmarks/_device_env.sh

if [ "${QUICK:-0}" = 1 ]; then
    CLS=(--dataset digits --epochs 20 --repeat 1)
    REF=(--dataset digits --iterations 2 --steps 2 3 --ipc 2 --ipc-large 3)
else
    CLS=(--dataset cifar10 --epochs 1000 --repeat 2)
    REF=(--dataset cifar10 --iterations ${ITERATIONS:-10} --gm-iterations 1)
fi
SECONDS=0
timeout ${TESTS_SECONDS:-150} $PY -m pytest -m gpu -q -p no:cacheprovider -o addopts="" \
    tests/test_trajectory_matching.py tests/test_cuda_graphs.py tests/test_classifier_fast_path.py 2>&1 | tail -n 25 | tee "$OUT/gpu_tests.txt"
echo "gpu tests done at ${SECONDS} s"
timeout ${CLS_SECONDS:-100} $PY benchmarks/bench_classifier.py --device "$DEVICE" "${CLS[@]}" 2>&1 \
    | tee "$OUT/bench_classifier.md"
echo "bench_classifier done at ${SECONDS} s"
timeout ${REF_SECONDS:-330} $PY benchmarks/bench_reference.py --device "$DEVICE" "${REF[@]}" \
    --mtt-variants '{"cuda_graphs": false}' --out "$OUT/bench_reference.md" 2>&1 | tee "$OUT/bench_reference.log"
echo "bench_reference done at ${SECONDS} s"
ls -la "$OUT"

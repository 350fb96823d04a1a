#!/usr/bin/env bash
# The GPU figures of the evaluation protocol (issue 11) in one script: k networks batched against one
# after another, then DM on CIFAR-10 at the literature's budget evaluated by the evaluator. Each step
# has its own time limit and writes as it goes, so a step cut short still leaves its output.
#
#   OUT=/tmp/gpu DDCAL_DATA=.devdata bash benchmarks/gpu_checks.sh                  # on a CUDA machine
#   OUT=/tmp/gpu DEVICE=cpu QUICK=1 bash benchmarks/gpu_checks.sh                   # smoke test of the script
#
# Needs DDCAL_DATA (folder with cifar10-jpg.tar.gz). On a machine without skorch / imbalanced-learn,
# put their wheels in .whl/ and they are installed into /tmp/site first. A set from an earlier run
# (SET=path.npz) skips the distillation.
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:?set OUT to a folder for the results}
DEVICE=${DEVICE:-cuda}
PY=${PY:-python3}
mkdir -p "$OUT"
source benchmarks/_device_env.sh

if [ "${QUICK:-0}" = 1 ]; then
    NETS=(--dataset digits --epochs 5 --n-networks 3)
    DM=(--dataset digits --iterations 20)
    EVAL=(--dataset digits --epochs 10 --n-networks 2 --architectures convnet_d2)
    XARCH=(--dataset digits --epochs 5 --n-networks 2 --architectures convnet_d1 --no-random-real)
else
    NETS=(--dataset cifar10 --epochs 300 --n-networks 10)
    DM=(--dataset cifar10 --iterations ${DM_ITERATIONS:-20000})
    EVAL=(--dataset cifar10 --epochs 1000 --n-networks 5 --protocol reference)
    XARCH=(--dataset cifar10 --epochs 300 --n-networks 3 --architectures alexnet vgg11 resnet18 --no-random-real)
fi
SECONDS=0
SET=${SET:-$OUT/dm_set.npz}
if [ ! -f "$SET" ]; then
    timeout ${DM_SECONDS:-380} $PY benchmarks/literature_dm.py --device "$DEVICE" "${DM[@]}" --out "$SET" \
        --time-budget ${DM_BUDGET:-300} 2> "$OUT/dm.log" | tee "$OUT/dm.txt"
    echo "distillation exit $? at ${SECONDS} s"
fi
timeout ${EVAL_SECONDS:-120} $PY -m ddcal_sklearn.apps.evaluate "$SET" --device "$DEVICE" "${EVAL[@]}" \
    --out "$OUT/evaluation.md" --json "$OUT/evaluation.json" --checkpoint-dir /tmp/eval-ckpt 2> "$OUT/evaluate.log"
echo "evaluation exit $? at ${SECONDS} s"
timeout ${NETS_SECONDS:-60} $PY benchmarks/bench_networks.py --device "$DEVICE" "${NETS[@]}" 2>&1 \
    | tee "$OUT/bench_networks.md"
echo "bench_networks done at ${SECONDS} s"
timeout ${XARCH_SECONDS:-90} $PY -m ddcal_sklearn.apps.evaluate "$SET" --device "$DEVICE" "${XARCH[@]}" \
    --out "$OUT/evaluation_architectures.md" 2> "$OUT/evaluate_architectures.log"
echo "cross-architecture exit $? at ${SECONDS} s"
tail -n 3 "$OUT"/*.log
ls -la "$OUT"

#!/usr/bin/env bash
# The GPU figures of the project in one script: distillation benchmark, evaluation-training
# benchmark, then the CIFAR-10 calibration study for the time left. Each step has its own time
# limit and writes as it goes, so a step cut short still leaves its output.
#
#   OUT=/tmp/gpu bash benchmarks/gpu_checks.sh                      # on a CUDA machine
#   OUT=/tmp/gpu DEVICE=cpu QUICK=1 bash benchmarks/gpu_checks.sh   # smoke test of the script itself
#
# Needs DDCAL_DATA (folder with cifar10-jpg.tar.gz). On a machine without skorch /
# imbalanced-learn, put their wheels in .whl/ and they are installed into /tmp/site first.
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:?set OUT to a folder for the results}
DEVICE=${DEVICE:-cuda}
STUDY_SECONDS=${STUDY_SECONDS:-380}
PY=${PY:-python3}
mkdir -p "$OUT"
if [ -d .whl ] && ! $PY -c "import skorch, imblearn" 2>/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/skorch-*.whl .whl/imbalanced_learn-*.whl || exit 1
    # scikit-learn only where the installed one is older than the 1.7 the project needs
    $PY -c "import sklearn, sys; sys.exit(tuple(map(int, sklearn.__version__.split('.')[:2])) < (1, 7))" ||
        $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
            .whl/scikit_learn-*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
export DDCAL_CACHE=${DDCAL_CACHE:-/tmp/ddcal-cache}   # decode the CIFAR-10 JPEGs once for all steps
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null | tee "$OUT/hardware.txt"
$PY -c "import torch, sklearn, skorch; print('torch', torch.__version__, 'sklearn', sklearn.__version__, 'skorch', skorch.__version__)" \
    | tee -a "$OUT/hardware.txt"

if [ "${QUICK:-0}" = 1 ]; then
    BENCH=(--dataset digits --iterations 2 --steps 2 4 --ipc-large 0)
    CLS=(--dataset digits --epochs 20)
    STUDY=(--dataset cifar10 --methods dm mtt --seeds 0 --quick --threads 1)
else
    BENCH=(--dataset cifar10 --iterations 10)
    CLS=(--dataset cifar10 --epochs 1000)
    STUDY=(--dataset cifar10 --methods dm mtt --seeds 0 1 2)
fi
SECONDS=0
timeout 150 $PY benchmarks/bench_distill.py --device "$DEVICE" "${BENCH[@]}" 2>&1 | tee "$OUT/bench_distill.md"
echo "bench_distill: ${SECONDS} s"
timeout 60 $PY benchmarks/bench_classifier.py --device "$DEVICE" "${CLS[@]}" 2>&1 | tee "$OUT/bench_classifier.md"
echo "bench_classifier done at ${SECONDS} s"
timeout "$STUDY_SECONDS" $PY -m ddcal_sklearn.apps.study --device "$DEVICE" --output-dir outputs/study-cifar10 \
    "${STUDY[@]}" > "$OUT/study_results.md" 2> "$OUT/study.log"
echo "study exit $? at ${SECONDS} s"
# a study stopped by its limit has written no report yet: write it from the cache (seconds)
timeout 60 $PY -m ddcal_sklearn.apps.study --device "$DEVICE" --output-dir outputs/study-cifar10 "${STUDY[@]}" \
    --report-only > "$OUT/study_results.md" 2>> "$OUT/study.log"
tail -n 5 "$OUT/study.log"
# what comes back from a device is limited (16 MB a file): the report, figures and the per-network
# JSON; the experts' trajectories and the synthetic sets stay behind (rerun to rebuild them)
(cd outputs/study-cifar10 && tar czf "$OUT/study.tar.gz" --exclude='cache/experts' --exclude='cache/*.npz' .)
ls -la "$OUT"

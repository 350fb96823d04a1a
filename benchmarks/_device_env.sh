# Sourced by the GPU scripts (gpu_checks.sh, gpu_speed.sh): installs the wheels in .whl/ into /tmp/site on a
# machine that lacks skorch / imbalanced-learn (or has scikit-learn older than 1.7), sets PYTHONPATH, the
# decoded-CIFAR-10 cache, and writes the hardware to $OUT/hardware.txt. Needs OUT and PY.
if [ -d .whl ] && ! $PY -c "import skorch, imblearn" 2>/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/skorch-*.whl .whl/imbalanced_learn-*.whl || exit 1
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

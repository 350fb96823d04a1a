"""Reproduce the study of Zhu et al. (ICCV 2023): are networks trained on distilled data
over-confident, and which calibration fixes them?

Same as the ``ddcal-reproduce`` console script. Examples::

    python examples/reproduce_paper.py --quick                          # seconds: checks the pipeline
    python examples/reproduce_paper.py                                  # digits, DM + MTT, 3 seeds (CPU)
    python examples/reproduce_paper.py --dataset fashion-mnist --methods dm
    python examples/reproduce_paper.py --dataset cifar10 --device cuda  # the GPU study of docs/results.md

It writes ``results.md`` (tables, the paper's claims checked), ``results.json`` and PNG figures
to ``--output-dir`` (default ``outputs/study-<dataset>``). Interrupt it at any time: a rerun with
the same arguments resumes from the cache there; ``--report-only`` rebuilds the report.
Every hyper-parameter is chosen on a held-out real validation split, never on the test set.
"""

from ddcal_sklearn.apps.study import main

if __name__ == "__main__":
    main()

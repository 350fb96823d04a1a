"""
A grid search on a Dask cluster
===============================

scikit-learn's searches run their fits through joblib, and joblib runs on Dask: inside
``joblib.parallel_config(backend="dask")``, ``GridSearchCV(..., n_jobs=-1)`` sends every
(candidate, fold) fit to the workers of a ``dask.distributed`` cluster. Nothing of
ddcal-sklearn changes: the estimators travel to the workers by pickle, each worker
resolves ``device="auto"`` on its own machine (its GPU if it has one), and the
``random_state`` of every part makes each fit the same wherever it runs, so the search
equals the one of the default backend.

Here the cluster is a ``distributed.LocalCluster`` of 2 worker processes with 1
thread each on this machine; on a real cluster only the line that makes ``cluster``
changes (:doc:`/scale_out` has the commands for one worker per GPU, SLURM and
Kubernetes). The settings are tiny (digits, 3 images per class, 20 distillation
iterations, a one-layer ConvNet) so that it runs in seconds on a CPU.

Worker processes are started with ``spawn``, which imports this script again in each of
them: every line that runs something sits under ``if __name__ == "__main__":``, as in
any script that starts a Dask ``LocalCluster`` (sphinx-gallery runs the example as
``__main__``). The ``dask`` extra installs Dask: ``pip install 'ddcal-sklearn[dask]'``.
"""

# %%
# A local cluster: 2 worker processes, 1 thread each
# --------------------------------------------------
# The worker processes are started by a nanny with ``OMP_NUM_THREADS=1`` (Dask's
# ``distributed.nanny.pre-spawn-environ``), so torch uses one thread in each: two
# workers on two cores do not oversubscribe them. ``client.run`` asks every worker.
import logging
import os

import joblib
import matplotlib.pyplot as plt
import numpy as np
import torch
from distributed import Client, LocalCluster
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split

from ddcal_sklearn import (
    ConvNetClassifier,
    DatasetDistiller,
    DistilledClassifier,
    MaskedTemperatureCalibrator,
    ece_scorer,
    load_digits_images,
)
from ddcal_sklearn.utils import resolve_device

if __name__ == "__main__":
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=logging.ERROR)
    client = Client(cluster)

    def worker_setup():  # runs on each worker
        return {"pid": os.getpid(), "torch threads": torch.get_num_threads(),
                "device='auto' is": str(resolve_device("auto"))}

    for address, setup in client.run(worker_setup).items():
        print(address, setup)

# %%
# The search: MDT and MTS mask ratios of a distil-train-calibrate model
# ---------------------------------------------------------------------
# The grid is the one of :ref:`sphx_glr_auto_examples_plot_grid_search_mask_ratios.py`,
# smaller. ``scatter=[X_train, y_train]`` sends the training data to every worker once,
# instead of with each task (and a worker that dies loses no input of the search).
if __name__ == "__main__":
    X, y = load_digits_images(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
    model = DistilledClassifier(
        DatasetDistiller(ipc=3, n_iterations=20, batch_real=32, net_params={"depth": 1, "width": 16},
                         random_state=0),
        ConvNetClassifier(max_epochs=30, module__depth=1, module__width=16, random_state=0),
        calibrator=MaskedTemperatureCalibrator(random_state=0),
    )
    param_grid = {"distiller__mdt_mask_ratio": [0.0, 0.3], "calibrator__mask_ratio": [0.0, 0.5]}

    def make_search(n_jobs):
        return GridSearchCV(model, param_grid, scoring=ece_scorer, n_jobs=n_jobs,
                            cv=StratifiedKFold(n_splits=2, shuffle=True, random_state=0))

    with joblib.parallel_config(backend="dask", scatter=[X_train, y_train]):
        search = make_search(n_jobs=-1).fit(X_train, y_train)
    print("best parameters (Dask):", search.best_params_)
    print(f"test ECE of the refitted best candidate: {-search.score(X_test, y_test):.3f}")

# %%
# The same search with the default backend
# ----------------------------------------
# In this process, one fit after another. Same ``random_state``, same thread count (one
# torch thread here too): the same fits, so the same scores, bit for bit on a CPU.
if __name__ == "__main__":
    torch.set_num_threads(1)
    reference = make_search(n_jobs=None).fit(X_train, y_train)
    print("best parameters (default backend):", reference.best_params_)
    print("same scores:", np.array_equal(search.cv_results_["mean_test_score"],
                                         reference.cv_results_["mean_test_score"]))

# %%
# The held-out ECE of every candidate
# -----------------------------------
# Mean and standard deviation over the two folds of the Dask search; the dots are the
# default backend's means.
if __name__ == "__main__":
    labels = [f"MDT {p['distiller__mdt_mask_ratio']}\nMTS {p['calibrator__mask_ratio']}"
              for p in search.cv_results_["params"]]
    positions = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(positions, -search.cv_results_["mean_test_score"], yerr=search.cv_results_["std_test_score"],
           color="tab:blue", alpha=0.7, capsize=3, label="Dask, 2 workers")
    ax.plot(positions, -reference.cv_results_["mean_test_score"], "o", color="black", label="default backend")
    ax.set(xticks=positions, xticklabels=labels, ylabel="held-out ECE (2 folds)",
           title="ECE per candidate: the Dask search equals the default one")
    ax.legend()
    fig.tight_layout()
    plt.show()

# %%
# Closing the cluster
# -------------------
if __name__ == "__main__":
    client.close()
    cluster.close()

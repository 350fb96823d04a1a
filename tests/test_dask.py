"""The library's searches on a ``dask.distributed`` cluster (docs/scale_out.rst).

``GridSearchCV(..., n_jobs=-1)`` inside ``joblib.parallel_config(backend="dask")`` on a
``LocalCluster`` of 2 worker processes with 1 thread each, on the CPU: the estimators
travel to the workers by pickle, each worker resolves ``device="auto"`` itself, and the
search equals the one of the default backend (same best parameters, same scores: bit
for bit on the CPU, the workers running torch with 1 thread as this process does). Fits
of one search share a ``checkpoint_dir`` (each run its own files, named after its
fingerprint; a run two candidates share is computed once), and a worker killed in the
middle of a fit costs the search nothing: the scheduler runs the task again
(``distributed.scheduler.allowed-failures``) and the fit resumes from its checkpoint.
"""

import json
import numbers
import os
import re
import signal

import joblib
import numpy as np
import pytest
import torch
from imblearn.pipeline import Pipeline
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.utils._param_validation import Interval

from ddcal_sklearn import (
    ConvNetClassifier,
    DatasetDistiller,
    DistilledClassifier,
    DistributionMatching,
    MaskedTemperatureCalibrator,
    ece_scorer,
    evaluate_synthetic_set,
)
from ddcal_sklearn.utils import fingerprint_digest, resolve_device

# the `dask` extra (also in `test`): without it the module is skipped
distributed = pytest.importorskip("distributed")
dask = pytest.importorskip("dask")

pytestmark = pytest.mark.slow

N_ITERATIONS, CHECKPOINT_EVERY, KILL_AFTER = 10, 4, 6  # the killed fit dies after its checkpoint at iteration 4
DISTILLER = dict(ipc=2, n_iterations=N_ITERATIONS, batch_real=16, net_params={"width": 8, "depth": 1},
                 random_state=0)
NET = dict(max_epochs=10, lr=0.05, module__depth=1, module__width=8, random_state=0)
# on the CPU a worker computes what this process computes, bit for bit (1 torch thread in both); CUDA kernels
# with atomic additions are not bitwise reproducible, so on a GPU machine the scores agree to a tolerance
EXACT = resolve_device("auto").type == "cpu"


def distiller_start(estimator, X, y):
    """A "score" that reports where the fold's distiller started: 0 fresh, > 0 from a checkpoint."""
    return estimator.distiller_.start_iteration_


SCORING = {"ece": ece_scorer, "distiller_start": distiller_start}


class DieOnce(DistributionMatching):
    """DM whose run kills its own Dask worker process (SIGKILL) once in a whole search.

    The first fit, on a Dask worker, to finish ``kill_after`` iterations creates ``marker``
    (atomically: one fit wins) with its process id and kills its process; every other
    fit, and every fit outside a worker, is plain DM (the hook changes no number).
    Workers unpickle it (and ``distiller_start``) by importing this module: pytest puts
    ``tests/`` on ``sys.path``, and the spawned worker processes inherit it.
    """

    _parameter_constraints = {"marker": [str], "kill_after": [Interval(numbers.Integral, 1, None, closed="left")]}

    def __init__(self, marker="", kill_after=KILL_AFTER):
        self.marker = marker
        self.kill_after = kill_after

    def start(self, context):
        run = super().start(context)
        after_step, steps = run.after_step, []

        def after_step_then_maybe_die(X_syn):
            after_step(X_syn)
            steps.append(1)
            if len(steps) != self.kill_after:
                return
            try:
                distributed.get_worker()
            except ValueError:  # not on a worker: never kill the test process
                return
            try:
                fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:  # another fit died already
                return
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            os.kill(os.getpid(), signal.SIGKILL)

        run.after_step = after_step_then_maybe_die
        return run


@pytest.fixture(scope="module")
def client():
    """2 worker processes, 1 thread each (the nanny starts them with OMP_NUM_THREADS=1: 1 torch thread)."""
    # a task whose worker died is run again, up to 3 times (dask's default, stated: the kill test relies on it);
    # the scheduler reads this when it starts
    with dask.config.set({"distributed.scheduler.allowed-failures": 3}):
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      dashboard_address=None) as cluster, distributed.Client(cluster) as client:
            yield client


@pytest.fixture(scope="module")
def data(digits_images):
    X, y = digits_images
    return X[:300], y[:300], X[1500:], y[1500:]


def _search(model, grid, X, y, *, dask_backend):
    search = GridSearchCV(model, grid, scoring=SCORING, refit="ece", cv=StratifiedKFold(2),
                          n_jobs=-1 if dask_backend else None)
    if dask_backend:
        # scatter: X and y go to every worker once, so losing a worker loses no input of the search
        with joblib.parallel_config(backend="dask", scatter=[X, y]):
            return search.fit(X, y)
    return search.fit(X, y)


def _assert_same_search(search, reference, X_test, key="ece"):
    assert search.best_params_ == reference.best_params_
    assert search.cv_results_["params"] == reference.cv_results_["params"]
    compare = np.testing.assert_array_equal if EXACT else \
        (lambda a, b: np.testing.assert_allclose(a, b, atol=1e-4))
    for name in [name for name in reference.cv_results_ if re.fullmatch(rf"(split\d+|mean|std)_test_{key}", name)]:
        compare(search.cv_results_[name], reference.cv_results_[name])
    compare(search.best_estimator_.predict_proba(X_test), reference.best_estimator_.predict_proba(X_test))


def test_workers_use_one_torch_thread_and_resolve_auto_themselves(client):
    on_workers = client.run(lambda: (torch.get_num_threads(), str(resolve_device("auto")), os.getpid()))
    assert len(on_workers) == 2 and len({pid for *_, pid in on_workers.values()}) == 2
    assert {(threads, device) for threads, device, _ in on_workers.values()} == \
        {(1, "cuda" if torch.cuda.is_available() else "cpu")}


def test_a_dask_search_equals_the_default_backend_and_its_fits_share_a_checkpoint_dir(client, data, tmp_path):
    X, y, X_test, _ = data
    ckpt = tmp_path / "ckpt"
    model = DistilledClassifier(
        DatasetDistiller(**DISTILLER, checkpoint_dir=str(ckpt), checkpoint_every=CHECKPOINT_EVERY),
        ConvNetClassifier(**NET, checkpoint_dir=str(ckpt)),
        calibrator=MaskedTemperatureCalibrator(random_state=0))
    grid = {"distiller__mdt_mask_ratio": [0.0, 0.3], "calibrator__mask_ratio": [0.0, 0.5]}
    search = _search(model, grid, X, y, dask_backend=True)
    reference = _search(model.set_params(distiller__checkpoint_dir=None, estimator__checkpoint_dir=None), grid,
                        X, y, dask_backend=False)
    _assert_same_search(search, reference, X_test)

    # one file per run, named after its fingerprint: 2 ratios x 2 folds + the refit on all of X, for the
    # distiller and for the network; the two calibrator candidates of a (ratio, fold) share both runs
    for stem in ("distiller", "classifier"):
        files = sorted(ckpt.glob(f"{stem}-*.pt"))
        fingerprints = [json.loads(torch.load(path, weights_only=True)["fingerprint"]) for path in files]
        assert len(files) == 5
        assert [path.stem for path in files] == [f"{stem}-{fingerprint_digest(f)}" for f in fingerprints]
    assert not list(ckpt.glob("*.tmp"))
    # each shared distiller run was computed once: one candidate ran it (start 0) while the other waited
    # for its lock, or came later, and read the finished run (start n_iterations), as sequentially
    starts = np.array([search.cv_results_[f"split{k}_test_distiller_start"] for k in range(2)])
    assert (reference.cv_results_["mean_test_distiller_start"] == 0).all()
    for ratio in grid["distiller__mdt_mask_ratio"]:
        sharing = [i for i, params in enumerate(search.cv_results_["params"])
                   if params["distiller__mdt_mask_ratio"] == ratio]
        for fold in range(2):
            assert sorted(starts[fold, sharing]) == [0, N_ITERATIONS]


def test_an_imblearn_pipeline_searched_and_refitted_on_dask_equals_the_default_backend(client, data):
    X, y, X_test, _ = data
    pipe = Pipeline([("distil", DatasetDistiller(**DISTILLER)), ("net", ConvNetClassifier(**NET))])
    grid = {"distil__mdt_mask_ratio": [0.0, 0.3]}
    with joblib.parallel_config(backend="dask"):
        search = GridSearchCV(pipe, grid, scoring=ece_scorer, cv=StratifiedKFold(2), n_jobs=-1).fit(X, y)
    reference = GridSearchCV(pipe, grid, scoring=ece_scorer, cv=StratifiedKFold(2)).fit(X, y)
    _assert_same_search(search, reference, X_test, key="score")
    # GridSearchCV refits in this process; to refit on a worker (its GPU), submit the fit (docs/scale_out.rst)
    refitted = client.submit(clone(pipe).set_params(**search.best_params_).fit, X, y).result()
    np.testing.assert_allclose(refitted.predict_proba(X_test), search.best_estimator_.predict_proba(X_test),
                               rtol=0, atol=0 if EXACT else 1e-4)


def test_the_evaluator_runs_on_a_worker_as_it_runs_here(client, data):
    X, y, X_test, y_test = data
    kwargs = dict(X_val=X[200:], y_val=y[200:], n_networks=2, epochs=5, verbose=0,
                  estimator_params={"module__width": 8, "module__depth": 1})
    # one evaluation per set is one task: client.map over the sets of a study
    on_worker = client.submit(evaluate_synthetic_set, (X[:50], y[:50]), X_test, y_test, **kwargs).result()
    here = evaluate_synthetic_set((X[:50], y[:50]), X_test, y_test, **kwargs)
    if EXACT:
        assert on_worker.rows == here.rows
    else:
        for a, b in zip(on_worker.rows, here.rows, strict=True):
            assert a == pytest.approx(b, abs=1e-4)


def test_a_worker_killed_mid_fit_does_not_lose_the_search_and_its_fit_resumes(client, data, tmp_path):
    # joblib's Dask backend scatters every task argument over 1 kB to *one* worker, and a scattered argument dies
    # with its worker (no task can recompute it): the tasks that need it are then "already forgotten" and the
    # search fails. X and y are broadcast (scatter=[X, y]: every worker holds them), and 200 samples keep each
    # fold's index arrays (100 int64) under 1 kB, so a dead worker loses only its running tasks, which are retried
    X, y, X_test, _ = data
    X, y = X[:200], y[:200]
    marker = tmp_path / "killed"
    model = DistilledClassifier(
        DatasetDistiller(**DISTILLER, method=DieOnce(marker=str(marker)), checkpoint_dir=str(tmp_path / "ckpt"),
                         checkpoint_every=CHECKPOINT_EVERY),
        ConvNetClassifier(**NET))
    grid = {"distiller__mdt_mask_ratio": [0.0, 0.3]}
    workers_before = set(client.run(os.getpid).values())
    search = _search(model, grid, X, y, dask_backend=True)

    killed = int(marker.read_text())  # a worker died, SIGKILLed in the middle of a distiller fit ...
    assert killed in workers_before
    client.wait_for_workers(2, timeout=60)  # (its nanny started a new one)
    assert killed not in client.run(os.getpid).values()
    # ... after its checkpoint at iteration 4: the scheduler ran the task again, and that fit resumed from it
    starts = np.concatenate([search.cv_results_[f"split{k}_test_distiller_start"] for k in range(2)])
    assert (starts == CHECKPOINT_EVERY).sum() == 1, starts
    # (a fit that had finished in the dead worker's batch of tasks, if joblib batched any, reads its run)
    assert set(starts) <= {0, CHECKPOINT_EVERY, N_ITERATIONS}, starts
    # and the search is the one an uninterrupted search gets
    reference = _search(model.set_params(distiller__checkpoint_dir=None), grid, X, y, dask_backend=False)
    _assert_same_search(search, reference, X_test)

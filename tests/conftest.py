"""Shared, seeded, real-data fixtures.

Digits come with scikit-learn; the other real datasets live in ``../shared/datasets``
beside the checkout (or wherever ``DDCAL_DATA`` points).
"""

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "datasets"

# One torch thread for the whole run (tests and doctests) is set by the repository root conftest.py.


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA (torch.cuda.is_available() is False)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def data_root():
    """Root of the real datasets: $DDCAL_DATA, else ../shared/datasets."""
    root = Path(os.environ.get("DDCAL_DATA", SHARED_DATA))
    if not root.is_dir():
        pytest.skip(f"real datasets not found at {root}; set DDCAL_DATA")
    return root


@pytest.fixture(scope="session")
def digits_images():
    """Digits as normalised float32 images (n, 1, 8, 8) and integer labels."""
    from ddcal_sklearn.datasets import load_digits_images

    return load_digits_images(return_X_y=True)


@pytest.fixture(scope="session")
def digits_split(digits_images):
    """A seeded stratified split of digits: train / calibration / test."""
    from sklearn.model_selection import train_test_split

    X, y = digits_images
    X_tr, X_rest, y_tr, y_rest = train_test_split(
        X, y, train_size=600, stratify=y, random_state=0
    )
    X_cal, X_te, y_cal, y_te = train_test_split(
        X_rest, y_rest, train_size=500, stratify=y_rest, random_state=0
    )
    return X_tr, y_tr, X_cal, y_cal, X_te, y_te


@pytest.fixture
def wait_until():
    """``wait_until(condition, process, what)``: poll ``condition()`` while the subprocess ``process`` runs.

    Fails the test naming ``what`` if the process ends first (with its stderr) or after 120 s.
    """
    import time

    def wait(condition, process, what):
        deadline = time.monotonic() + 120
        while not condition():
            if process.poll() is not None:
                pytest.fail(f"the fit ended (exit status {process.returncode}) before {what}: "
                            f"{process.stderr.read().decode()}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} within 120 s")
            time.sleep(0.01)

    return wait


@pytest.fixture
def graphs_on_the_cpu(monkeypatch):
    """CUDA graphs stood in for on the CPU: a "replay" reruns the captured body and writes into the same
    output tensors, as a CUDA graph writes into its static memory, so everything around the graphs (the
    static inputs, their keys, the shared outputs) runs as on a GPU and can be compared with the eager path."""
    from ddcal_sklearn.distillation._graphs import GraphCache

    def capture(self, body, prepare=None):
        for _ in range(2):  # the warm-up, as GraphCache._capture runs it
            body()
        if prepare is not None:
            prepare()
        out = body()
        if prepare is not None:  # a real capture runs nothing: undo what running the body did
            prepare()

        def replay():
            fresh = body()
            with torch.no_grad():
                for target, value in zip(out if isinstance(out, tuple) else (out,),
                                         fresh if isinstance(fresh, tuple) else (fresh,)):
                    target.copy_(value)

        return replay, out

    monkeypatch.setattr(GraphCache, "_capture", capture)


@pytest.fixture
def broken_graphs_on_the_cpu(monkeypatch):
    """Stand-in CUDA graphs whose replays compute nothing: what a capture gone silently wrong looks like."""
    from ddcal_sklearn.distillation._graphs import GraphCache

    def capture(self, body, prepare=None):
        out = body()
        with torch.no_grad():
            for tensor in out if isinstance(out, tuple) else (out,):
                tensor.zero_()
        if prepare is not None:
            prepare()
        return (lambda: None), out

    monkeypatch.setattr(GraphCache, "_capture", capture)


@pytest.fixture
def runs_of(monkeypatch):
    """``runs_of(StrategyClass)``: a list that collects a weak reference to every run its ``start`` makes
    (to check that a finished fit frees its run, graphs included, without the garbage collector)."""
    import weakref

    def record(strategy_class):
        runs, real_start = [], strategy_class.start

        def start(self, context):
            run = real_start(self, context)
            runs.append(weakref.ref(run))
            return run

        monkeypatch.setattr(strategy_class, "start", start)
        return runs

    return record

"""Checkpointing and resuming DatasetDistiller.fit (ddcal_sklearn/utils/_checkpoint.py, distillation/_distiller.py)."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ddcal_sklearn import DatasetDistiller, DistributionMatching, GradientMatching, TrajectoryMatching
from ddcal_sklearn.distillation._distiller import (
    _CHECKPOINT_KEYS,
    _CHECKPOINT_KIND,
    CHECKPOINT_FORMAT_VERSION,
    CHECKPOINT_NAME,
)
from ddcal_sklearn.utils import read_checkpoint, resolve_device, run_fingerprint

REPO_ROOT = Path(__file__).resolve().parents[1]
N_TRAIN = 300  # digits images per fit: 10 classes, cheap on 2 cores
NET = {"width": 8, "depth": 2}
TINY = dict(ipc=2, n_iterations=8, batch_real=16, mdt_mask_ratio=0.2, net_params=NET, random_state=0)
METHODS = {
    "dm": dict(method="dm"),
    # mid-block checkpoints (outer_loop=3, every 2) and network momentum: the strategy state matters
    "dsa": dict(method=GradientMatching(dsa=True, outer_loop=3, inner_loop=1, momentum_net=0.5), lr_images=0.1),
    # experts trained by the distiller itself (stored under checkpoint_dir/experts); a learned syn_lr
    "mtt": dict(method=TrajectoryMatching(n_experts=1, max_start_epoch=2, expert_epochs=1, syn_steps=3),
                lr_images=100.0),
}


@pytest.fixture(scope="module")
def digits_small(digits_images):
    X, y = digits_images
    return X[:N_TRAIN], y[:N_TRAIN]


def _interrupt_at(monkeypatch, iteration):
    """Make the next fit's run raise KeyboardInterrupt after the image update of ``iteration``."""
    real_start = {cls: cls.start for cls in (DistributionMatching, GradientMatching, TrajectoryMatching)}

    def interrupting(cls):
        def start(self, context):
            run = real_start[cls](self, context)
            after_step, n_steps = run.after_step, []

            def interrupted_after_step(X_syn):
                n_steps.append(1)
                if len(n_steps) == iteration + 1:
                    raise KeyboardInterrupt  # the machine goes away mid-run
                after_step(X_syn)

            run.after_step = interrupted_after_step
            return run

        return start

    for cls in real_start:
        monkeypatch.setattr(cls, "start", interrupting(cls))
    return lambda: [monkeypatch.setattr(cls, "start", start) for cls, start in real_start.items()]


@pytest.mark.parametrize("method", list(METHODS))
def test_resumed_fit_equals_the_uninterrupted_fit(method, digits_small, tmp_path, monkeypatch):
    X, y = digits_small
    params = {**TINY, **METHODS[method]}
    state = torch.random.get_rng_state()
    reference = DatasetDistiller(**params).fit(X, y)
    assert reference.start_iteration_ == 0

    checkpointed = {**params, "checkpoint_dir": tmp_path / "run", "checkpoint_every": 2}
    restore = _interrupt_at(monkeypatch, 5)
    with pytest.raises(KeyboardInterrupt):
        DatasetDistiller(**checkpointed).fit(X, y)
    restore()
    saved = torch.load(tmp_path / "run" / CHECKPOINT_NAME, weights_only=True)
    assert saved["iteration"] == 4 and saved["loss_curve"].shape == (4,)

    resumed = DatasetDistiller(**checkpointed).fit(X, y)
    assert resumed.start_iteration_ == 4
    assert np.all(np.isfinite(reference.X_synthetic_)) and np.all(np.isfinite(reference.loss_curve_))
    np.testing.assert_array_equal(resumed.X_synthetic_, reference.X_synthetic_)
    np.testing.assert_array_equal(resumed.loss_curve_, reference.loss_curve_)
    np.testing.assert_array_equal(resumed.y_synthetic_, reference.y_synthetic_)
    if method == "mtt":
        assert resumed.syn_lr_ == reference.syn_lr_ and resumed.syn_lr_ != 0.01
        assert resumed.experts_.n_resumed_ == 1  # loaded from checkpoint_dir/experts, not retrained
        assert resumed.experts_.checkpoint_dir == tmp_path / "run" / "experts"
        np.testing.assert_array_equal(resumed.experts_.trajectories_, reference.experts_.trajectories_)
    assert torch.equal(state, torch.random.get_rng_state())  # every draw came from the fit's own generators

    # a finished run is read back, not recomputed
    done = DatasetDistiller(**checkpointed).fit(X, y)
    assert done.start_iteration_ == 8
    np.testing.assert_array_equal(done.X_synthetic_, reference.X_synthetic_)
    np.testing.assert_array_equal(done.loss_curve_, reference.loss_curve_)


_KILLED_SCRIPT = """
import sys, time
import torch
torch.set_num_threads(1)  # as in the test process: the thread count changes float summation order
from ddcal_sklearn import DatasetDistiller, load_digits_images
from ddcal_sklearn.distillation._dm import _DistributionMatchingRun

# slow the loop down so that the kill lands mid-run on any machine; sleeping changes no number
_DistributionMatchingRun.after_step = lambda self, X_syn: time.sleep(0.1)
X, y = load_digits_images(return_X_y=True)
DatasetDistiller(**{params!r}).fit(X[:{n}], y[:{n}])
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_sigkill_then_resume_equals_the_uninterrupted_run(digits_small, tmp_path):
    X, y = digits_small
    params = dict(TINY, n_iterations=40, checkpoint_dir=str(tmp_path / "run"), checkpoint_every=4)
    script = textwrap.dedent(_KILLED_SCRIPT.format(params=params, n=N_TRAIN))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    checkpoint = tmp_path / "run" / CHECKPOINT_NAME
    try:
        deadline = time.monotonic() + 120
        while not checkpoint.exists():
            if process.poll() is not None:
                pytest.fail(f"the fit ended before its first checkpoint: {process.stderr.read().decode()}")
            if time.monotonic() > deadline:
                pytest.fail("no checkpoint appeared within 120 s")
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.communicate()
    assert process.returncode == -signal.SIGKILL

    resumed = DatasetDistiller(**params).fit(X, y)
    assert 4 <= resumed.start_iteration_ < 40 and resumed.start_iteration_ % 4 == 0
    reference = DatasetDistiller(**TINY | {"n_iterations": 40}).fit(X, y)
    np.testing.assert_array_equal(resumed.X_synthetic_, reference.X_synthetic_)
    np.testing.assert_array_equal(resumed.loss_curve_, reference.loss_curve_)
    assert not list((tmp_path / "run").glob("*.tmp"))  # a write cut short by the kill is cleaned up


@pytest.mark.parametrize("failure", ["during the write", "at the rename"])
def test_an_interrupted_write_leaves_the_previous_checkpoint_loadable(failure, digits_small, tmp_path,
                                                                     monkeypatch):
    X, y = digits_small
    params = {**TINY, "checkpoint_dir": tmp_path / "run", "checkpoint_every": 3}
    writes = []
    real_save, real_replace = torch.save, os.replace

    def failing_save(obj, file, *args, **kwargs):
        writes.append(1)
        if len(writes) == 2:  # the second checkpoint: half a file, then the process dies
            file.write(b"PK\x03\x04 half a zip archive")
            raise KeyboardInterrupt
        return real_save(obj, file, *args, **kwargs)

    def failing_replace(src, dst):
        if Path(dst).name == CHECKPOINT_NAME:
            writes.append(1)
            if len(writes) == 2:
                raise OSError("simulated crash between the write and the rename")
        return real_replace(src, dst)

    if failure == "during the write":
        monkeypatch.setattr(torch, "save", failing_save)
    else:
        monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises((KeyboardInterrupt, OSError)):
        DatasetDistiller(**params).fit(X, y)
    monkeypatch.undo()

    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [CHECKPOINT_NAME]  # no temporary left
    assert torch.load(tmp_path / "run" / CHECKPOINT_NAME, weights_only=True)["iteration"] == 3
    # a temporary file left by a SIGKILL mid-write is ignored, then removed
    (tmp_path / "run" / f"{CHECKPOINT_NAME}.x1y2.tmp").write_bytes(b"PK\x03\x04 truncated")
    resumed = DatasetDistiller(**params).fit(X, y)
    assert resumed.start_iteration_ == 3
    np.testing.assert_array_equal(resumed.X_synthetic_, DatasetDistiller(**TINY).fit(X, y).X_synthetic_)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [CHECKPOINT_NAME]


@pytest.fixture
def finished_run(digits_small, tmp_path):
    params = {**TINY, "n_iterations": 2, "checkpoint_dir": tmp_path / "run", "checkpoint_every": 1}
    DatasetDistiller(**params).fit(*digits_small)
    return params, tmp_path / "run" / CHECKPOINT_NAME


def test_a_checkpoint_of_another_run_is_refused_and_kept(finished_run, digits_small):
    params, path = finished_run
    X, y = digits_small
    before = path.read_bytes()
    with pytest.raises(ValueError, match=r"checkpoint_dir='.*run' holds a checkpoint of another run: distiller.pt "
                                         r"differs in lr_images: checkpoint 1.0, now 0.5"):
        DatasetDistiller(**{**params, "lr_images": 0.5}).fit(X, y)
    with pytest.raises(ValueError, match=r"differs in X \(the data"):
        DatasetDistiller(**params).fit(X[::-1].copy(), y)
    with pytest.raises(ValueError, match=r"differs in y \(the data"):
        DatasetDistiller(**params).fit(X, np.array(list("abcdefghij"))[y])
    with pytest.raises(ValueError, match=r"method: checkpoint \"dm\", now \{\"class\": "):
        DatasetDistiller(**{**params, "method": GradientMatching(batch_syn=1)}).fit(X, y)
    with pytest.warns(FutureWarning), pytest.raises(ValueError, match=r"method: checkpoint \"dm\", now \{"):
        DatasetDistiller(**{**params, "method": "dc", "method_params": {"batch_syn": 1}}).fit(X, y)
    assert path.read_bytes() == before  # never overwritten
    # verbose and the checkpoint settings do not belong to the fingerprint
    again = DatasetDistiller(**{**params, "checkpoint_every": 5, "verbose": 0}).fit(X, y)
    assert again.start_iteration_ == 2


def test_a_checkpoint_names_the_method_knob_that_differs(digits_small, tmp_path):
    X, y = digits_small
    params = {**TINY, "n_iterations": 1, "checkpoint_dir": tmp_path / "run", "lr_images": 0.1}
    DatasetDistiller(**params, method=GradientMatching(outer_loop=2, inner_loop=1)).fit(X, y)
    with pytest.raises(ValueError, match=r"differs in method__inner_loop: checkpoint 1, now 2\. Resuming"):
        DatasetDistiller(**params, method=GradientMatching(outer_loop=2, inner_loop=2)).fit(X, y)


def test_a_damaged_foreign_or_newer_checkpoint_gives_a_clear_error(finished_run, digits_small):
    params, path = finished_run
    X, y = digits_small
    state = torch.load(path, weights_only=True)
    good = path.read_bytes()

    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match=r"distiller.pt is not a readable DatasetDistiller checkpoint "
                                         r"\(\w+Error: .*delete .*distiller.pt to start afresh"):
        DatasetDistiller(**params).fit(X, y)

    torch.save({**state, "format_version": 99}, path)
    with pytest.raises(ValueError, match=r"distiller.pt has format_version=99; .* up to format_version=1: "
                                         "upgrade ddcal-sklearn"):
        DatasetDistiller(**params).fit(X, y)

    torch.save({**state, "X_synthetic": state["X_synthetic"][:3]}, path)
    with pytest.raises(ValueError, match=r"distiller.pt is a damaged DatasetDistiller checkpoint \(X_synthetic"):
        DatasetDistiller(**params).fit(X, y)

    torch.save({"kind": "something else"}, path)
    with pytest.raises(ValueError, match="is not a DatasetDistiller checkpoint"):
        DatasetDistiller(**params).fit(X, y)

    torch.save({**state, "optimizer": Path("arbitrary objects are never unpickled")}, path)
    with pytest.raises(ValueError, match=r"is not a readable DatasetDistiller checkpoint \(UnpicklingError"):
        DatasetDistiller(**params).fit(X, y)


def test_read_checkpoint_reads_back_what_fit_wrote(finished_run, digits_small):
    params, path = finished_run
    X, y = digits_small
    d = DatasetDistiller(**params)
    fingerprint = run_fingerprint(d.get_params(deep=False), X, y, np.arange(10), resolve_device("cpu"),
                                  format_version=CHECKPOINT_FORMAT_VERSION)

    def read(at):
        return read_checkpoint(at, kind=_CHECKPOINT_KIND, owner="DatasetDistiller",
                               format_version=CHECKPOINT_FORMAT_VERSION, expected=_CHECKPOINT_KEYS,
                               fingerprint=fingerprint, checkpoint_dir=params["checkpoint_dir"])

    state = read(path)
    assert state["iteration"] == 2 and state["X_synthetic"].dtype == torch.float32
    assert read(path.with_name("absent.pt")) is None


def test_checkpoint_parameters_are_validated(digits_small, tmp_path):
    X, y = digits_small
    with pytest.raises(ValueError, match="'checkpoint_every' parameter of DatasetDistiller must be"):
        DatasetDistiller(**TINY, checkpoint_dir=tmp_path, checkpoint_every=0).fit(X, y)
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    with pytest.raises(ValueError, match=r"checkpoint_dir='.*a_file' exists and is not a directory"):
        DatasetDistiller(**TINY, checkpoint_dir=a_file).fit(X, y)
    with pytest.raises(ValueError, match="'checkpoint_dir' parameter of DatasetDistiller must be"):
        DatasetDistiller(**TINY, checkpoint_dir=3).fit(X, y)

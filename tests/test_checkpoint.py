"""Checkpointing and resuming DatasetDistiller.fit (ddcal_sklearn/utils/_checkpoint.py, distillation/_distiller.py).

Each run has its own file, ``distiller-<digest of its fingerprint>.pt``, and an advisory lock for
the whole fit, so runs (grid-search candidates, parallel processes) can share one checkpoint_dir.
"""

import concurrent.futures
import os
import re
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
from ddcal_sklearn.utils import RunCheckpoint, read_checkpoint, resolve_device, run_fingerprint

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


def _run_file(directory):
    """The one run checkpoint in ``directory``: ``distiller-<16 hex digits>.pt``."""
    files = sorted(Path(directory).glob("distiller-*.pt"))
    assert len(files) == 1 and len(files[0].stem) == len("distiller-") + 16, files
    return files[0]


def _run_files(params, X, y):
    """The RunCheckpoint (file names, lock) of ``DatasetDistiller(**params).fit(X, y)``."""
    distiller = DatasetDistiller(**params)
    classes, y_index = np.unique(y, return_inverse=True)
    fingerprint = run_fingerprint(distiller.get_params(deep=False), X, y_index, classes,
                                  resolve_device(distiller.device), format_version=CHECKPOINT_FORMAT_VERSION)
    return RunCheckpoint(params["checkpoint_dir"], CHECKPOINT_NAME, fingerprint, owner="DatasetDistiller")


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
    saved = torch.load(_run_file(tmp_path / "run"), weights_only=True)
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
    try:
        deadline = time.monotonic() + 120
        while not list((tmp_path / "run").glob("distiller-*.pt")):
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


_SHARING_SCRIPT = """
import os, sys, time
import numpy as np
import torch
torch.set_num_threads(1)  # as in the test process: the thread count changes float summation order
from ddcal_sklearn import DatasetDistiller, load_digits_images
from ddcal_sklearn.distillation._dm import _DistributionMatchingRun

delay, gate, gate_at, steps = {delay!r}, {gate!r}, {gate_at!r}, []

def after_step(self, X_syn):  # changes no number: sleeps, or waits alive at a gate that the test opens
    steps.append(1)
    time.sleep(delay)
    if len(steps) == gate_at:
        open(gate + ".reached", "w").close()
        while os.path.exists(gate):
            time.sleep(0.01)

_DistributionMatchingRun.after_step = after_step
X, y = load_digits_images(return_X_y=True)
fitted = DatasetDistiller(**{params!r}).fit(X[:{n}], y[:{n}])
np.savez({out!r}, X=fitted.X_synthetic_, loss=fitted.loss_curve_, start=fitted.start_iteration_)
"""


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_processes_sharing_a_checkpoint_dir_never_crash_nor_overwrite_and_each_resumes_its_run(
        digits_small, tmp_path, wait_until):
    """B (another process, other parameters) is alive in the folder while A (a third process) is killed
    and A' (this process, A's parameters) resumes it; then B ends. Nothing crashes, no file is
    overwritten or removed under a live run, and both runs end bit-identical to uninterrupted ones (CPU)."""
    X, y = digits_small
    run_dir = tmp_path / "run"
    same = dict(TINY, n_iterations=24, device="cpu", checkpoint_dir=str(run_dir), checkpoint_every=4)
    other = dict(same, lr_images=0.5)
    gate = tmp_path / "gate"
    gate.touch()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    processes = []

    def start(params, name, delay=0.0, gate_at=None):
        script = textwrap.dedent(_SHARING_SCRIPT.format(params=params, n=N_TRAIN, delay=delay, gate=str(gate),
                                                        gate_at=gate_at, out=str(tmp_path / f"{name}.npz")))
        processes.append(subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT, env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        return processes[-1]

    wait_for = wait_until

    def finish(process):
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err.decode()

    def checkpoints():
        return sorted(run_dir.glob("distiller-*.pt"))

    a_file, b_file = _run_files(same, X, y).path, _run_files(other, X, y).path
    waiter = concurrent.futures.ThreadPoolExecutor(1)
    try:
        b = start(other, "b", gate_at=10)  # checkpoints at 4 and 8, then waits, alive, holding its run
        a = start(same, "a", delay=0.1)  # at the same time; slowed so that the kill lands mid-run
        wait_for(a_file.exists, a, "A's first checkpoint")
        os.kill(a.pid, signal.SIGKILL)
        a.communicate()
        assert a.returncode == -signal.SIGKILL
        wait_for(lambda: Path(f"{gate}.reached").exists(), b, "B's gate")
        assert checkpoints() == sorted([a_file, b_file])

        dead_tmp = run_dir / f"{a_file.name}.dead.tmp"  # a write of A cut short by the kill
        dead_tmp.write_bytes(b"PK\x03\x04 half")
        live_tmp = run_dir / f"{b_file.name}.live.tmp"  # a write of B under way
        live_tmp.write_bytes(b"PK\x03\x04 half")
        # B is alive: a second fit of its run, from this process, waits for B without touching anything
        waiting = waiter.submit(DatasetDistiller(**other).fit, X, y)
        resumed = DatasetDistiller(**same).fit(X, y)  # A' (this process) resumes A's run beside the live B
        assert not dead_tmp.exists() and live_tmp.exists() and b.poll() is None
        assert not waiting.done()
        gate.unlink()
        finish(b)
        waited = waiting.result(timeout=120)  # B ended: the waiting fit reads its finished run
    finally:
        for process in processes:
            process.kill()
            process.communicate()
        waiter.shutdown()  # the processes are dead: nothing holds a lock the waiting fit could wait for

    references = {name: DatasetDistiller(**{**params, "checkpoint_dir": None}).fit(X, y)
                  for name, params in (("same", same), ("other", other))}
    assert 4 <= resumed.start_iteration_ < 24 and resumed.start_iteration_ % 4 == 0
    np.testing.assert_array_equal(resumed.X_synthetic_, references["same"].X_synthetic_)
    np.testing.assert_array_equal(resumed.loss_curve_, references["same"].loss_curve_)
    with np.load(tmp_path / "b.npz") as b_result:
        assert int(b_result["start"]) == 0  # B never saw A's files, nor A' B's
        np.testing.assert_array_equal(b_result["X"], references["other"].X_synthetic_)
        np.testing.assert_array_equal(b_result["loss"], references["other"].loss_curve_)
    assert waited.start_iteration_ == 24  # nothing recomputed: B's result
    np.testing.assert_array_equal(waited.X_synthetic_, references["other"].X_synthetic_)
    assert checkpoints() == sorted([a_file, b_file])  # one file per run, none overwritten
    for name, params in (("same", same), ("other", other)):  # each run is finished, in its own file
        again = DatasetDistiller(**params).fit(X, y)
        assert again.start_iteration_ == 24
        np.testing.assert_array_equal(again.X_synthetic_, references[name].X_synthetic_)
    assert not list(run_dir.glob("*.tmp"))  # B's run is dead now: its next fit removed its temporary


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
        if Path(dst).name.startswith("distiller-"):
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

    path = _run_file(tmp_path / "run")
    files = sorted([path.name, path.with_suffix(".lock").name])  # the checkpoint and the run's lock file
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == files  # no temporary left
    assert torch.load(path, weights_only=True)["iteration"] == 3
    # a temporary file left by a SIGKILL mid-write is ignored, then removed (under the run's lock)
    (tmp_path / "run" / f"{path.name}.x1y2.tmp").write_bytes(b"PK\x03\x04 truncated")
    resumed = DatasetDistiller(**params).fit(X, y)
    assert resumed.start_iteration_ == 3
    np.testing.assert_array_equal(resumed.X_synthetic_, DatasetDistiller(**TINY).fit(X, y).X_synthetic_)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == files


@pytest.fixture
def finished_run(digits_small, tmp_path):
    params = {**TINY, "n_iterations": 2, "checkpoint_dir": tmp_path / "run", "checkpoint_every": 1}
    DatasetDistiller(**params).fit(*digits_small)
    return params, _run_file(tmp_path / "run")


def test_a_grid_search_sequence_resumes_each_run_from_its_own_checkpoint(digits_small, tmp_path):
    """What GridSearchCV does with one checkpoint_dir: candidate A, then others (other parameters,
    another fold's data), then A again: nothing is refused, and each finds its own checkpoint."""
    X, y = digits_small
    a = {**TINY, "n_iterations": 4, "checkpoint_dir": tmp_path / "run"}
    runs = {
        "A": (a, X, y),
        "lr_images": ({**a, "lr_images": 0.5}, X, y),
        "method knob": ({**a, "method": GradientMatching(outer_loop=2, inner_loop=1), "lr_images": 0.1}, X, y),
        "data": (a, X[::-1].copy(), y[::-1].copy()),
    }
    first = {name: DatasetDistiller(**params).fit(X_, y_) for name, (params, X_, y_) in runs.items()}
    assert all(d.start_iteration_ == 0 for d in first.values())
    checkpoints = sorted((tmp_path / "run").glob("distiller-*.pt"))
    assert len(checkpoints) == len(runs)  # one file per run: none overwrote another
    contents = {path: path.read_bytes() for path in checkpoints}
    for name, (params, X_, y_) in runs.items():
        again = DatasetDistiller(**params).fit(X_, y_)
        assert again.start_iteration_ == 4, name  # read back, nothing recomputed
        np.testing.assert_array_equal(again.X_synthetic_, first[name].X_synthetic_)
        np.testing.assert_array_equal(again.loss_curve_, first[name].loss_curve_)
    assert {path: path.read_bytes() for path in checkpoints} == contents
    # verbose and the checkpoint settings do not belong to the fingerprint: the same run, the same file
    assert DatasetDistiller(**{**a, "checkpoint_every": 5, "verbose": 0}).fit(X, y).start_iteration_ == 4


@pytest.mark.parametrize("variant, data, match", [
    ({"lr_images": 0.5}, None, (r"distiller-\w{16}\.pt in checkpoint_dir='.*run' is named for this run but was "
                                r"written by another run, which differs in lr_images: checkpoint 1.0, now 0.5: "
                                r"it was renamed or copied\. Resuming it would mix two runs: delete")),
    ({}, "reversed X", r"differs in X \(the data"),
    ({}, "string labels", r"differs in y \(the data"),
    ({"method": GradientMatching(batch_syn=1)}, None, r"method: checkpoint \"dm\", now \{\"class\": "),
])
def test_a_file_named_for_this_run_but_holding_another_is_refused_and_kept(
        finished_run, digits_small, variant, data, match):
    params, path = finished_run
    X, y = digits_small
    if data == "reversed X":
        X = X[::-1].copy()
    elif data == "string labels":
        y = np.array(list("abcdefghij"))[y]
    params = {**params, **variant}
    renamed = _run_files(params, X, y).path  # the variant's own name, holding the finished run's file
    assert renamed != path
    renamed.write_bytes(path.read_bytes())
    with pytest.raises(ValueError, match=match):
        DatasetDistiller(**params).fit(X, y)
    assert renamed.read_bytes() == path.read_bytes()  # never overwritten


def test_a_checkpoint_names_the_method_knob_that_differs(digits_small, tmp_path):
    X, y = digits_small
    params = {**TINY, "n_iterations": 1, "checkpoint_dir": tmp_path / "run", "lr_images": 0.1}
    DatasetDistiller(**params, method=GradientMatching(outer_loop=2, inner_loop=1)).fit(X, y)
    knob = {**params, "method": GradientMatching(outer_loop=2, inner_loop=2)}
    _run_file(tmp_path / "run").rename(_run_files(knob, X, y).path)
    with pytest.raises(ValueError, match=r"differs in method__inner_loop: checkpoint 1, now 2: it was renamed"):
        DatasetDistiller(**knob).fit(X, y)


def test_a_checkpoint_of_the_single_file_layout_is_still_resumed(digits_small, tmp_path, monkeypatch):
    """``distiller.pt``, the one name of every run before one file per run, resumes the run it belongs to."""
    X, y = digits_small
    params = {**TINY, "checkpoint_dir": tmp_path / "run", "checkpoint_every": 4}
    restore = _interrupt_at(monkeypatch, 5)
    with pytest.raises(KeyboardInterrupt):
        DatasetDistiller(**params).fit(X, y)
    restore()
    legacy = tmp_path / "run" / CHECKPOINT_NAME
    _run_file(tmp_path / "run").rename(legacy)
    before = legacy.read_bytes()

    other = DatasetDistiller(**{**params, "lr_images": 0.5}).fit(X, y)  # another run: not its file
    assert other.start_iteration_ == 0
    resumed = DatasetDistiller(**params).fit(X, y)
    assert resumed.start_iteration_ == 4
    np.testing.assert_array_equal(resumed.X_synthetic_, DatasetDistiller(**TINY).fit(X, y).X_synthetic_)
    assert legacy.read_bytes() == before  # read, never written again
    assert torch.load(_run_files(params, X, y).path, weights_only=True)["iteration"] == 8

    legacy.write_bytes(before[: len(before) // 2])  # a damaged one may be this run's: an error, not a guess
    _run_files(params, X, y).path.unlink()
    with pytest.raises(ValueError, match=r"distiller.pt is not a readable DatasetDistiller checkpoint"):
        DatasetDistiller(**params).fit(X, y)


def test_a_live_fit_of_the_same_run_is_waited_for_and_its_temporaries_kept(digits_small, tmp_path, capsys):
    X, y = digits_small
    params = {**TINY, "n_iterations": 2, "checkpoint_dir": tmp_path / "run"}
    live = _run_files(params, X, y)
    with concurrent.futures.ThreadPoolExecutor(1) as waiter:
        with live:  # a fit of this run, alive (in this process here; another process holds it the same way)
            in_flight = tmp_path / "run" / f"{live.path.name}.k3j4.tmp"  # its atomic write, under way
            in_flight.write_bytes(b"PK\x03\x04 half")
            # a second fit of the run (a parallel search's candidate that shares it) waits for the live one
            waiting = waiter.submit(DatasetDistiller(**{**params, "verbose": 1}).fit, X, y)
            other = DatasetDistiller(**{**params, "lr_images": 0.5}).fit(X, y)  # another run goes on beside it
            assert other.start_iteration_ == 0
            time.sleep(0.3)
            assert not waiting.done()
            assert in_flight.exists()  # nobody removes the temporary file of a live run
            assert not live.path.exists()
        # the live fit ended (wrote nothing here): the waiting fit takes the lock, removes the stale
        # temporary and runs
        assert waiting.result(timeout=60).start_iteration_ == 0
    assert re.search(r"DatasetDistiller: a live fit of this very run holds .*distiller-\w{16}\.lock.*waiting",
                     capsys.readouterr().err)
    assert not in_flight.exists() and live.path.exists()
    assert DatasetDistiller(**params).fit(X, y).start_iteration_ == 2  # and the run is now finished


def test_a_damaged_foreign_or_newer_checkpoint_gives_a_clear_error(finished_run, digits_small):
    params, path = finished_run
    X, y = digits_small
    state = torch.load(path, weights_only=True)
    good = path.read_bytes()

    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match=r"distiller-\w{16}\.pt is not a readable DatasetDistiller checkpoint "
                                         r"\(\w+Error: .*delete .*distiller-\w{16}\.pt to start afresh"):
        DatasetDistiller(**params).fit(X, y)

    torch.save({**state, "format_version": 99}, path)
    with pytest.raises(ValueError, match=r"distiller-\w{16}\.pt has format_version=99; .* up to format_version=1: "
                                         "upgrade ddcal-sklearn"):
        DatasetDistiller(**params).fit(X, y)

    torch.save({**state, "X_synthetic": state["X_synthetic"][:3]}, path)
    with pytest.raises(ValueError, match=r"distiller-\w{16}\.pt is a damaged DatasetDistiller checkpoint "
                                         r"\(X_synthetic"):
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

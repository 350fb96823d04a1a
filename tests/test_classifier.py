import concurrent.futures
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV

from ddcal_sklearn import MLP, ConvNet, ConvNetClassifier
from ddcal_sklearn.utils import RunCheckpoint

FAST = dict(max_epochs=60, lr=0.05, module__depth=2, module__width=16, random_state=0)


@pytest.fixture(scope="module")
def fitted(digits_split):
    X_tr, y_tr, *_ = digits_split
    return ConvNetClassifier(**FAST).fit(X_tr, y_tr)


def test_learns_digits_and_logits_match_probabilities(fitted, digits_split):
    *_, X_te, y_te = digits_split
    proba = fitted.predict_proba(X_te)
    assert (fitted.predict(X_te) == y_te).mean() > 0.85
    logits = fitted.decision_function(X_te)
    assert logits.shape == (len(X_te), 10)
    np.testing.assert_allclose(proba, torch.softmax(torch.from_numpy(logits), 1).numpy(), rtol=1e-5)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)


def test_defaults_follow_the_distillation_protocol(fitted):
    assert isinstance(fitted.module_, ConvNet)
    opt = fitted.optimizer_.param_groups[0]
    assert isinstance(fitted.optimizer_, torch.optim.SGD)
    assert opt["momentum"] == 0.9 and opt["weight_decay"] == 5e-4
    assert fitted.train_split is None
    lrs = [row["event_lr"] for row in fitted.history]
    half = fitted.max_epochs // 2
    assert lrs[0] == pytest.approx(0.05)
    assert lrs[half - 2] == pytest.approx(0.05) and lrs[half] == pytest.approx(0.005)
    assert fitted.input_shape_ == (1, 8, 8)


def test_string_labels_float64_input_and_predict_returns_labels(digits_split):
    X_tr, y_tr, _, _, X_te, y_te = digits_split
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    clf = ConvNetClassifier(**FAST).fit(X_tr.astype(np.float64), names[y_tr])
    assert list(clf.classes_) == sorted(names)
    pred = clf.predict(X_te.astype(np.float64))
    assert pred.dtype.kind == "U" and set(pred) <= set(names)
    assert (pred == names[y_te]).mean() > 0.85


def test_same_random_state_same_network_and_global_rng_untouched(digits_split):
    X_tr, y_tr, _, _, X_te, _ = digits_split
    state = torch.random.get_rng_state()
    a = ConvNetClassifier(**FAST).fit(X_tr, y_tr).predict_proba(X_te)
    b = ConvNetClassifier(**FAST).fit(X_tr, y_tr).predict_proba(X_te)
    assert torch.equal(state, torch.random.get_rng_state())
    np.testing.assert_array_equal(a, b)
    c = ConvNetClassifier(**{**FAST, "random_state": 1}).fit(X_tr, y_tr).predict_proba(X_te)
    assert not np.allclose(a, c)


def test_clone_pickle_and_joblib_round_trips(fitted, digits_split, tmp_path):
    *_, X_te, _ = digits_split
    expected = fitted.predict_proba(X_te)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(fitted)).predict_proba(X_te), expected)
    joblib.dump(fitted, tmp_path / "net.joblib")
    loaded = joblib.load(tmp_path / "net.joblib")
    np.testing.assert_array_equal(loaded.predict_proba(X_te), expected)
    assert loaded.get_params()["device"] == "auto"
    cloned = clone(fitted)
    assert cloned.get_params()["device"] == "auto" and not hasattr(cloned, "module_")
    assert cloned.get_params()["module__width"] == 16


def test_device_auto_resolves_and_cuda_without_cuda_is_a_clear_error(digits_split):
    X_tr, y_tr, *_ = digits_split
    clf = ConvNetClassifier(**FAST)
    assert clf.device == ("cuda" if torch.cuda.is_available() else "cpu")
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="device='cuda' but CUDA is not available"):
        ConvNetClassifier(device="cuda").fit(X_tr, y_tr)


def test_mlp_module_takes_flat_features(digits_split):
    X_tr, y_tr, _, _, X_te, y_te = digits_split
    clf = ConvNetClassifier(module=MLP, max_epochs=60, lr=0.05, random_state=0)
    clf.fit(X_tr.reshape(len(X_tr), -1), y_tr)
    assert (clf.predict(X_te.reshape(len(X_te), -1)) == y_te).mean() > 0.85


def test_internal_validation_split_reports_accuracy_on_encoded_labels(digits_split):
    from skorch.dataset import ValidSplit

    X_tr, y_tr, *_ = digits_split
    names = np.array(list("abcdefghij"))
    clf = ConvNetClassifier(**{**FAST, "max_epochs": 10}, train_split=ValidSplit(5, stratified=True))
    clf.fit(X_tr, names[y_tr])
    assert 0.5 < clf.history[-1]["valid_acc"] <= 1.0


def test_a_small_subset_makes_an_overconfident_network(digits_images):
    # The premise of the paper: a network that fits a tiny training set perfectly is
    # more confident than it is accurate on new images.
    X, y = digits_images
    rng = np.random.default_rng(0)
    gaps = []
    for seed in range(3):
        idx = np.concatenate([rng.choice(np.flatnonzero(y == k), 5, replace=False) for k in range(10)])
        rest = np.setdiff1d(np.arange(len(y)), idx)
        clf = ConvNetClassifier(max_epochs=200, lr=0.1, module__depth=2, module__width=32,
                                optimizer__weight_decay=0.0, random_state=seed).fit(X[idx], y[idx])
        proba = clf.predict_proba(X[rest])
        gaps.append(proba.max(1).mean() - (proba.argmax(1) == y[rest]).mean())
    assert np.mean(gaps) > 0.02


@pytest.mark.parametrize(
    "make_X, match",
    [
        (lambda X: X.reshape(len(X), -1), r"needs images of shape \(n_samples, channels, height, width\)"),
        (lambda X: X[:, 0], r"needs images of shape"),
        (lambda X: np.where(np.arange(X.size).reshape(X.shape) == 5, np.nan, X), "NaN"),
    ],
)
def test_bad_training_inputs_get_clear_errors(digits_split, make_X, match):
    X_tr, y_tr, *_ = digits_split
    with pytest.raises(ValueError, match=match):
        ConvNetClassifier(**FAST).fit(make_X(X_tr), y_tr)


def test_single_class_and_missing_y_are_rejected(digits_split):
    X_tr, y_tr, *_ = digits_split
    with pytest.raises(ValueError, match="only one class"):
        ConvNetClassifier(**FAST).fit(X_tr, np.zeros_like(y_tr))
    with pytest.raises(ValueError, match="requires y"):
        ConvNetClassifier(**FAST).fit(X_tr, None)


def test_predict_checks_fitted_and_input_shape(fitted, digits_split):
    from sklearn.exceptions import NotFittedError

    *_, X_te, _ = digits_split
    with pytest.raises(NotFittedError):
        ConvNetClassifier().predict(X_te)
    with pytest.raises(ValueError, match=r"fitted on samples of shape \(1, 8, 8\)"):
        fitted.predict(np.zeros((3, 1, 16, 16), dtype=np.float32))


@pytest.mark.gpu
def test_trains_on_cuda_with_data_on_the_device(digits_split):
    X_tr, y_tr, _, _, X_te, y_te = digits_split
    clf = ConvNetClassifier(**FAST, device="cuda").fit(X_tr, y_tr)
    assert next(clf.module_.parameters()).is_cuda
    assert (clf.predict(X_te) == y_te).mean() > 0.85


# --- training-time calibration baselines ---------------------------------------------

# device="cpu": these compare fits bit for bit, which CUDA kernels do not promise
CAL = dict(max_epochs=20, lr=0.05, batch_size=128, module__depth=2, module__width=16, random_state=0,
           device="cpu")


def _mean_entropy(proba):
    return float(-(proba * np.log(np.clip(proba, 1e-12, 1.0))).sum(1).mean())


@pytest.fixture(scope="module")
def plain_proba(digits_split):
    X_tr, y_tr, _, _, X_te, _ = digits_split
    return ConvNetClassifier(**CAL).fit(X_tr, y_tr).predict_proba(X_te)


def test_label_smoothing_reaches_the_criterion_and_raises_entropy(digits_split, plain_proba):
    X_tr, y_tr, _, _, X_te, y_te = digits_split
    clf = ConvNetClassifier(**CAL, label_smoothing=0.1).fit(X_tr, y_tr)
    assert isinstance(clf.criterion_, torch.nn.CrossEntropyLoss) and clf.criterion_.label_smoothing == 0.1
    proba = clf.predict_proba(X_te)
    assert _mean_entropy(proba) > _mean_entropy(plain_proba) + 0.1
    assert (proba.argmax(1) == y_te).mean() > 0.8


def test_mixup_changes_training_lowers_confidence_and_stays_out_of_prediction(digits_split, plain_proba):
    X_tr, y_tr, _, _, X_te, y_te = digits_split
    clf = ConvNetClassifier(**CAL, mixup_alpha=0.4).fit(X_tr, y_tr)
    proba = clf.predict_proba(X_te)
    assert not np.allclose(proba, plain_proba, atol=1e-3)
    assert proba.max(1).mean() < plain_proba.max(1).mean() - 0.03
    assert (proba.argmax(1) == y_te).mean() > 0.8
    # prediction is the plain network on the plain images
    with torch.no_grad():
        direct = torch.softmax(clf.module_(torch.from_numpy(X_te[:50])), 1).numpy()
    np.testing.assert_allclose(proba[:50], direct, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(clf.predict_proba(X_te), proba)


def test_mixup_draws_lambda_from_beta_and_mixes_a_permutation(digits_split, monkeypatch):
    X_tr, y_tr, *_ = digits_split
    seen = []
    original = ConvNetClassifier.infer

    def spy(self, x, **fit_params):
        if self.module_.training:
            seen.append(x.detach().clone())
        return original(self, x, **fit_params)

    monkeypatch.setattr(ConvNetClassifier, "infer", spy)
    clf = ConvNetClassifier(**{**CAL, "max_epochs": 1, "batch_size": 600}, mixup_alpha=0.4,
                            iterator_train__shuffle=False).fit(X_tr, y_tr)
    (mixed,) = seen
    X = torch.from_numpy(X_tr)
    # Recover lam and the permutation from the fit's own streams (seeded like the fit did).
    rng = np.random.default_rng(0)
    for _ in range(2):  # module initialisation, shuffling
        rng.integers(0, 2**63 - 1)
    mixup_rng = np.random.default_rng(int(rng.integers(0, 2**63 - 1)))
    gen = torch.Generator().manual_seed(int(rng.integers(0, 2**63 - 1)))
    lam = mixup_rng.beta(0.4, 0.4)
    perm = torch.randperm(len(X), generator=gen)
    torch.testing.assert_close(mixed, X * lam + X[perm] * (1 - lam))
    assert clf.history[-1]["train_loss"] > 0


def test_focal_gamma_trains_with_focal_loss_and_predicts_probabilities(digits_split, plain_proba):
    from ddcal_sklearn import FocalLoss

    X_tr, y_tr, _, _, X_te, y_te = digits_split
    clf = ConvNetClassifier(**CAL, focal_gamma=3.0).fit(X_tr, y_tr)
    assert isinstance(clf.criterion_, FocalLoss) and clf.criterion_.gamma == 3.0
    proba = clf.predict_proba(X_te)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)  # softmax applied, as for cross-entropy
    assert proba.max(1).mean() < plain_proba.max(1).mean()
    assert (clf.predict(X_te) == y_te).mean() > 0.8


def test_combined_baselines_train(digits_split):
    X_tr, y_tr, _, _, X_te, y_te = digits_split
    clf = ConvNetClassifier(**CAL, mixup_alpha=0.2, label_smoothing=0.05, focal_gamma=1.0).fit(X_tr, y_tr)
    assert clf.criterion_.label_smoothing == 0.05 and clf.criterion_.gamma == 1.0
    assert np.isfinite([row["train_loss"] for row in clf.history]).all()
    assert (clf.predict(X_te) == y_te).mean() > 0.7


@pytest.mark.parametrize(
    "option", [{"mixup_alpha": 0.4}, {"label_smoothing": 0.1}, {"focal_gamma": 2.0}],
    ids=["mixup", "label_smoothing", "focal"],
)
def test_each_baseline_is_reproducible_with_random_state(digits_split, option):
    X_tr, y_tr, _, _, X_te, _ = digits_split
    params = {**CAL, "max_epochs": 4, **option}
    state = torch.random.get_rng_state()
    a = ConvNetClassifier(**params).fit(X_tr, y_tr).predict_proba(X_te)
    b = ConvNetClassifier(**params).fit(X_tr, y_tr).predict_proba(X_te)
    assert torch.equal(state, torch.random.get_rng_state())
    np.testing.assert_array_equal(a, b)
    c = ConvNetClassifier(**{**params, "random_state": 1}).fit(X_tr, y_tr).predict_proba(X_te)
    assert not np.allclose(a, c)


def test_baseline_parameters_round_trip_through_get_params_clone_and_set_params():
    params = dict(mixup_alpha=0.3, label_smoothing=0.1, focal_gamma=2.0, checkpoint_dir="ckpt",
                  checkpoint_every=5)
    clf = ConvNetClassifier(**params)
    assert {k: clf.get_params()[k] for k in params} == params
    assert {k: clone(clf).get_params()[k] for k in params} == params
    defaults = ConvNetClassifier().get_params()
    assert (defaults["mixup_alpha"], defaults["label_smoothing"], defaults["focal_gamma"]) == (0.0, 0.0, 0.0)
    assert (defaults["checkpoint_dir"], defaults["checkpoint_every"]) == (None, 10)
    assert clf.set_params(label_smoothing=0.2).label_smoothing == 0.2


def test_grid_search_over_label_smoothing(digits_split):
    from sklearn.model_selection import GridSearchCV

    X_tr, y_tr, *_ = digits_split
    search = GridSearchCV(ConvNetClassifier(**{**CAL, "max_epochs": 5}), {"label_smoothing": [0.0, 0.2]},
                          cv=2, scoring="neg_log_loss").fit(X_tr[:300], y_tr[:300])
    assert search.best_params_["label_smoothing"] in (0.0, 0.2)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.best_estimator_.criterion_.label_smoothing == search.best_params_["label_smoothing"]


@pytest.mark.parametrize(
    "params, match",
    [
        ({"mixup_alpha": -0.1}, r"'mixup_alpha' parameter of ConvNetClassifier must be a float in the range \[0"),
        ({"label_smoothing": 1.5}, r"'label_smoothing' parameter .* range \[0.0, 1.0\]"),
        ({"focal_gamma": -1}, r"'focal_gamma' parameter .* range \[0"),
        ({"checkpoint_every": 0}, r"'checkpoint_every' parameter .* range \[1, inf\)"),
        ({"label_smoothing": 0.1, "criterion": torch.nn.NLLLoss}, "criterion=NLLLoss takes none"),
        ({"focal_gamma": 2.0, "criterion": torch.nn.NLLLoss}, "focal_gamma=2.0 trains with FocalLoss"),
        ({"label_smoothing": 0.1, "criterion__label_smoothing": 0.2}, "were both given"),
    ],
)
def test_bad_baseline_parameters_are_clear_errors_before_training(digits_split, params, match):
    X_tr, y_tr, *_ = digits_split
    with pytest.raises(ValueError, match=match):
        ConvNetClassifier(**FAST, **params).fit(X_tr, y_tr)


# --- reliability: checkpoints, batched inference, out of memory, pickles ---------------

CKPT = dict(max_epochs=12, lr=0.05, batch_size=128, module__depth=2, module__width=16, random_state=0,
            device="cpu")


class _Preempted(Exception):
    pass


def _run_file(directory, suffix=".pt"):
    """The one run checkpoint (or lock, ``suffix=".lock"``) in ``directory``: ``classifier-<16 hex>.pt``."""
    files = sorted(Path(directory).glob(f"classifier-*{suffix}"))
    assert len(files) == 1 and len(files[0].stem) == len("classifier-") + 16, files
    return files[0]


def _interrupt_after(monkeypatch, n_steps):
    """Make fit die (like a preempted job) at optimisation step n_steps + 1."""
    original = ConvNetClassifier.train_step
    count = {"steps": 0}

    def step(self, batch, **fit_params):
        count["steps"] += 1
        if count["steps"] > n_steps:
            raise _Preempted(f"killed at step {count['steps']}")
        return original(self, batch, **fit_params)

    monkeypatch.setattr(ConvNetClassifier, "train_step", step)
    return count


@pytest.mark.parametrize("option", [
    {}, {"mixup_alpha": 0.4}, {"augment": "dsa"},
    {"augment": "dc", "callbacks__lr_scheduler__milestone": 5, "callbacks__lr_scheduler__reset_momentum": True},
], ids=["plain", "mixup", "dsa", "dc-reference-schedule"])
def test_resumed_fit_gives_the_uninterrupted_network(digits_split, tmp_path, monkeypatch, option):
    X_tr, y_tr, _, _, X_te, _ = digits_split
    uninterrupted = ConvNetClassifier(**CKPT, **option).fit(X_tr, y_tr)
    # 5 batches per epoch: die in epoch 6, after the checkpoint of epoch 4 (and before the LR step at 6)
    _interrupt_after(monkeypatch, 5 * 5 + 2)
    with pytest.raises(_Preempted):
        ConvNetClassifier(**CKPT, **option, checkpoint_dir=tmp_path, checkpoint_every=2).fit(X_tr, y_tr)
    saved = torch.load(_run_file(tmp_path), weights_only=True)
    assert saved["epoch"] == 4
    monkeypatch.undo()

    count = _interrupt_after(monkeypatch, 10**6)
    resumed = ConvNetClassifier(**CKPT, **option, checkpoint_dir=tmp_path, checkpoint_every=2).fit(X_tr, y_tr)
    assert count["steps"] == 5 * (12 - 4)  # only the missing epochs ran
    assert len(resumed.history) == 12
    assert resumed.history[:, "event_lr"] == uninterrupted.history[:, "event_lr"]
    # bit for bit on CPU: same weights, optimizer state, LR schedule and random streams
    np.testing.assert_allclose(resumed.predict_proba(X_te), uninterrupted.predict_proba(X_te), rtol=0, atol=0)
    for a, b in zip(resumed.module_.parameters(), uninterrupted.module_.parameters()):
        assert torch.equal(a, b)
    assert resumed._rng.bit_generator.state == uninterrupted._rng.bit_generator.state


def test_a_finished_checkpoint_makes_fit_return_without_training(digits_split, tmp_path, monkeypatch):
    X_tr, y_tr, _, _, X_te, _ = digits_split
    params = {**CKPT, "max_epochs": 3, "checkpoint_dir": str(tmp_path), "checkpoint_every": 2}
    first = ConvNetClassifier(**params).fit(X_tr, y_tr)
    assert torch.load(_run_file(tmp_path), weights_only=True)["epoch"] == 3  # the last epoch too
    count = _interrupt_after(monkeypatch, 10**6)
    again = ConvNetClassifier(**params).fit(X_tr, y_tr)
    assert count["steps"] == 0
    np.testing.assert_array_equal(again.predict_proba(X_te), first.predict_proba(X_te))
    assert not list(tmp_path.glob("*.tmp"))


def test_a_crash_while_writing_keeps_the_previous_checkpoint(digits_split, tmp_path, monkeypatch):
    X_tr, y_tr, *_ = digits_split
    real_save = torch.save
    writes = {"n": 0}

    def save(obj, file, *args, **kwargs):
        writes["n"] += 1
        if writes["n"] == 2:
            file.write(b"half a checkpoint")
            raise OSError("disk full")
        return real_save(obj, file, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(OSError, match="disk full"):
        ConvNetClassifier(**{**CKPT, "max_epochs": 4}, checkpoint_dir=tmp_path, checkpoint_every=1).fit(X_tr, y_tr)
    # no temporary file left: the run's checkpoint and its lock file
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([_run_file(tmp_path).name,
                                                                  _run_file(tmp_path, ".lock").name])
    assert torch.load(_run_file(tmp_path), weights_only=True)["epoch"] == 1


def test_a_grid_search_resumes_each_candidate_from_its_own_checkpoint(digits_split, tmp_path, monkeypatch):
    """GridSearchCV with one checkpoint_dir: every candidate and fold (other parameters or data) keeps
    its own checkpoint, and a second search reads each back instead of training."""
    X_tr, y_tr, *_ = digits_split
    search = GridSearchCV(ConvNetClassifier(**{**CKPT, "max_epochs": 2}, checkpoint_dir=tmp_path),
                          {"lr": [0.05, 0.1]}, cv=2, error_score="raise")
    first = clone(search).fit(X_tr, y_tr)
    checkpoints = sorted(tmp_path.glob("classifier-*.pt"))
    assert len(checkpoints) == 5  # 2 candidates x 2 folds, and the refit on all the data
    contents = {path: path.read_bytes() for path in checkpoints}
    count = _interrupt_after(monkeypatch, 10**6)
    again = clone(search).fit(X_tr, y_tr)
    assert count["steps"] == 0  # every fit read its own finished checkpoint
    np.testing.assert_array_equal(again.cv_results_["mean_test_score"], first.cv_results_["mean_test_score"])
    np.testing.assert_array_equal(again.predict_proba(X_tr[:50]), first.predict_proba(X_tr[:50]))
    assert {path: path.read_bytes() for path in checkpoints} == contents  # nothing overwritten


def test_a_checkpoint_named_for_this_run_but_holding_another_is_an_error(digits_split, tmp_path):
    X_tr, y_tr, *_ = digits_split
    params = {**CKPT, "max_epochs": 2, "checkpoint_dir": tmp_path}
    ConvNetClassifier(**params).fit(X_tr, y_tr)
    original = _run_file(tmp_path)
    ConvNetClassifier(**{**params, "lr": 0.1}).fit(X_tr, y_tr)  # another run: its own file, no error
    (renamed,) = set(tmp_path.glob("classifier-*.pt")) - {original}
    renamed.write_bytes(original.read_bytes())  # the first run's file under the second's name
    with pytest.raises(ValueError, match=r"classifier-\w{16}\.pt in checkpoint_dir=.* is named for this run but "
                                         r"was written by another run, which differs in lr: checkpoint "
                                         r"0\.05, now 0\.1: it was renamed or copied"):
        ConvNetClassifier(**{**params, "lr": 0.1}).fit(X_tr, y_tr)
    # verbose and checkpoint_every do not change the network: resuming with other values is fine
    ConvNetClassifier(**{**params, "checkpoint_every": 7}).fit(X_tr, y_tr)


def test_a_checkpoint_of_the_single_file_layout_is_still_resumed(digits_split, tmp_path, monkeypatch):
    X_tr, y_tr, _, _, X_te, _ = digits_split
    params = {**CKPT, "max_epochs": 4, "checkpoint_dir": tmp_path, "checkpoint_every": 2}
    _interrupt_after(monkeypatch, 5 * 3)  # dies in epoch 4, after the checkpoint of epoch 2
    with pytest.raises(_Preempted):
        ConvNetClassifier(**params).fit(X_tr, y_tr)
    monkeypatch.undo()
    legacy = tmp_path / "classifier.pt"  # the one name of every run before one file per run
    _run_file(tmp_path).rename(legacy)
    before = legacy.read_bytes()
    ConvNetClassifier(**{**params, "lr": 0.1, "max_epochs": 1}).fit(X_tr, y_tr)  # another run: not its file
    count = _interrupt_after(monkeypatch, 10**6)
    resumed = ConvNetClassifier(**params).fit(X_tr, y_tr)
    assert count["steps"] == 5 * 2  # only epochs 3 and 4
    reference = ConvNetClassifier(**{**params, "checkpoint_dir": None}).fit(X_tr, y_tr)
    np.testing.assert_array_equal(resumed.predict_proba(X_te), reference.predict_proba(X_te))
    assert legacy.read_bytes() == before  # read, never written again


def test_a_live_fit_of_the_same_run_is_waited_for_by_its_checkpoint_lock(digits_split, tmp_path):
    X_tr, y_tr, *_ = digits_split
    params = {**CKPT, "max_epochs": 1, "checkpoint_dir": tmp_path}
    ConvNetClassifier(**params).fit(X_tr, y_tr)
    (checkpoint,) = tmp_path.glob("classifier*.pt")
    fingerprint = json.loads(torch.load(checkpoint, weights_only=True)["fingerprint"])
    live = RunCheckpoint(tmp_path, "classifier.pt", fingerprint, owner="ConvNetClassifier")
    in_flight = tmp_path / f"{live.path.name}.q7r8.tmp"
    with concurrent.futures.ThreadPoolExecutor(1) as waiter:
        with live:  # a fit of this run, alive (here in this process; one in another process holds it alike)
            in_flight.write_bytes(b"half a checkpoint")  # its atomic write, under way
            waiting = waiter.submit(ConvNetClassifier(**params).fit, X_tr, y_tr)  # waits for the live fit
            ConvNetClassifier(**{**params, "lr": 0.1}).fit(X_tr, y_tr)  # another run goes on beside it
            assert not waiting.done()
            assert in_flight.exists()  # nobody removes the temporary file of a live run
        # the live fit ended: the waiting one takes the lock, cleans up after it and reads the finished run
        waited = waiting.result(timeout=60)
    assert not in_flight.exists()
    np.testing.assert_array_equal(waited.predict_proba(X_tr[:20]),
                                  ConvNetClassifier(**{**params, "checkpoint_dir": None}).fit(X_tr, y_tr)
                                  .predict_proba(X_tr[:20]))


_SHARING_SCRIPT = """
import os, time
import numpy as np
import torch
torch.set_num_threads(1)  # as in the test process: the thread count changes float summation order
from ddcal_sklearn import ConvNetClassifier, load_digits_images

delay, gate, gate_at, steps = {delay!r}, {gate!r}, {gate_at!r}, []
train_step = ConvNetClassifier.train_step

def slowed_step(self, batch, **fit_params):  # changes no number: sleeps, or waits alive at a gate
    steps.append(1)
    time.sleep(delay)
    if len(steps) == gate_at:
        open(gate + ".reached", "w").close()
        while os.path.exists(gate):
            time.sleep(0.01)
    return train_step(self, batch, **fit_params)

ConvNetClassifier.train_step = slowed_step
X, y = load_digits_images(return_X_y=True)
np.save({out!r}, ConvNetClassifier(**{params!r}).fit(X[:{n}], y[:{n}]).predict_proba(X[-100:]))
"""


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_processes_sharing_a_checkpoint_dir_never_crash_nor_overwrite_and_each_resumes_its_run(
        digits_images, tmp_path, monkeypatch, wait_until):
    """B (another process, other parameters) is alive in the folder while A (a third process) is killed
    and A' (this process, A's parameters) resumes it; then B ends. Nothing crashes, no file is
    overwritten or removed under a live run, and both networks equal uninterrupted ones (CPU)."""
    X, y = digits_images
    n = 300  # 3 batches of 128 per epoch
    same = {**CKPT, "max_epochs": 8, "checkpoint_dir": str(tmp_path / "run"), "checkpoint_every": 2}
    other = {**same, "lr": 0.1}
    gate = tmp_path / "gate"
    gate.touch()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    processes = []
    waiter = concurrent.futures.ThreadPoolExecutor(1)

    def start(params, name, delay=0.0, gate_at=None):
        script = textwrap.dedent(_SHARING_SCRIPT.format(params=params, n=n, delay=delay, gate=str(gate),
                                                        gate_at=gate_at, out=str(tmp_path / f"{name}.npy")))
        processes.append(subprocess.Popen([sys.executable, "-c", script], env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        return processes[-1]

    wait_for = wait_until

    learning_rates = {}  # checkpoint -> the lr of its run (read once: the name never changes run)

    def checkpoints(lr=None):
        files = sorted((tmp_path / "run").glob("classifier-*.pt"))
        for path in set(files) - set(learning_rates) if lr is not None else ():
            learning_rates[path] = json.loads(torch.load(path, weights_only=True)["fingerprint"])["params"]["lr"]
        return [path for path in files if lr is None or learning_rates[path] == lr]

    try:
        b = start(other, "b", gate_at=3 * 4 + 1)  # checkpoints after epochs 2 and 4, then waits, alive
        a = start(same, "a", delay=0.1)  # at the same time; slowed so that the kill lands mid-run
        wait_for(lambda: checkpoints(lr=same["lr"]), a, "A's first checkpoint")
        os.kill(a.pid, signal.SIGKILL)
        a.communicate()
        assert a.returncode == -signal.SIGKILL
        wait_for(lambda: Path(f"{gate}.reached").exists(), b, "B's gate")
        (a_file,), (b_file,) = checkpoints(lr=same["lr"]), checkpoints(lr=other["lr"])
        dead_tmp = a_file.with_name(f"{a_file.name}.dead.tmp")  # a write of A cut short by the kill
        live_tmp = b_file.with_name(f"{b_file.name}.live.tmp")  # a write of B under way
        for tmp in (dead_tmp, live_tmp):
            tmp.write_bytes(b"half a checkpoint")
        # B is alive: a second fit of its run, from this process, waits for B without touching anything
        waiting = waiter.submit(ConvNetClassifier(**other).fit, X[:n], y[:n])
        resumed = ConvNetClassifier(**same).fit(X[:n], y[:n])  # A' resumes A's run beside the live B
        assert not dead_tmp.exists() and live_tmp.exists() and b.poll() is None
        assert not waiting.done()
        gate.unlink()
        _, err = b.communicate(timeout=120)
        assert b.returncode == 0, err.decode()
        waited = waiting.result(timeout=120)  # B ended: the waiting fit reads its finished run
    finally:
        for process in processes:
            process.kill()
            process.communicate()
        waiter.shutdown()  # the processes are dead: nothing holds a lock the waiting fit could wait for

    references = {name: ConvNetClassifier(**{**params, "checkpoint_dir": None}).fit(X[:n], y[:n])
                  for name, params in (("same", same), ("other", other))}
    assert torch.load(a_file, weights_only=True)["epoch"] == 8
    np.testing.assert_array_equal(resumed.predict_proba(X[-100:]), references["same"].predict_proba(X[-100:]))
    np.testing.assert_array_equal(np.load(tmp_path / "b.npy"), references["other"].predict_proba(X[-100:]))
    np.testing.assert_array_equal(waited.predict_proba(X[-100:]), references["other"].predict_proba(X[-100:]))
    assert checkpoints() == sorted([a_file, b_file])  # one file per run, none overwritten
    count = _interrupt_after(monkeypatch, 10**6)
    for params in (same, other):  # each run is finished, in its own file
        ConvNetClassifier(**params).fit(X[:n], y[:n])
    assert count["steps"] == 0
    assert not list((tmp_path / "run").glob("*.tmp"))  # B's run is dead now: its next fit removed its temporary


@pytest.mark.parametrize(
    "content, match",
    [
        (b"not a zip archive", r"classifier-\w{16}\.pt is not a readable ConvNetClassifier checkpoint"),
        ("newer", r"classifier-\w{16}\.pt has format_version=99; this ddcal-sklearn reads .* up to format_version=1"),
        ("pickled", r"classifier-\w{16}\.pt is not a readable ConvNetClassifier checkpoint \(UnpicklingError"),
    ],
)
def test_damaged_newer_or_unsafe_checkpoints_are_clear_errors(digits_split, tmp_path, content, match):
    X_tr, y_tr, *_ = digits_split
    params = {**CKPT, "max_epochs": 1, "checkpoint_dir": tmp_path}
    ConvNetClassifier(**params).fit(X_tr, y_tr)
    path = _run_file(tmp_path)
    if content == "newer":
        torch.save({"kind": "ddcal_sklearn.ConvNetClassifier checkpoint", "format_version": 99}, path)
    elif content == "pickled":  # arbitrary objects are never unpickled
        torch.save({"kind": "ddcal_sklearn.ConvNetClassifier checkpoint", "payload": _Preempted()}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=match) as info:
        ConvNetClassifier(**params).fit(X_tr, y_tr)
    assert str(path) in str(info.value)


def test_inference_moves_one_host_batch_at_a_time(fitted, digits_split, monkeypatch):
    *_, X_te, _ = digits_split
    X_te = np.ascontiguousarray(X_te)
    batches = []
    original = ConvNetClassifier.infer

    def spy(self, x, **fit_params):
        batches.append(x)
        return original(self, x, **fit_params)

    monkeypatch.setattr(ConvNetClassifier, "infer", spy)
    net = pickle.loads(pickle.dumps(fitted)).set_params(batch_size=64)
    proba = net.predict_proba(X_te)
    assert [len(b) for b in batches] == [64] * (len(X_te) // 64) + [len(X_te) % 64]
    # Every batch infer() receives is a view of the caller's array: nothing copied X whole,
    # to the device or elsewhere; infer() moves each batch to the device when it runs.
    assert all(np.shares_memory(b.numpy(), X_te) for b in batches)
    assert proba.shape == (len(X_te), 10)
    small = ConvNetClassifier(**{**FAST, "max_epochs": 1}, iterator_valid__batch_size=30)
    small.fit(X_te[:100], np.arange(100) % 10)
    batches.clear()
    small.decision_function(X_te[:100])
    assert [len(b) for b in batches] == [30, 30, 30, 10]


def test_out_of_memory_in_fit_names_the_parameters_to_lower(digits_split, monkeypatch):
    X_tr, y_tr, *_ = digits_split

    def forward(self, x):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(ConvNet, "forward", forward)
    with pytest.raises(torch.OutOfMemoryError, match=r"during fit: lower batch_size \(now 256\) or "
                                                     r"module__width \(now 16\)") as info:
        ConvNetClassifier(**FAST).fit(X_tr, y_tr)
    assert isinstance(info.value.__cause__, torch.OutOfMemoryError)
    assert "Tried to allocate 2.00 GiB" in str(info.value.__cause__)


def test_out_of_memory_in_inference_names_the_parameters_to_lower(fitted, digits_split, monkeypatch):
    *_, X_te, _ = digits_split

    def forward(self, x):
        raise torch.OutOfMemoryError("CUDA out of memory.")

    monkeypatch.setattr(ConvNet, "forward", forward)
    for method in (fitted.predict_proba, fitted.decision_function, fitted.predict):
        with pytest.raises(torch.OutOfMemoryError, match=r"during inference: lower batch_size") as info:
            method(X_te)
        assert info.value.__cause__ is not None
    mlp = ConvNetClassifier(module=MLP, max_epochs=1)
    monkeypatch.setattr(MLP, "forward", forward)
    with pytest.raises(torch.OutOfMemoryError, match=r"module__hidden_sizes \(now \(128,\)\)"):
        mlp.fit(X_te.reshape(len(X_te), -1), np.arange(len(X_te)) % 2)


def test_inputs_that_overflow_the_network_are_an_error_not_nan_probabilities(fitted, digits_split):
    # Issue 16, item 2: finite inputs 1e20 times the normalised scale overflow float32 inside
    # the network (instance norm), which returned all-NaN probabilities and class 0 for every row.
    *_, X_te, _ = digits_split
    X_huge = X_te[:20] * np.float32(1e20)
    assert np.isfinite(X_huge).all()
    for method in (fitted.decision_function, fitted.predict_proba, fitted.predict):
        with pytest.raises(ValueError, match=r"NaN or infinite outputs for 20 of 20 rows of X: the network's "
                                             r"outputs are not finite for inputs of magnitude up to 1\.\d+e\+20: "
                                             r"X looks unnormalised"):
            method(X_huge)
    # one bad row among good ones is still refused, and the message counts it
    mixed = X_te[:20].copy()
    mixed[3] *= np.float32(1e20)
    with pytest.raises(ValueError, match=r"for 1 of 20 rows of X"):
        fitted.predict_proba(mixed)
    # through a dataset (no array to measure), and with non-finite weights: still refused, named
    from ddcal_sklearn.nn import DeviceTensorDataset
    with pytest.raises(ValueError, match=r"magnitude up to 1\.\d+e\+20"):
        fitted.predict_proba(DeviceTensorDataset(torch.from_numpy(X_huge)))
    broken = pickle.loads(pickle.dumps(fitted))
    with torch.no_grad():
        next(broken.module_.parameters()).fill_(float("nan"))
    with pytest.raises(ValueError, match=r"the network's weights are not finite"):
        broken.predict(X_te[:5])
    # a custom nonlinearity that makes NaN out of finite logits is named
    unstable = pickle.loads(pickle.dumps(fitted)).set_params(
        predict_nonlinearity=lambda z: torch.exp(1e3 * z) / torch.exp(1e3 * z).sum(1, keepdim=True))
    with pytest.raises(ValueError, match=r"predict_nonlinearity=.* turned the network's finite outputs"):
        unstable.predict_proba(X_te[:20])
    # the ordinary scale is untouched
    assert np.isfinite(fitted.predict_proba(X_te[:20])).all()


def _tag_cpu_storages_as_cuda(monkeypatch):
    """Make torch.save record CPU storages as 'cuda:0': the bytes a GPU machine writes.

    Loading such bytes without a map_location fails on a CPU-only machine, exactly as a
    GPU pickle does, so this exercises the real loading path without a GPU.
    """
    import torch.serialization as serialization

    entry = (1, lambda storage: "cuda:0" if storage.device.type == "cpu" else None, lambda storage, loc: None)
    monkeypatch.setattr(serialization, "_package_registry",
                        sorted([*serialization._package_registry, entry], key=lambda e: e[0]))


def test_pickle_of_a_gpu_fitted_net_loads_on_a_cpu_only_machine(digits_split, monkeypatch):
    import io
    import warnings

    X_tr, y_tr, _, _, X_te, _ = digits_split
    # SGD's momentum buffers: tensors in the optimizer, which the LR scheduler callback also holds
    clf = ConvNetClassifier(**{**FAST, "max_epochs": 3}).fit(X_tr, y_tr)
    expected = clf.predict_proba(X_te)
    with monkeypatch.context() as m:
        _tag_cpu_storages_as_cuda(m)
        m.setattr(torch.cuda, "is_available", lambda: True)  # device="auto" resolves to "cuda"
        assert clf.device == "cuda"
        data = pickle.dumps(clf)
        tensor_bytes = io.BytesIO()
        torch.save(torch.zeros(2), tensor_bytes)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="CUDA"):  # the bytes really say "CUDA"
        torch.load(io.BytesIO(tensor_bytes.getvalue()), weights_only=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "auto" on a CPU-only machine: no warning
        loaded = pickle.loads(data)
    assert loaded.device == "cpu" and loaded.get_params()["device"] == "auto"
    assert next(loaded.module_.parameters()).device.type == "cpu"
    scheduler = dict(loaded.callbacks_)["lr_scheduler"].lr_scheduler_
    assert scheduler.optimizer is loaded.optimizer_  # one optimizer, not a stray copy
    assert all(t.device.type == "cpu" for s in loaded.optimizer_.state.values() for t in s.values()
               if isinstance(t, torch.Tensor))
    # equal on a CPU-only machine; on a GPU machine the net was really fitted on CUDA (rounding differs)
    np.testing.assert_allclose(loaded.predict_proba(X_te), expected, rtol=1e-5, atol=1e-6)
    loaded.partial_fit(X_tr, y_tr)  # and it trains on


@pytest.mark.gpu
def test_gpu_pickle_round_trip_to_cpu(digits_split, monkeypatch):
    X_tr, y_tr, _, _, X_te, _ = digits_split
    clf = ConvNetClassifier(**FAST).fit(X_tr, y_tr)  # device="auto": CUDA here
    assert next(clf.module_.parameters()).is_cuda
    expected = clf.predict_proba(X_te)
    data = pickle.dumps(clf)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # load as a CPU-only machine would
    loaded = pickle.loads(data)
    assert next(loaded.module_.parameters()).device.type == "cpu"
    np.testing.assert_allclose(loaded.predict_proba(X_te), expected, atol=1e-5)


@pytest.mark.gpu
def test_inference_on_50000_cifar_sized_images_needs_one_batch_of_device_memory():
    gen = np.random.default_rng(0)
    X = gen.standard_normal((50_000, 3, 32, 32), dtype=np.float32)  # 614 MB
    y = np.arange(50_000) % 10
    clf = ConvNetClassifier(max_epochs=1, module__width=32, batch_size=250, random_state=0, device="cuda")
    clf.fit(X[:1000], y[:1000])
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    proba = clf.predict_proba(X)
    peak = torch.cuda.max_memory_allocated() - base
    assert proba.shape == (50_000, 10)
    # one batch's activations (~70 MiB here), not X (586 MiB) on the device
    assert peak < X.nbytes / 4, f"inference peaked at {peak / 2**20:.0f} MiB of device memory"


@pytest.mark.gpu
def test_resume_on_cuda_restores_the_device_random_streams(digits_split, tmp_path, monkeypatch):
    X_tr, y_tr, _, _, X_te, _ = digits_split
    params = {**CKPT, "device": "cuda", "mixup_alpha": 0.4}
    uninterrupted = ConvNetClassifier(**params).fit(X_tr, y_tr)
    _interrupt_after(monkeypatch, 5 * 5 + 2)
    with pytest.raises(_Preempted):
        ConvNetClassifier(**params, checkpoint_dir=tmp_path, checkpoint_every=2).fit(X_tr, y_tr)
    monkeypatch.undo()
    resumed = ConvNetClassifier(**params, checkpoint_dir=tmp_path, checkpoint_every=2).fit(X_tr, y_tr)
    for name in ("_shuffle_generator", "_mixup_generator"):
        assert getattr(resumed, name).device.type == "cuda"
        assert torch.equal(getattr(resumed, name).get_state(), getattr(uninterrupted, name).get_state())
    np.testing.assert_allclose(resumed.predict_proba(X_te), uninterrupted.predict_proba(X_te), atol=1e-4)


# --- skorch's save / initialize / load without data, and torch datasets -----------------------

SIZES = dict(module__in_channels=1, module__image_size=8)


@pytest.mark.parametrize("labels", [{"module__n_classes": 10}, {"classes": list(range(10))}],
                         ids=["module__n_classes", "classes"])
def test_save_params_initialize_load_params_round_trip(fitted, digits_split, tmp_path, labels):
    *_, X_te, _ = digits_split
    fitted.save_params(f_params=tmp_path / "params.pt")
    net = ConvNetClassifier(module__depth=2, module__width=16, **SIZES, **labels).initialize()
    np.testing.assert_array_equal(net.classes_, np.arange(10))
    assert net.input_shape_ == (1, 8, 8) and net.n_features_in_ == 1
    net.load_params(f_params=tmp_path / "params.pt")
    np.testing.assert_array_equal(net.predict_proba(X_te), fitted.predict_proba(X_te))
    np.testing.assert_array_equal(net.predict(X_te), fitted.predict(X_te))
    with pytest.raises(ValueError, match=r"fitted on samples of shape \(1, 8, 8\)"):
        net.predict(np.zeros((2, 1, 16, 16), dtype=np.float32))


def test_initialize_without_data_names_the_missing_sizes():
    with pytest.raises(ValueError, match=r"module__in_channels, module__image_size, classes \(or module__n_classes\)"):
        ConvNetClassifier().initialize()
    with pytest.raises(ValueError, match=r"module__n_features is not set.*module__n_features=64"):
        ConvNetClassifier(module=MLP, module__n_classes=10).initialize()
    with pytest.raises(ValueError, match=r"3 labels but module__n_classes=10"):
        ConvNetClassifier(**SIZES, classes=[0, 1, 2], module__n_classes=10).initialize()


def test_initialize_draws_the_weights_fit_draws_and_partial_fit_continues(digits_split):
    X_tr, y_tr, *_ = digits_split
    params = dict(module__depth=2, module__width=16, random_state=0)
    fitted = ConvNetClassifier(max_epochs=0, **params).fit(X_tr, y_tr)
    net = ConvNetClassifier(max_epochs=2, **params, **SIZES, module__n_classes=10).initialize()
    for p, q in zip(net.module_.parameters(), fitted.module_.parameters()):
        assert torch.equal(p, q)
    net.partial_fit(X_tr, y_tr)  # no re-initialisation: the loaded/initialised weights train on
    assert len(net.history) == 2 and net.predict(X_tr[:3]).shape == (3,)
    mlp = ConvNetClassifier(module=MLP, module__n_features=64, module__n_classes=10, max_epochs=1).initialize()
    assert not hasattr(mlp, "input_shape_")  # flat or image inputs: the first data says which
    mlp.partial_fit(X_tr, y_tr)
    assert mlp.input_shape_ == (1, 8, 8)


def test_an_unsorted_classes_parameter_keeps_labels_and_columns_together(digits_split):
    X_tr, y_tr, *_ = digits_split
    names = np.array(list("abcdefghij"))[y_tr]
    net = ConvNetClassifier(max_epochs=20, lr=0.05, module__depth=2, module__width=16, random_state=0,
                            classes=list("jihgfedcba")).fit(X_tr, names)
    np.testing.assert_array_equal(net.classes_, list("abcdefghij"))  # the logits' column order
    assert (net.predict(X_tr) == names).mean() > 0.8


def test_fit_on_a_tensor_dataset_equals_fit_on_the_arrays(digits_split):
    X_tr, y_tr, _, _, X_te, _ = digits_split
    dataset = torch.utils.data.TensorDataset(torch.as_tensor(X_tr), torch.as_tensor(y_tr))
    params = dict(max_epochs=5, lr=0.05, module__depth=2, module__width=16, random_state=0)
    from_dataset = ConvNetClassifier(**params).fit(dataset, None)
    from_arrays = ConvNetClassifier(**params).fit(X_tr, y_tr)
    np.testing.assert_array_equal(from_dataset.classes_, np.arange(10))
    assert from_dataset.input_shape_ == (1, 8, 8) and from_dataset.n_features_in_ == 1
    np.testing.assert_array_equal(from_dataset.predict_proba(X_te), from_arrays.predict_proba(X_te))
    test_set = torch.utils.data.TensorDataset(torch.as_tensor(X_te))
    np.testing.assert_array_equal(from_dataset.predict_proba(test_set), from_arrays.predict_proba(X_te))


class _LabelledImages(torch.utils.data.Dataset):
    """A plain map-style dataset (no tensors to slice, no targets attribute) with string labels."""

    def __init__(self, X, labels):
        self.X, self.labels = X, labels

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        return torch.as_tensor(self.X[i]), self.labels[i]


def test_fit_on_a_general_dataset_infers_label_classes_from_its_items(digits_split):
    X_tr, y_tr, _, _, X_te, y_te = digits_split
    names = np.array(list("abcdefghij"))
    net = ConvNetClassifier(max_epochs=20, lr=0.05, module__depth=2, module__width=16, batch_size=64,
                            random_state=0).fit(_LabelledImages(X_tr, names[y_tr].tolist()), None)
    np.testing.assert_array_equal(net.classes_, names)
    assert (net.predict(X_te) == names[y_te]).mean() > 0.8
    # the same shuffling stream as arrays: a second fit gives the same network
    again = ConvNetClassifier(**net.get_params()).fit(_LabelledImages(X_tr, names[y_tr].tolist()), None)
    np.testing.assert_array_equal(again.predict_proba(X_te), net.predict_proba(X_te))


def test_bad_datasets_get_clear_errors(digits_split, tmp_path):
    X_tr, y_tr, *_ = digits_split
    dataset = torch.utils.data.TensorDataset(torch.as_tensor(X_tr), torch.as_tensor(y_tr))
    with pytest.raises(ValueError, match=r"X is a torch Dataset \(TensorDataset\).*pass y=None"):
        ConvNetClassifier(**FAST).fit(dataset, y_tr)
    with pytest.raises(ValueError, match=r"items must be \(x, y\) pairs, but item 0 is a tuple of length 1"):
        ConvNetClassifier(**FAST).fit(torch.utils.data.TensorDataset(torch.as_tensor(X_tr)), None)
    with pytest.raises(ValueError, match=r"only one class"):
        ConvNetClassifier(**FAST).fit(torch.utils.data.TensorDataset(torch.as_tensor(X_tr), torch.zeros(600)), None)
    with pytest.raises(ValueError, match=r"needs images of shape"):
        flat = torch.utils.data.TensorDataset(torch.as_tensor(X_tr.reshape(600, -1)), torch.as_tensor(y_tr))
        ConvNetClassifier(**FAST).fit(flat, None)
    with pytest.raises(ValueError, match=r"checkpoint_dir=.*pass arrays X, y"):
        ConvNetClassifier(**FAST, checkpoint_dir=tmp_path).fit(dataset, None)


def test_a_bad_callbacks_value_waits_for_fit_and_does_not_stick(digits_split):
    X_tr, y_tr, *_ = digits_split
    net = ConvNetClassifier(**FAST).set_params(callbacks=-np.inf)
    with pytest.raises(ValueError, match=r"'callbacks' parameter of ConvNetClassifier must be"):
        net.fit(X_tr, y_tr)
    net.set_params(callbacks=None, max_epochs=1)  # skorch alone would fail here too, on the old -inf
    assert net.fit(X_tr, y_tr).callbacks is None


@pytest.mark.gpu
def test_fits_host_datasets_on_cuda_with_the_device_shuffling_stream(digits_split):
    # a TensorDataset stays on the host (sliced there), a general dataset is read item by item;
    # both are shuffled by the CUDA generator that random_state seeds, and batches move per step
    X_tr, y_tr, _, _, X_te, y_te = digits_split
    tensors = torch.utils.data.TensorDataset(torch.as_tensor(X_tr), torch.as_tensor(y_tr))
    names = np.array(list("abcdefghij"))
    for dataset, labels in ((tensors, y_te), (_LabelledImages(X_tr, names[y_tr].tolist()), names[y_te])):
        clf = ConvNetClassifier(**FAST, device="cuda").fit(dataset, None)
        assert next(clf.module_.parameters()).is_cuda
        assert (clf.predict(X_te) == labels).mean() > 0.85


# --- soft labels: y of shape (n_samples, n_classes) ----------------------------------------------

SOFT = dict(max_epochs=8, lr=0.05, batch_size=128, module__depth=1, module__width=8, random_state=0, device="cpu")


@pytest.mark.parametrize("option", [{}, {"label_smoothing": 0.1}, {"focal_gamma": 2.0}, {"mixup_alpha": 0.3},
                                    {"focal_gamma": 3.0, "label_smoothing": 0.1, "mixup_alpha": 0.2}],
                         ids=["plain", "smoothing", "focal", "mixup", "all"])
def test_one_hot_soft_labels_train_the_network_of_the_class_indices(digits_split, option):
    X_tr, y_tr, _, _, X_te, _ = digits_split
    hard = ConvNetClassifier(**SOFT, **option).fit(X_tr, y_tr)
    for one_hot in (np.eye(10, dtype=np.float32)[y_tr], np.eye(10)[y_tr].tolist()):  # float32 array, float list
        soft = ConvNetClassifier(**SOFT, **option).fit(X_tr, one_hot)
        np.testing.assert_array_equal(soft.classes_, hard.classes_)
        np.testing.assert_allclose(soft.predict_proba(X_te), hard.predict_proba(X_te), rtol=0, atol=1e-6)
        for a, b in zip(soft.module_.parameters(), hard.module_.parameters()):
            np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=0, atol=1e-6)
        np.testing.assert_allclose(soft.history[:, "train_loss"], hard.history[:, "train_loss"], rtol=1e-5)


def _mean_max_probability(proba):
    return float(proba.max(axis=1).mean())


def test_genuinely_soft_labels_train_a_network_and_predict_classes(digits_split):
    X_tr, y_tr, _, _, X_te, y_te = digits_split
    params = {**SOFT, "max_epochs": 30, "module__width": 16}
    # the average of two networks' probabilities (an ensemble as teacher), and label-smoothed rows
    teachers = [ConvNetClassifier(**{**params, "random_state": seed}).fit(X_tr, y_tr) for seed in (1, 2)]
    averaged = np.mean([t.predict_proba(X_tr) for t in teachers], axis=0)
    smoothed = np.full((len(y_tr), 10), 0.05)
    smoothed[np.arange(len(y_tr)), y_tr] = 0.55
    hard = ConvNetClassifier(**params).fit(X_tr, y_tr)
    for targets in (averaged, smoothed):
        student = ConvNetClassifier(**params).fit(X_tr, targets)
        np.testing.assert_array_equal(student.classes_, np.arange(10))
        prediction = student.predict(X_te)
        assert prediction.dtype.kind == "i" and (prediction == y_te).mean() > 0.85
        assert np.isfinite(student.history[:, "train_loss"]).all()
    # trained towards rows of maximum 0.55, the network is far less confident than on the class indices
    assert _mean_max_probability(student.predict_proba(X_te)) < _mean_max_probability(hard.predict_proba(X_te)) - 0.2


def test_soft_labels_follow_the_classes_parameter_in_its_order(digits_split):
    X_tr, y_tr, _, _, X_te, y_te = digits_split
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    order = names[::-1]  # unsorted: column j of y is the probability of order[j]
    one_hot = (names[y_tr][:, None] == order[None, :]).astype(np.float32)
    soft = ConvNetClassifier(**SOFT, classes=list(order)).fit(X_tr, one_hot)
    hard = ConvNetClassifier(**SOFT).fit(X_tr, names[y_tr])
    np.testing.assert_array_equal(soft.classes_, sorted(names))  # the logits' columns, as for hard labels
    np.testing.assert_allclose(soft.predict_proba(X_te), hard.predict_proba(X_te), rtol=0, atol=1e-6)
    prediction = soft.predict(X_te)
    assert prediction.dtype.kind == "U" and (prediction == names[y_te]).mean() > 0.6


def _soft(y, n_classes=10):
    return np.eye(n_classes, dtype=np.float64)[y] * 0.9 + 0.1 / n_classes


def _spoil(rows, i, j, value):
    rows = rows.copy()
    rows[i, j] = value
    return rows


@pytest.mark.parametrize("make_y, params, match", [
    (lambda y: _spoil(_soft(y), 3, 0, 0.5), {}, r"rows of y must sum to 1 .*row 3 sums to 1\.49.* not renormalised"),
    (lambda y: _soft(y) * 100, {}, r"rows of y must sum to 1 .*row 0 sums to 100"),
    (lambda y: _spoil(_spoil(_soft(y), 5, 1, -0.1), 5, 2, 0.21), {}, r"y has negative entries \(row 5, column 1"),
    (lambda y: _spoil(_soft(y), 7, 4, np.nan), {}, r"y contains NaN or infinity \(row 7"),
    (lambda y: _spoil(_soft(y), 2, 4, np.inf), {}, r"y contains NaN or infinity \(row 2"),
    (lambda y: _soft(y), {"classes": list("abc")}, r"y has 10 columns .* but classes=\['a', 'b', 'c'\] has 3"),
    (lambda y: _soft(y), {"classes": list("aacdefghij")}, r"classes=.* repeats a label"),
    (lambda y: _soft(y)[:, :0], {}, r"y has shape \(600, 0\); soft labels are an array of shape"),
    (lambda y: np.stack([y.astype(str)] * 2, axis=1), {}, r"dtype <U\d+: a 2-D y is read as soft labels"),
    (lambda y: np.stack([y, y], axis=1), {}, r"rows of y must sum to 1 .*multilabel"),
    (lambda y: _soft(y)[:-1], {}, r"X and y: .*inconsistent numbers of samples"),
])
def test_bad_soft_labels_get_clear_errors_before_training(digits_split, make_y, params, match):
    X_tr, y_tr, *_ = digits_split
    net = ConvNetClassifier(**SOFT, **params)
    with pytest.raises(ValueError, match=match):
        net.fit(X_tr, make_y(y_tr))
    assert not hasattr(net, "module_")


def test_a_column_of_labels_is_raveled_with_a_warning_as_in_scikit_learn(digits_split):
    from sklearn.exceptions import DataConversionWarning

    X_tr, y_tr, _, _, X_te, _ = digits_split
    with pytest.warns(DataConversionWarning, match="column-vector y"):
        column = ConvNetClassifier(**SOFT).fit(X_tr, y_tr[:, None])
    labels = ConvNetClassifier(**SOFT).fit(X_tr, y_tr)
    np.testing.assert_array_equal(column.predict_proba(X_te), labels.predict_proba(X_te))


def test_soft_labels_are_fingerprinted_as_probabilities_and_resume(digits_split, tmp_path, monkeypatch):
    X_tr, y_tr, _, _, X_te, _ = digits_split
    params = {**SOFT, "max_epochs": 6, "checkpoint_dir": tmp_path, "checkpoint_every": 2}
    targets = _soft(y_tr)
    uninterrupted = ConvNetClassifier(**{**params, "checkpoint_dir": None}).fit(X_tr, targets)
    _interrupt_after(monkeypatch, 5 * 3 + 1)  # dies in epoch 4, after the checkpoint of epoch 2
    with pytest.raises(_Preempted):
        ConvNetClassifier(**params).fit(X_tr, targets)
    monkeypatch.undo()
    count = _interrupt_after(monkeypatch, 10**6)
    resumed = ConvNetClassifier(**params).fit(X_tr, targets)
    assert count["steps"] == 5 * (6 - 2)
    np.testing.assert_array_equal(resumed.predict_proba(X_te), uninterrupted.predict_proba(X_te))
    # other probabilities with the same argmax (an int64 cast would not tell them apart) are another run
    ConvNetClassifier(**params).fit(X_tr, _soft(y_tr) * 0.5 + 0.05)
    assert len(list(tmp_path.glob("classifier-*.pt"))) == 2
    # one-hot rows are not the class indices' run either (another y), and hard runs keep their old digest
    ConvNetClassifier(**params).fit(X_tr, y_tr)
    assert len(list(tmp_path.glob("classifier-*.pt"))) == 3


class _SoftLabelledImages(torch.utils.data.Dataset):
    """A plain map-style dataset whose targets are rows of class probabilities (lists of floats)."""

    def __init__(self, X, rows):
        self.X, self.rows = X, rows

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        return torch.as_tensor(self.X[i]), self.rows[i].tolist()


def test_fit_on_a_dataset_of_soft_labels(digits_split):
    X_tr, y_tr, _, _, X_te, _ = digits_split
    targets = _soft(y_tr).astype(np.float32)
    from_arrays = ConvNetClassifier(**SOFT).fit(X_tr, targets)
    tensors = torch.utils.data.TensorDataset(torch.as_tensor(X_tr), torch.as_tensor(targets))
    np.testing.assert_array_equal(ConvNetClassifier(**SOFT).fit(tensors, None).predict_proba(X_te),
                                  from_arrays.predict_proba(X_te))
    # item by item, float64 rows in the order of an unsorted classes parameter
    general = ConvNetClassifier(**SOFT, classes=list(range(10))[::-1]).fit(
        _SoftLabelledImages(X_tr, _soft(y_tr)[:, ::-1]), None)
    np.testing.assert_array_equal(general.classes_, np.arange(10))
    np.testing.assert_allclose(general.predict_proba(X_te), from_arrays.predict_proba(X_te), rtol=0, atol=1e-6)
    bad = _spoil(_soft(y_tr), 9, 0, 0.7)
    with pytest.raises(ValueError, match=r"rows of y must sum to 1 .*row 9"):
        ConvNetClassifier(**SOFT).fit(_SoftLabelledImages(X_tr, bad), None)


@pytest.mark.gpu
def test_soft_labels_train_on_cuda_from_arrays_and_datasets(digits_split):
    X_tr, y_tr, _, _, X_te, y_te = digits_split
    targets = _soft(y_tr).astype(np.float32)
    params = {**SOFT, "max_epochs": 30, "module__width": 16, "device": "cuda"}
    for data in ((X_tr, targets), (_SoftLabelledImages(X_tr, _soft(y_tr)), None)):
        clf = ConvNetClassifier(**params).fit(*data)
        assert next(clf.module_.parameters()).is_cuda
        assert (clf.predict(X_te) == y_te).mean() > 0.85

"""ConvNetClassifier's own training loop against skorch's per-batch loop (``_fast_loop = False``).

The own loop records batch losses without a host sync and reads them later; these tests hold
it to skorch's: the same weights bit for bit (CPU), the same history (keys, order, values,
``*_best`` flags; only the wall-clock ``dur`` differs), the same printed table, the same
values seen by callbacks that read the history during training, and the same checkpoints.
"""

import warnings

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback, EarlyStopping
from skorch.dataset import ValidSplit

from ddcal_sklearn import ConvNetClassifier
from ddcal_sklearn.utils import loads_with_arrays

SMALL = dict(max_epochs=6, batch_size=128, module__width=8, module__depth=1, random_state=0, device="cpu")


@pytest.fixture(scope="module")
def data(digits_images):
    X, y = digits_images
    return X[:300], y[:300]  # 3 batches per epoch (128, 128, 44)


def _net(fast, **params):
    net = ConvNetClassifier(**{**SMALL, **params})
    net._fast_loop = fast
    return net


def _adam(params, lr, momentum, weight_decay):  # takes (and drops) ConvNetClassifier's SGD defaults
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def _lbfgs(params, lr, momentum, weight_decay):  # its step calls the closure several times
    return torch.optim.LBFGS(params, lr=lr, max_iter=2, history_size=2)


def _without_dur(history):
    return [[(key, value) for key, value in row.items() if key != "dur"] for row in history]


def _table_without_dur(text):
    return [line.rsplit(None, 1)[0] if line.strip() else line for line in text.splitlines()]


def assert_same_fit(fast, stock):
    """Same history but ``dur`` (keys in the same order, floats equal) and bitwise-equal weights."""
    assert _without_dur(fast.history) == _without_dur(stock.history)
    for row in fast.history:
        for batch in row["batches"]:
            assert all(type(value) in (float, int) for value in batch.values())
    for a, b in zip(fast.module_.parameters(), stock.module_.parameters(), strict=True):
        assert torch.equal(a, b)


class _Reader(Callback):
    """Reads the history as skorch's callbacks may: the last batch's loss, the epoch's loss and best flag."""

    def initialize(self):
        self.batches, self.epochs, self.previous = [], [], []
        return self

    def on_epoch_begin(self, net, **kwargs):
        if len(net.history) > 1:
            self.previous.append(net.history[-2, "train_loss"])

    def on_batch_end(self, net, training, **kwargs):
        self.batches.append(net.history[-1, "batches", -1, "train_loss" if training else "valid_loss"])

    def on_epoch_end(self, net, **kwargs):
        self.epochs.append((net.history[-1, "train_loss"], net.history[-1, "train_loss_best"]))
        if len(net.history) >= 5:  # EarlyStopping's stop, when it is absent
            raise KeyboardInterrupt


class _EpochReader(Callback):
    """Reads the epoch's losses at its end only (its batches need no float until then)."""

    def initialize(self):
        self.seen = []
        return self

    def on_epoch_end(self, net, **kwargs):
        self.seen.append([batch["train_loss"] for batch in net.history[-1, "batches"]])


@pytest.mark.parametrize("params", [
    {}, {"train_split": ValidSplit(5)}, {"mixup_alpha": 0.3, "augment": "dsa"},
    {"y": "soft"}, {"criterion__label_smoothing": 0.1, "optimizer": _adam, "lr": 1e-3},
    {"optimizer": _lbfgs, "lr": 0.1, "max_epochs": 3},
], ids=["default", "valid-split", "mixup-augment", "soft-labels", "adam", "lbfgs"])
def test_history_and_weights_equal_skorchs_loop(data, params):
    X, y = data
    params = dict(params)
    if params.pop("y", None) == "soft":
        y = np.full((len(y), 10), 0.02, dtype=np.float32)
        y[np.arange(len(y)), data[1]] = 0.82
    fast, stock = _net(True, **params).fit(X, y), _net(False, **params).fit(X, y)
    assert_same_fit(fast, stock)
    assert [key for key in fast.history[-1] if key != "batches"] == [key for key in stock.history[-1] if key != "batches"]


def test_verbose_table_and_silent_print_log_equal_skorchs(data, capsys):
    X, y = data
    tables = []
    for fast in (True, False):
        net = _net(fast, verbose=1, train_split=ValidSplit(5)).fit(X, y)
        tables.append(capsys.readouterr().out)
    assert "train_loss" in tables[0] and len(tables[0].splitlines()) == 2 + SMALL["max_epochs"]
    assert _table_without_dur(tables[0]) == _table_without_dur(tables[1])
    silent = [_net(fast).fit(X, y) for fast in (True, False)]
    assert capsys.readouterr().out == ""
    # a silent PrintLog is left as skorch's leaves it: a later verbose partial_fit prints no header
    assert [dict(net.callbacks_)["print_log"].first_iteration_ for net in silent] == [False, False]
    assert net.verbose == 1


@pytest.mark.parametrize("readers", [["batches"], ["epochs", "stop"], ["batches", "epochs", "stop"]])
def test_callbacks_reading_the_history_mid_fit_see_what_skorchs_loop_shows(data, readers):
    """A batch hook that may read the history gets floats per batch; an epoch hook, floats per epoch."""
    X, y = data
    fits = []
    for fast in (True, False):
        callbacks = {"batches": _Reader(), "epochs": _EpochReader(),
                     "stop": EarlyStopping(monitor="train_loss", patience=1, threshold=0.5)}
        fits.append(_net(fast, callbacks=[(name, callbacks[name]) for name in readers], max_epochs=20).fit(X, y))
    fast, stock = fits
    assert_same_fit(fast, stock)
    assert len(fast.history) < 20  # EarlyStopping stopped both at the same epoch
    for name in readers:
        assert vars(dict(fast.callbacks_)[name]) == vars(dict(stock.callbacks_)[name])
    if "batches" in readers:
        reader = dict(fast.callbacks_)["batches"]
        assert all(type(loss) is float for loss in reader.batches)
        assert reader.epochs == list(zip(fast.history[:, "train_loss"], fast.history[:, "train_loss_best"]))


def test_partial_fit_and_warm_start_continue_as_skorchs_loop(data):
    X, y = data
    fits = []
    for fast in (True, False):
        net = _net(fast, max_epochs=3).fit(X, y).partial_fit(X, y)
        net.set_params(warm_start=True, max_epochs=2)
        fits.append(net.fit(X, y))
    assert_same_fit(*fits)
    assert len(fits[0].history) == 3 + 3 + 2
    assert dict(fits[0].callbacks_)["train_loss"].best_score_ == dict(fits[1].callbacks_)["train_loss"].best_score_


def test_a_resumed_checkpoint_equals_skorchs_loop(data, tmp_path, monkeypatch):
    """Interrupted after the checkpoint of epoch 4, then resumed: as with skorch's loop, bit for bit."""
    X, y = data
    original = ConvNetClassifier.train_step
    fits, saved = [], []
    for fast in (True, False):
        steps = {"n": 0}

        def step(self, batch, **fit_params):
            steps["n"] += 1
            if steps["n"] > 3 * 5 + 1:  # 3 batches per epoch: die in epoch 6
                raise KeyboardInterrupt
            return original(self, batch, **fit_params)

        folder = tmp_path / str(fast)
        with monkeypatch.context() as patch:
            patch.setattr(ConvNetClassifier, "train_step", step)
            # skorch's partial_fit swallows KeyboardInterrupt: the fit "ends" after 5 epochs
            _net(fast, checkpoint_dir=folder, checkpoint_every=2).fit(X, y)
        checkpoint = torch.load(next(folder.glob("classifier-*.pt")), weights_only=True)
        assert checkpoint["epoch"] == 4
        saved.append(_without_dur(loads_with_arrays(checkpoint["history"])))
        fits.append(_net(fast, checkpoint_dir=folder, checkpoint_every=2).fit(X, y))
    assert saved[0] == saved[1] and len(saved[0]) == 4
    assert_same_fit(*fits)
    assert len(fits[0].history) == SMALL["max_epochs"]


def test_no_host_sync_per_batch(data, monkeypatch):
    """Batch losses are read once, at the end (skorch calls loss.item() per batch)."""
    X, y = data
    calls = {"item": 0, "tolist": 0}
    item, tolist = torch.Tensor.item, torch.Tensor.tolist

    def counting(name, method):
        def counted(self, *args, **kwargs):
            calls[name] += 1
            return method(self, *args, **kwargs)
        return counted

    monkeypatch.setattr(torch.Tensor, "item", counting("item", item))
    monkeypatch.setattr(torch.Tensor, "tolist", counting("tolist", tolist))
    for epochs in (3, 9):
        calls.update(item=0, tolist=0)
        net = _net(True, max_epochs=epochs).fit(X, y)
        assert calls == {"item": 0, "tolist": 1}, calls
    calls.update(item=0, tolist=0)
    _net(False, max_epochs=3).fit(X, y)
    assert calls["item"] == 3 * 3  # skorch's loop: one per batch
    assert len(net.history) == 9 and all(type(b["train_loss"]) is float for b in net.history[-1, "batches"])


def test_an_error_mid_fit_leaves_a_float_history(data, monkeypatch):
    X, y = data
    net = _net(True)
    original = ConvNetClassifier.train_step
    steps = {"n": 0}

    def step(self, batch, **fit_params):
        steps["n"] += 1
        if steps["n"] > 7:
            raise RuntimeError("boom")
        return original(self, batch, **fit_params)

    monkeypatch.setattr(ConvNetClassifier, "train_step", step)
    with pytest.raises(RuntimeError, match="boom"):
        net.fit(X, y)
    assert len(net.history) == 3 and type(net.history[-1, "batches", 0, "train_loss"]) is float
    assert type(net.history[1, "train_loss"]) is np.float64 and "_training_loop" not in vars(net)


@pytest.mark.gpu
def test_no_host_sync_per_batch_on_cuda(data):
    """torch's sync debug mode warns at each synchronising CUDA call: their number does not grow with the epochs."""
    X, y = data

    class SyncWatch(Callback):  # hooks around the loop only: the loop is the same with it
        def on_train_begin(self, net, **kwargs):
            torch.cuda.set_sync_debug_mode("warn")

        def on_train_end(self, net, **kwargs):
            torch.cuda.set_sync_debug_mode("default")

    def syncs(fast, epochs):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _net(fast, device="cuda", max_epochs=epochs, callbacks=[SyncWatch()]).fit(X, y)
        return sum("synchroniz" in str(warning.message) for warning in caught)

    syncs(True, 1)  # CUDA's lazy first-use work
    fast, stock = [syncs(True, epochs) for epochs in (3, 12)], [syncs(False, epochs) for epochs in (3, 12)]
    assert fast[0] == fast[1], fast
    assert stock[1] - stock[0] >= 9 * 3, stock  # skorch's loop: one (loss.item()) per batch

"""Many networks in one pass (fit_networks, train_stacked), augmentation while training, the reference schedule."""

import numpy as np
import pytest
import torch
from sklearn.base import clone

from ddcal_sklearn import ConvNetClassifier, fit_networks

SMALL = dict(max_epochs=4, lr=0.05, batch_size=64, module__width=8, module__depth=2, device="cpu")


def _assert_same_networks(batched, separate, atol=2e-5):
    for a, b in zip(batched, separate):
        for (name, p), q in zip(a.module_.named_parameters(), b.module_.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-4, atol=atol, msg=name)
        np.testing.assert_allclose(a.history[:, "train_loss"], b.history[:, "train_loss"], rtol=1e-4)
        assert a.history[:, "event_lr"] == b.history[:, "event_lr"]


@pytest.mark.parametrize("option", [
    {},
    {"augment": "dsa"},
    {"augment": "dc", "label_smoothing": 0.1},
    {"callbacks__lr_scheduler__milestone": 2, "callbacks__lr_scheduler__reset_momentum": True},
], ids=["plain", "dsa", "dc-smoothing", "reference-schedule"])
def test_batched_networks_equal_separate_fits(digits_split, option):
    X_tr, y_tr, _, _, X_te, _ = digits_split
    X, y = X_tr[:200], y_tr[:200]  # 4 batches per epoch, the last one short
    template = ConvNetClassifier(**SMALL, **option)
    seeds = [3, 1, 4]
    batched = fit_networks(template, X, y, random_states=seeds, batched=True)
    separate = [clone(template).set_params(random_state=s).fit(X, y) for s in seeds]
    _assert_same_networks(batched, separate)
    # different seeds give different networks, and each is a fitted estimator like any other
    assert not torch.equal(next(batched[0].module_.parameters()), next(batched[1].module_.parameters()))
    np.testing.assert_allclose(batched[2].predict_proba(X_te), separate[2].predict_proba(X_te), atol=1e-4)
    assert all(net.random_state == s for net, s in zip(batched, seeds))


def test_batched_networks_with_soft_labels(digits_split):
    X_tr, y_tr, *_ = digits_split
    rows = np.full((120, 10), 0.02, dtype=np.float32)
    rows[np.arange(120), y_tr[:120]] = 0.82
    template = ConvNetClassifier(**SMALL)
    batched = fit_networks(template, X_tr[:120], rows, random_states=[0, 1], batched=True)
    separate = [clone(template).set_params(random_state=s).fit(X_tr[:120], rows) for s in (0, 1)]
    _assert_same_networks(batched, separate)


def test_what_cannot_be_batched_is_fitted_one_after_another(digits_split):
    X_tr, y_tr, *_ = digits_split
    X, y = X_tr[:100], y_tr[:100]
    for option, reason in (({"mixup_alpha": 0.2}, "mixup_alpha"), ({"focal_gamma": 1.0}, "CrossEntropyLoss")):
        template = ConvNetClassifier(**{**SMALL, "max_epochs": 2}, **option)
        with pytest.raises(ValueError, match=reason):
            fit_networks(template, X, y, random_states=[0, 1], batched=True)
        auto = fit_networks(template, X, y, random_states=[0, 1])
        separate = [clone(template).set_params(random_state=s).fit(X, y) for s in (0, 1)]
        _assert_same_networks(auto, separate, atol=0)
    # batch norm keeps running statistics: fitted one at a time, with the same result
    template = ConvNetClassifier(**{**SMALL, "max_epochs": 2}, module__norm="batchnorm")
    with pytest.raises(ValueError, match="buffers"):
        fit_networks(template, X, y, random_states=[0, 1], batched=True)
    auto = fit_networks(template, X, y, random_states=[0, 1])
    _assert_same_networks(auto, [clone(template).set_params(random_state=s).fit(X, y) for s in (0, 1)], atol=0)


def test_fit_networks_rejects_bad_arguments(digits_split):
    X_tr, y_tr, *_ = digits_split
    with pytest.raises(TypeError, match="ConvNetClassifier"):
        fit_networks(object(), X_tr, y_tr, random_states=[0])
    with pytest.raises(ValueError, match="random_states is empty"):
        fit_networks(ConvNetClassifier(**SMALL), X_tr, y_tr, random_states=[])
    with pytest.raises(ValueError, match="batched must be"):
        fit_networks(ConvNetClassifier(**SMALL), X_tr, y_tr, random_states=[0], batched="yes")


# --- augmentation while training ------------------------------------------------------------------

def test_augmentation_changes_training_not_inference(digits_split):
    X_tr, y_tr, _, _, X_te, _ = digits_split
    plain = ConvNetClassifier(**SMALL, random_state=0).fit(X_tr, y_tr)
    augmented = ConvNetClassifier(**SMALL, random_state=0, augment="dsa").fit(X_tr, y_tr)
    again = ConvNetClassifier(**SMALL, random_state=0, augment="dsa").fit(X_tr, y_tr)
    # the same initial network (the augmentation stream is drawn after the others) ...
    assert not np.allclose(plain.predict_proba(X_te), augmented.predict_proba(X_te))
    # ... reproducible under random_state, and inference is deterministic (no augmentation there)
    np.testing.assert_array_equal(augmented.predict_proba(X_te), again.predict_proba(X_te))
    np.testing.assert_array_equal(augmented.predict_proba(X_te), augmented.predict_proba(X_te))
    with torch.no_grad():
        logits = augmented.module_(torch.as_tensor(X_te[:20])).numpy()
    np.testing.assert_allclose(augmented.decision_function(X_te[:20]), logits, rtol=1e-5, atol=1e-5)


def test_augment_is_validated_and_grid_searchable(digits_split):
    X_tr, y_tr, *_ = digits_split
    with pytest.raises(ValueError, match="augment"):
        ConvNetClassifier(**SMALL, augment="flip").fit(X_tr[:50], y_tr[:50])
    from sklearn.model_selection import GridSearchCV

    search = GridSearchCV(ConvNetClassifier(**{**SMALL, "max_epochs": 1}, random_state=0),
                          {"augment": [None, "dsa", "dc"]}, cv=2).fit(X_tr[:100], y_tr[:100])
    assert [p["augment"] for p in search.cv_results_["params"]] == [None, "dsa", "dc"]


def test_the_reference_schedule_equals_a_plain_loop_that_rebuilds_its_optimiser(digits_split):
    """evaluate_synset of the reference: E + 1 epochs, lr / 10 after E // 2 + 2 of them, a new SGD there."""
    X_tr, y_tr, *_ = digits_split
    X, y = X_tr[:130], y_tr[:130]
    E = 4
    net = ConvNetClassifier(**{**SMALL, "max_epochs": E + 1}, random_state=0, iterator_train__shuffle=False,
                            callbacks__lr_scheduler__milestone=E // 2 + 2,
                            callbacks__lr_scheduler__reset_momentum=True).fit(X, y)
    module = clone(net).set_params(max_epochs=0).fit(X, y).module_  # the same initial weights
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    lr = SMALL["lr"]
    optimizer = torch.optim.SGD(module.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    for epoch in range(E + 1):
        for start in range(0, len(Xt), SMALL["batch_size"]):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(module(Xt[start:start + 64]), yt[start:start + 64]).backward()
            optimizer.step()
        if epoch == E // 2 + 1:
            lr *= 0.1
            optimizer = torch.optim.SGD(module.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    for p, q in zip(net.module_.parameters(), module.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


# --- architectures by name -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fashion_small(data_root):
    from ddcal_sklearn import load_fashion_mnist

    X, y = load_fashion_mnist(data_root, subset="test", return_X_y=True)
    index = np.concatenate([np.flatnonzero(y == c)[:6] for c in range(10)])
    return X[index], y[index]


@pytest.mark.parametrize("name, params", [
    # (ResNet-18 at width 4 without augmentation: the cut-out zeros of a DSA draw leave channels of
    # near-zero variance whose instance norm amplifies float rounding beyond any fixed tolerance)
    ("convnet_d1", {"module__width": 8}), ("lenet", {}), ("resnet18", {"module__width": 4, "augment": None}),
    ("alexnet", {}), ("vgg11", {}),
])
def test_architectures_by_name_train_batched_on_28x28(fashion_small, name, params):
    X, y = fashion_small
    template = ConvNetClassifier(module=name, max_epochs=1, batch_size=32, device="cpu", **{"augment": "dsa", **params})
    batched = fit_networks(template, X, y, random_states=[0, 1], batched=True)
    separate = [clone(template).set_params(random_state=s).fit(X, y) for s in (0, 1)]
    _assert_same_networks(batched, separate, atol=1e-4)
    assert batched[0].predict_proba(X[:3]).shape == (3, 10)


def test_unknown_architecture_names_the_parameter(digits_split):
    X_tr, y_tr, *_ = digits_split
    with pytest.raises(ValueError, match="module='resnet99' is not a known network"):
        ConvNetClassifier(module="resnet99", max_epochs=1, device="cpu").fit(X_tr[:50], y_tr[:50])


def test_the_distiller_takes_network_names(digits_split):
    from ddcal_sklearn import DatasetDistiller

    X_tr, y_tr, *_ = digits_split
    named = DatasetDistiller(net="convnet_d1", net_params={"width": 8}, ipc=1, n_iterations=2, device="cpu",
                             random_state=0).fit(X_tr, y_tr)
    from ddcal_sklearn import ConvNet

    classed = DatasetDistiller(net=ConvNet, net_params={"width": 8, "depth": 1}, ipc=1, n_iterations=2,
                               device="cpu", random_state=0).fit(X_tr, y_tr)
    np.testing.assert_array_equal(named.X_synthetic_, classed.X_synthetic_)

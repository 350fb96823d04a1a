import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import train_test_split

from ddcal_sklearn import ConvNetClassifier, DatasetDistiller, load_synthetic_set

SMALL = dict(ipc=3, n_iterations=15, batch_real=16, net_params={"width": 16, "depth": 2}, random_state=0)


@pytest.fixture(scope="module")
def distilled(digits_images):
    X, y = digits_images
    return DatasetDistiller(**SMALL).fit(X, y)


def test_synthetic_set_shape_labels_and_dtype(distilled, digits_images):
    X, y = digits_images
    assert distilled.X_synthetic_.shape == (30, 1, 8, 8)
    assert distilled.X_synthetic_.dtype == X.dtype
    np.testing.assert_array_equal(distilled.y_synthetic_, np.repeat(np.arange(10), 3))
    assert distilled.loss_curve_.shape == (15,) and np.all(np.isfinite(distilled.loss_curve_))


def test_dm_moves_images_and_lowers_the_matching_loss(digits_images):
    X, y = digits_images
    d = DatasetDistiller(**{**SMALL, "n_iterations": 60}).fit(X, y)
    start = DatasetDistiller(**{**SMALL, "n_iterations": 0}).fit(X, y).X_synthetic_
    assert not np.allclose(start, d.X_synthetic_)
    # init="real" starts from real images of the right class
    assert any(np.allclose(start[0], x) for x in X[y == 0])
    assert d.loss_curve_[-10:].mean() < 0.5 * d.loss_curve_[:5].mean()


def test_same_random_state_same_synthetic_set_and_global_rng_untouched(digits_images, distilled):
    X, y = digits_images
    state = torch.random.get_rng_state()
    again = DatasetDistiller(**SMALL).fit(X, y)
    assert torch.equal(state, torch.random.get_rng_state())
    np.testing.assert_array_equal(again.X_synthetic_, distilled.X_synthetic_)
    other = DatasetDistiller(**{**SMALL, "random_state": 1}).fit(X, y)
    assert not np.allclose(other.X_synthetic_, distilled.X_synthetic_)


def test_mdt_zero_is_plain_dm_and_positive_ratio_changes_the_set(digits_images, distilled):
    X, y = digits_images
    zero = DatasetDistiller(**SMALL, mdt_mask_ratio=0.0).fit(X, y)
    np.testing.assert_array_equal(zero.X_synthetic_, distilled.X_synthetic_)
    masked = DatasetDistiller(**SMALL, mdt_mask_ratio=0.5).fit(X, y)
    assert not np.allclose(masked.X_synthetic_, distilled.X_synthetic_)
    assert np.all(np.isfinite(masked.X_synthetic_))
    # the learnable images themselves are never masked: no exact zeros appear
    assert (masked.X_synthetic_ == 0).mean() < 0.01


def test_string_labels_noise_init_and_no_augmentation(digits_images):
    X, y = digits_images
    names = np.array(list("abcdefghij"))[y]
    d = DatasetDistiller(**{**SMALL, "init": "noise", "augment": None}).fit(X, names)
    assert d.y_synthetic_.tolist()[:3] == ["a", "a", "a"]
    np.testing.assert_array_equal(d.classes_, np.array(list("abcdefghij")))


def test_flat_features_use_an_mlp(digits_images):
    X, y = digits_images
    d = DatasetDistiller(**{**SMALL, "augment": None, "net_params": {"hidden_sizes": (32,)}})
    X_syn, y_syn = d.fit_resample(X.reshape(len(X), -1), y)
    assert X_syn.shape == (30, 64)


def test_save_load_round_trip_is_exact_and_pickle_free(distilled, tmp_path):
    path = distilled.save(tmp_path / "digits_dm", mean=[0.3], std=[0.4])
    loaded = load_synthetic_set(path)
    np.testing.assert_array_equal(loaded.data, distilled.X_synthetic_)
    np.testing.assert_array_equal(loaded.target, distilled.y_synthetic_)
    meta = loaded.metadata
    assert (meta["method"], meta["ipc"], meta["mdt_mask_ratio"], meta["mean"]) == ("dm", 3, 0.0, [0.3])
    with np.load(path, allow_pickle=False) as archive:  # readable without pickle
        assert set(archive.files) == {"data", "target", "metadata"}


def test_corrupted_or_newer_files_give_clear_errors(distilled, tmp_path):
    from ddcal_sklearn import save_synthetic_set

    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="not a readable synthetic set"):
        load_synthetic_set(bad)
    newer = save_synthetic_set(tmp_path / "newer", distilled.X_synthetic_, distilled.y_synthetic_)
    with np.load(newer) as a:
        data, target = a["data"], a["target"]
    np.savez(newer, data=data, target=target, metadata=np.array('{"format_version": 99}'))
    with pytest.raises(ValueError, match="format_version=99"):
        load_synthetic_set(newer)


@pytest.mark.parametrize(
    "params, make_data, match",
    [
        (dict(ipc=500), None, r"ipc=500 is larger than the smallest class"),
        (dict(method="kip"), None, r"'method' parameter of DatasetDistiller must be"),
        (dict(method_params={"syn_steps": 3}), None, r"method_params has keys \['syn_steps'\] unknown to "
                                                     r"method='dm'; allowed: \['cuda_graphs'\]"),
        (dict(mdt_mask_ratio=1.0), None, r"mdt_mask_ratio"),
        (dict(mdt_mask_ratio=-0.1), None, r"mdt_mask_ratio"),
        ({}, lambda X, y: (X[:, 0], y), r"needs images"),
        ({}, lambda X, y: (np.where(np.arange(X.size).reshape(X.shape) == 7, np.nan, X), y), "NaN"),
        ({}, lambda X, y: (X, np.zeros_like(y)), "only one class"),
        ({}, lambda X, y: (X.reshape(len(X), -1), y), r"augment='dsa' needs images"),
        (dict(device="cuda:7"), None, r"device='cuda:7'"),
        (dict(siamese_draws="per_image"), None, r"'siamese_draws' parameter of DatasetDistiller must be"),
    ],
)
def test_bad_input_is_rejected_before_any_work(digits_images, monkeypatch, params, make_data, match):
    X, y = digits_images
    if make_data is not None:
        X, y = make_data(X, y)
    if params.get("device") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs")
    # no work may start: the first strategy call would fail loudly
    monkeypatch.setattr("ddcal_sklearn.distillation._dm._DistributionMatchingRun.loss",
                        lambda *a: pytest.fail("distillation started before validation"))
    with pytest.raises(ValueError, match=match):
        DatasetDistiller(**{**SMALL, **params}).fit(X, y)


def test_a_class_with_no_samples_in_a_split_is_caught(digits_images):
    X, y = digits_images
    # a label set declared by the user's split where a class is absent: only 9 classes present
    keep = y != 3
    d = DatasetDistiller(**SMALL).fit(X[keep], y[keep])
    assert 3 not in d.classes_ and len(d.y_synthetic_) == 27


def test_clone_keeps_parameters(distilled):
    c = clone(distilled)
    assert c.get_params() == distilled.get_params() and not hasattr(c, "X_synthetic_")


def test_siamese_draws_default_is_per_class_and_part_of_the_run(digits_images, distilled, tmp_path):
    X, y = digits_images
    assert distilled.siamese_draws == "per_class"
    explicit = DatasetDistiller(**SMALL, siamese_draws="per_class").fit(X, y)
    np.testing.assert_array_equal(explicit.X_synthetic_, distilled.X_synthetic_)
    shared = DatasetDistiller(**SMALL, siamese_draws="shared").fit(X, y)
    assert not np.allclose(shared.X_synthetic_, distilled.X_synthetic_)
    # the fingerprint holds it: a checkpoint of one never resumes the other
    params = {**SMALL, "n_iterations": 2, "checkpoint_dir": tmp_path}
    DatasetDistiller(**params, siamese_draws="shared").fit(X, y)
    other = DatasetDistiller(**params).fit(X, y)
    assert other.start_iteration_ == 0 and len(list(tmp_path.glob("distiller-*.pt"))) == 2
    assert DatasetDistiller(**params).fit(X, y).start_iteration_ == 2
    # and the saved set says how it was made
    assert load_synthetic_set(shared.save(tmp_path / "set.npz")).metadata["siamese_draws"] == "shared"


def _accuracy_dm_vs_random(X_tr, y_tr, X_te, y_te, distiller_params, clf_params, seeds):
    results = []
    for seed in seeds:
        d = DatasetDistiller(ipc=10, random_state=seed, **distiller_params).fit(X_tr, y_tr)
        dm = ConvNetClassifier(random_state=seed, **clf_params).fit(d.X_synthetic_, d.y_synthetic_)
        rng = np.random.default_rng(seed)
        idx = np.concatenate([rng.choice(np.flatnonzero(y_tr == k), 10, replace=False) for k in np.unique(y_tr)])
        rand = ConvNetClassifier(random_state=seed, **clf_params).fit(X_tr[idx], y_tr[idx])
        results.append(((dm.predict(X_te) == y_te).mean(), (rand.predict(X_te) == y_te).mean()))
    return np.array(results)


@pytest.mark.slow
def test_dm_beats_random_real_images_on_digits(digits_images):
    X, y = digits_images
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=500, stratify=y, random_state=0)
    res = _accuracy_dm_vs_random(
        X_tr, y_tr, X_te, y_te,
        dict(n_iterations=200, batch_real=64, net_params={"width": 32, "depth": 2}),
        dict(max_epochs=300, module__depth=2, module__width=32), seeds=range(3))
    dm, rand = res.mean(0)
    print(f"digits ipc=10, 3 seeds: DM {dm:.3f} vs random {rand:.3f}")
    assert dm > rand + 0.01


@pytest.mark.slow
def test_dm_beats_random_real_images_on_fashion_mnist(data_root):
    from ddcal_sklearn import load_fashion_mnist

    X, y = load_fashion_mnist(data_root, return_X_y=True)
    X_te, y_te = load_fashion_mnist(data_root, subset="test", return_X_y=True)
    rng = np.random.default_rng(0)
    tr = np.concatenate([rng.choice(np.flatnonzero(y == k), 500, replace=False) for k in range(10)])
    te = rng.choice(len(y_te), 2000, replace=False)
    res = _accuracy_dm_vs_random(
        X[tr], y[tr], X_te[te], y_te[te],
        dict(n_iterations=200, batch_real=32, net_params={"width": 32}),
        dict(max_epochs=200, module__width=32), seeds=range(3))
    dm, rand = res.mean(0)
    print(f"Fashion-MNIST (5,000 train images) ipc=10, 3 seeds: DM {dm:.3f} vs random {rand:.3f}")
    assert dm > rand + 0.02


def test_non_contiguous_and_read_only_inputs_are_accepted(digits_images, distilled):
    X, y = digits_images
    X_ro = X.copy()
    X_ro.setflags(write=False)
    reversed_ = DatasetDistiller(**SMALL).fit(X_ro[::-1], y[::-1])
    assert reversed_.X_synthetic_.shape == distilled.X_synthetic_.shape
    assert np.all(np.isfinite(reversed_.X_synthetic_))

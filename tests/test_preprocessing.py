"""ZCAWhitening: equal to kornia's (as MTT uses it), invertible, a Pipeline step, saved without pickle."""

import json
import zipfile

import numpy as np
import pytest
import torch
from imblearn.pipeline import Pipeline
from sklearn.exceptions import NotFittedError

from ddcal_sklearn import (
    ConvNetClassifier,
    DatasetDistiller,
    ZCAWhitening,
    load_cifar10,
    load_synthetic_set,
    save_synthetic_set,
    unnormalize,
)
from ddcal_sklearn.datasets import load_digits_images
from ddcal_sklearn.preprocessing import describe_zca

kornia = pytest.importorskip("kornia")


def _kornia(X, **kwargs):
    """kornia.enhance.ZCAWhitening fitted on X as MTT does (utils.py, get_dataset: ``zca.fit(images)``)."""
    return kornia.enhance.ZCAWhitening(**kwargs).fit(torch.from_numpy(X))


def _compare_with_kornia(X, **kwargs):
    """Max abs differences of transform and inverse_transform from kornia's, and of the round trip from X."""
    ours = ZCAWhitening(**{"eps": 0.1, **kwargs}).fit(X)
    theirs = _kornia(X, **{"eps": 0.1, "compute_inv": True, **kwargs})
    whitened = ours.transform(X)
    assert whitened.shape == X.shape and whitened.dtype == X.dtype
    kornia_whitened = theirs(torch.from_numpy(X)).numpy()
    kornia_inverse = theirs.inverse_transform(torch.from_numpy(whitened)).numpy()
    return (np.abs(whitened - kornia_whitened).max(),
            np.abs(ours.inverse_transform(whitened) - kornia_inverse).max(),
            np.abs(ours.inverse_transform(whitened) - X).max())


@pytest.fixture(scope="module")
def digits_pixels():
    """Digits as pixels in [0, 1] (what MTT whitens: ToTensor, no normalisation), float32 (n, 1, 8, 8)."""
    digits = load_digits_images()
    return unnormalize(digits.data, digits.mean, digits.std).astype(np.float32), digits.target


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_equals_kornia_on_digits(digits_pixels, dtype):
    X = digits_pixels[0].astype(dtype)
    transform, inverse, round_trip = _compare_with_kornia(X)
    # measured: float32 1.4e-6, 1.2e-6, 7.2e-7; float64 2.1e-14, 9.8e-15, 4.3e-15
    assert transform < 1e-5 and inverse < 1e-5 and round_trip < 1e-4, (transform, inverse, round_trip)


def test_equals_kornia_biased_and_small_eps(digits_pixels):
    transform, inverse, round_trip = _compare_with_kornia(digits_pixels[0][:300].astype(np.float64),
                                                          eps=1e-3, unbiased=False)
    assert transform < 1e-8 and inverse < 1e-8 and round_trip < 1e-8, (transform, inverse, round_trip)


@pytest.mark.slow
def test_equals_kornia_on_cifar10(data_root):
    """300 CIFAR-10 test images (3x32x32: 3,072 pixels, a rank-299 covariance), as MTT whitens CIFAR-10."""
    cifar = load_cifar10(data_root, subset="test")
    index = np.random.default_rng(0).choice(len(cifar.target), 300, replace=False)
    X = np.clip(unnormalize(cifar.data[index], cifar.mean, cifar.std), 0, 1).astype(np.float32)
    transform, inverse, round_trip = _compare_with_kornia(X)
    # measured: 3.0e-6, 1.5e-6, 1.1e-6
    assert transform < 1e-5 and inverse < 1e-5 and round_trip < 1e-4, (transform, inverse, round_trip)


def test_whitens(digits_pixels):
    """On its training data the whitened covariance is S / (S + eps): the identity where variance >> eps."""
    X = digits_pixels[0].astype(np.float64)
    zca = ZCAWhitening(eps=1e-6).fit(X)
    flat = zca.transform(X).reshape(len(X), -1)
    np.testing.assert_allclose(flat.mean(axis=0), 0, atol=1e-10)
    covariance = np.cov(flat, rowvar=False)
    # (digits has constant border pixels: their zero-variance directions stay 0)
    U, S = zca.eigenvectors_, zca.eigenvalues_
    np.testing.assert_allclose(covariance, (U * (S / (S + 1e-6))) @ U.T, atol=1e-8)
    assert np.sum(S < 1e-12) == 3 and np.sum(S / (S + 1e-6) > 0.5) == 61  # 61 directions vary: variance ~1
    np.testing.assert_allclose(zca.whitening_matrix_, zca.whitening_matrix_.T, atol=1e-9)  # symmetric: ZCA
    np.testing.assert_allclose(zca.whitening_matrix_ @ zca.inverse_matrix_, np.eye(64), atol=1e-8)


def test_flat_rows_and_images_agree(digits_pixels):
    X = digits_pixels[0]
    images = ZCAWhitening().fit(X)
    rows = ZCAWhitening().fit(X.reshape(len(X), -1))
    assert images.input_shape_ == (1, 8, 8) and rows.input_shape_ == (64,)
    np.testing.assert_array_equal(images.transform(X).reshape(len(X), -1), rows.transform(X.reshape(len(X), -1)))


def test_shape_and_inverse_errors(digits_pixels):
    X = digits_pixels[0]
    zca = ZCAWhitening().fit(X)
    with pytest.raises(ValueError, match=r"fitted on samples of shape \(1, 8, 8\)"):
        zca.transform(X.reshape(len(X), 1, 4, 16))
    with pytest.raises(ValueError, match="feature names exist for flat input"):
        zca.get_feature_names_out()
    no_inverse = ZCAWhitening(compute_inv=False).fit(X)
    assert no_inverse.inverse_matrix_ is None and not hasattr(no_inverse, "inverse_transform")
    with pytest.raises(AttributeError, match="no attribute 'inverse_transform'") as info:
        no_inverse.inverse_transform(X)
    assert "Use ZCAWhitening(compute_inv=True)" in str(info.value.__cause__)  # scikit-learn chains the reason
    with pytest.raises(ValueError, match="eps"):
        ZCAWhitening(eps=0).fit(X)
    with pytest.raises(ValueError, match="1 sample"):
        ZCAWhitening().fit(X[:1])


def test_feature_names_of_flat_input():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(np.random.default_rng(0).normal(size=(20, 3)), columns=["a", "b", "c"])
    zca = ZCAWhitening().set_output(transform="pandas").fit(frame)
    assert list(zca.get_feature_names_out()) == ["a", "b", "c"]
    assert list(zca.transform(frame).columns) == ["a", "b", "c"]


def test_pipeline_before_a_distiller_and_a_classifier(digits_pixels):
    """imbalanced-learn's Pipeline: whiten, distil (fit only), train; predict whitens then classifies."""
    X, y = digits_pixels
    pipe = Pipeline([
        ("zca", ZCAWhitening()),
        ("distil", DatasetDistiller(method="dm", ipc=2, n_iterations=5, augment=None, batch_real=16,
                                    net_params={"width": 8, "depth": 2}, random_state=0)),
        ("net", ConvNetClassifier(module__depth=2, module__width=8, max_epochs=50, lr=0.05, random_state=0)),
    ]).fit(X, y)
    zca, distiller, net = (pipe.named_steps[name] for name in ("zca", "distil", "net"))
    assert distiller.X_synthetic_.shape == (20, 1, 8, 8)
    # the network was trained on the synthetic set, in the whitened space; prediction whitens first
    np.testing.assert_array_equal(pipe.predict_proba(X[:50]), net.predict_proba(zca.transform(X[:50])))
    assert zca.inverse_transform(distiller.X_synthetic_).shape == (20, 1, 8, 8)
    assert pipe.score(X, y) > 0.3  # 20 images: well above chance (0.1), nothing more


def test_save_and_load(digits_pixels, tmp_path):
    X = digits_pixels[0]
    zca = ZCAWhitening(eps=0.05).fit(X)
    path = zca.save(tmp_path / "zca")
    assert path.name == "zca.npz"
    loaded = ZCAWhitening.load(path, sha256=zca.sha256_)
    assert loaded.get_params() == zca.get_params() and loaded.input_shape_ == (1, 8, 8)
    assert loaded.sha256_ == zca.sha256_
    np.testing.assert_allclose(loaded.transform(X), zca.transform(X), rtol=0, atol=1e-6)
    np.testing.assert_allclose(loaded.inverse_matrix_, zca.inverse_matrix_, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="not the one of sha256"):
        ZCAWhitening.load(path, sha256=ZCAWhitening().fit(X).sha256_)


def _rewrite(path, out, **changes):
    """A copy of the .npz at ``path`` with members (arrays) or metadata entries changed."""
    with np.load(path, allow_pickle=False) as npz:
        members = {name: npz[name] for name in npz.files}
    meta = json.loads(str(members.pop("metadata")))
    for name, value in changes.items():
        if name in members:
            members[name] = value
        else:
            meta[name] = value
    np.savez(out, metadata=np.array(json.dumps(meta)), **members)
    return out


@pytest.mark.parametrize("change, message", [
    ({"eigenvalues": None}, "do not match its recorded SHA-256"),
    ({"kind": "ExpertTrajectories"}, "kind"),
    ({"input_shape": [1, 8, 9]}, "do not match samples of shape"),
    ({"params": {"eps": -1.0, "compute_inv": True, "unbiased": True}}, "eps"),
    ({"params": {"eps": 0.1, "compute_inv": True, "unbiased": True, "evil": 1}}, "unexpected keyword"),
])
def test_load_refuses_a_file_that_lies(digits_pixels, tmp_path, change, message):
    zca = ZCAWhitening().fit(digits_pixels[0])
    path = zca.save(tmp_path / "zca.npz")
    if "eigenvalues" in change:
        change = {"eigenvalues": zca.eigenvalues_ * 2}
    with pytest.raises(ValueError, match=message):
        ZCAWhitening.load(_rewrite(path, tmp_path / "lie.npz", **change))


def test_load_refuses_pickles(tmp_path):
    path = tmp_path / "pickle.npz"
    np.savez(path, metadata=np.array("{}"), mean=np.array([object()], dtype=object),
             eigenvalues=np.zeros(1), eigenvectors=np.zeros((1, 1)))
    with pytest.raises(ValueError, match="never objects"):
        ZCAWhitening.load(path)
    with zipfile.ZipFile(path) as archive:  # the object array is a pickle inside: it was never unpickled
        assert "mean.npy" in archive.namelist()


def test_synthetic_set_records_its_zca(digits_pixels, tmp_path):
    """``DatasetDistiller.save(path, zca=...)`` stores the transform's record; the transform is reloaded by hand."""
    X, y = digits_pixels
    zca = ZCAWhitening().fit(X)
    distiller = DatasetDistiller(method="dm", ipc=1, n_iterations=2, augment=None, batch_real=8,
                                 net_params={"width": 8, "depth": 2}, random_state=0).fit(zca.transform(X), y)
    record = load_synthetic_set(distiller.save(tmp_path / "in_memory", zca=zca)).metadata["zca"]
    assert record == {"kind": "ZCAWhitening", "eps": 0.1, "unbiased": True, "input_shape": [1, 8, 8],
                      "sha256": zca.sha256_, "file": None}

    zca_path = zca.save(tmp_path / "zca.npz")
    synthetic = load_synthetic_set(distiller.save(tmp_path / "set", zca=zca_path))
    record = synthetic.metadata["zca"]
    assert record["file"] == str(zca_path) and record["sha256"] == zca.sha256_
    reloaded = ZCAWhitening.load(record["file"], sha256=record["sha256"])
    np.testing.assert_allclose(reloaded.inverse_transform(synthetic.data),
                               zca.inverse_transform(distiller.X_synthetic_), atol=1e-6)

    # a record read back passes through a new save unchanged
    again = save_synthetic_set(tmp_path / "again", synthetic.data, synthetic.target, **synthetic.metadata)
    assert load_synthetic_set(again).metadata["zca"] == record
    with pytest.raises(ValueError, match="not the transform of these images"):
        save_synthetic_set(tmp_path / "flat", synthetic.data.reshape(10, -1), synthetic.target, zca=zca)
    with pytest.raises(TypeError, match="zca must be a fitted ZCAWhitening"):
        save_synthetic_set(tmp_path / "bad", synthetic.data, synthetic.target, zca=0.1)
    with pytest.raises(ValueError, match="a ZCA record has the keys"):
        save_synthetic_set(tmp_path / "bad", synthetic.data, synthetic.target, zca={"eps": 0.1})
    with pytest.raises(NotFittedError):
        describe_zca(ZCAWhitening())


def test_load_of_damaged_files_is_a_value_error_naming_the_file(digits_pixels, tmp_path):
    """Truncated files and flipped bytes: a ValueError naming the file, or (a harmless byte) the same transform."""
    zca = ZCAWhitening().fit(digits_pixels[0])
    original = zca.save(tmp_path / "zca.npz").read_bytes()
    rng = np.random.default_rng(0)
    for case in range(60):
        content = bytearray(original)
        if case % 3 == 0:
            content = content[: rng.integers(len(content))]
        else:
            for where in rng.integers(len(content), size=1 + case % 4):
                content[where] ^= int(rng.integers(1, 256))
        path = tmp_path / f"damaged{case}.npz"
        path.write_bytes(bytes(content))
        try:
            loaded = ZCAWhitening.load(path)
        except ValueError as exc:
            assert str(path) in str(exc)
        else:
            assert loaded.sha256_ == zca.sha256_

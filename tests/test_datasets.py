"""The real-data loaders, run on the files in ../shared/datasets (or $DDCAL_DATA)."""

import gzip

import numpy as np
import pytest

from ddcal_sklearn.datasets import (
    CIFAR10_CLASSES,
    FASHION_MNIST_CLASSES,
    images_from_dataset,
    load_cifar10,
    load_digits_images,
    load_fashion_mnist,
    unnormalize,
)

FASHION_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


@pytest.fixture(scope="module")
def fashion_test(data_root):
    return load_fashion_mnist(data_root, subset="test")


@pytest.fixture(scope="module")
def cifar_test(data_root):
    # Decoding the JPEGs costs ~1-2 s, so the suite decodes the test subset once here
    # and once more in the determinism/cache test, and never the 50,000 train images.
    return load_cifar10(data_root, subset="test")


def test_digits_images(digits_images):
    digits = load_digits_images()
    X, y = digits.data, digits.target
    assert X.shape == (1797, 1, 8, 8) and X.dtype == np.float32
    assert y.shape == (1797,) and y.dtype == np.int64
    assert digits.target_names == [str(i) for i in range(10)]
    np.testing.assert_allclose(X.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(X.std(axis=(0, 2, 3)), 1, atol=1e-5)
    assert digits.mean.dtype == digits.std.dtype == np.float32
    # Same images as the shared fixture, and unnormalize gives back pixels / 16.
    np.testing.assert_allclose(X, digits_images[0], atol=1e-5)
    pixels = unnormalize(X, digits.mean, digits.std)
    np.testing.assert_allclose(pixels.min(), 0, atol=1e-6)
    np.testing.assert_allclose(pixels.max(), 1, atol=1e-6)
    X2, y2 = load_digits_images(return_X_y=True)
    np.testing.assert_array_equal(X2, X)
    np.testing.assert_array_equal(y2, y)


def test_fashion_mnist_test_subset(fashion_test):
    X, y = fashion_test.data, fashion_test.target
    assert X.shape == (10000, 1, 28, 28) and X.dtype == np.float32
    assert y.dtype == np.int64
    assert fashion_test.target_names == list(FASHION_MNIST_CLASSES)
    assert fashion_test.target_names[0] == "T-shirt/top"
    np.testing.assert_array_equal(np.bincount(y), [1000] * 10)
    # The constants come from the train set; the test set's mean is ~0.0024 std higher.
    assert abs(X.mean()) < 0.01
    assert abs(X.std() - 1) < 0.01
    assert "MIT" in fashion_test.DESCR


def test_fashion_mnist_train_subset(data_root):
    X, y = load_fashion_mnist(data_root, return_X_y=True)
    assert X.shape == (60000, 1, 28, 28) and X.dtype == np.float32
    np.testing.assert_array_equal(np.bincount(y), [6000] * 10)
    # The normalisation constants are the train set's own, to 4 digits.
    assert abs(X.mean()) < 1e-3
    assert abs(X.std() - 1) < 1e-3


def test_fashion_mnist_torchvision_folder(data_root, tmp_path, fashion_test):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in FASHION_FILES:
        (raw / name).symlink_to(data_root / "fashion-mnist" / name)
    X, y = load_fashion_mnist(tmp_path, subset="test", return_X_y=True)
    np.testing.assert_array_equal(X, fashion_test.data)
    np.testing.assert_array_equal(y, fashion_test.target)


def test_root_from_environment(data_root, monkeypatch, fashion_test):
    monkeypatch.setenv("DDCAL_DATA", str(data_root))
    X, _ = load_fashion_mnist(subset="test", return_X_y=True)
    np.testing.assert_array_equal(X, fashion_test.data)


def test_no_root(monkeypatch):
    monkeypatch.delenv("DDCAL_DATA", raising=False)
    for loader in (load_fashion_mnist, load_cifar10):
        with pytest.raises(FileNotFoundError, match="root=None.*DDCAL_DATA"):
            loader()


def test_missing_files_list_every_path(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_fashion_mnist(tmp_path, subset="test")
    message = str(info.value)
    torchvision_raw = tmp_path / "FashionMNIST" / "raw"
    for folder in (tmp_path / "fashion-mnist", tmp_path, torchvision_raw):
        assert str(folder / "t10k-images-idx3-ubyte.gz") in message
    assert "root=" in message and "DDCAL_DATA" in message and "download=True" in message

    with pytest.raises(FileNotFoundError) as info:
        load_cifar10(tmp_path, subset="test")
    message = str(info.value)
    assert str(tmp_path / "cifar-10-batches-py") in message
    assert str(tmp_path / "cifar10-jpg.tar.gz") in message
    assert "root=" in message and "DDCAL_DATA" in message and "CIFAR10(root" in message


@pytest.mark.parametrize("loader", [load_fashion_mnist, load_cifar10])
@pytest.mark.parametrize("subset", ["val", "Train", None])
def test_bad_subset(loader, subset, tmp_path):
    with pytest.raises(ValueError, match=r"subset must be one of \('train', 'test'\)"):
        loader(tmp_path, subset=subset)


def _corrupt_truncated_gzip(raw):
    return gzip.compress(raw)[:-100]


def _corrupt_truncated_payload(raw):
    return gzip.compress(raw[:-2])


def _corrupt_magic(raw):
    return gzip.compress(b"\x00\x00\x0d\x01" + raw[4:])


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (_corrupt_truncated_gzip, "Cannot decompress"),
        (_corrupt_truncated_payload, "needs 10,008"),
        (_corrupt_magic, "expected magic number 00000801, got 00000d01"),
    ],
)
def test_corrupted_idx_file(data_root, tmp_path, corrupt, message):
    # Garble the small labels file: the same parser reads the images.
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    images, labels = "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"
    (folder / images).symlink_to(data_root / "fashion-mnist" / images)
    raw = gzip.decompress((data_root / "fashion-mnist" / labels).read_bytes())
    (folder / labels).write_bytes(corrupt(raw))
    with pytest.raises(ValueError, match=message) as info:
        load_fashion_mnist(tmp_path, subset="test")
    assert str(folder / labels) in str(info.value)


def test_cifar10_jpeg_test_subset(cifar_test):
    X, y = cifar_test.data, cifar_test.target
    assert X.shape == (10000, 3, 32, 32) and X.dtype == np.float32
    assert X.flags.c_contiguous
    assert y.dtype == np.int64
    assert cifar_test.target_names == list(CIFAR10_CLASSES)
    np.testing.assert_array_equal(np.bincount(y), [1000] * 10)
    # Ordered by class, then by rank within the class.
    np.testing.assert_array_equal(y, np.repeat(np.arange(10), 1000))
    # The constants are train-set means; the test set's are 0.013-0.019 std higher.
    np.testing.assert_allclose(X.mean(axis=(0, 2, 3)), 0, atol=0.03)
    # The customary std constants are the mean per-image std, smaller than the pixel
    # std, so the channels come out at ~1.21, 1.21 and 1.30 rather than 1.
    assert np.all((X.std(axis=(0, 2, 3)) > 1.15) & (X.std(axis=(0, 2, 3)) < 1.35))
    assert "JPEG quality 75" in cifar_test.DESCR
    pixels = unnormalize(X, cifar_test.mean, cifar_test.std)
    assert pixels.min() > -1e-5 and pixels.max() < 1 + 1e-5


def test_cifar10_deterministic_and_cached(data_root, tmp_path, cifar_test):
    # A second decode, which also writes the cache, gives the same arrays...
    X1, y1 = load_cifar10(data_root, subset="test", cache_dir=tmp_path, return_X_y=True)
    np.testing.assert_array_equal(X1, cifar_test.data)
    np.testing.assert_array_equal(y1, cifar_test.target)
    assert [p.name for p in tmp_path.iterdir()] == ["cifar10-jpg-test.npz"]
    # ...and so does reading the cache back.
    X2, y2 = load_cifar10(data_root, subset="test", cache_dir=tmp_path, return_X_y=True)
    np.testing.assert_array_equal(X2, cifar_test.data)
    np.testing.assert_array_equal(y2, cifar_test.target)


def test_cifar10_torchvision_folder(tmp_path, monkeypatch, cifar_test):
    # No lossless CIFAR-10 here, so stand in for torchvision's CIFAR10 with the JPEG
    # pixels in its layout (N, H, W, C), and check the folder route matches.
    import torchvision.datasets

    pixels = unnormalize(cifar_test.data, cifar_test.mean, cifar_test.std)
    images = np.round(pixels * 255).astype(np.uint8).transpose(0, 2, 3, 1)
    calls = []

    class FakeCIFAR10:
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            self.data, self.targets = images, list(cifar_test.target)

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    (tmp_path / "cifar-10-batches-py").mkdir()
    bunch = load_cifar10(tmp_path, subset="test")
    assert calls == [(str(tmp_path), False, False)]
    np.testing.assert_allclose(bunch.data, cifar_test.data, atol=1e-5)
    np.testing.assert_array_equal(bunch.target, cifar_test.target)
    assert "JPEG" not in bunch.DESCR


# ------------------------------------------------------------------ images_from_dataset


def _write_image_folder(root, pixels, labels, class_names):
    """A folder per class of PNG files (what torchvision's ImageFolder reads): uint8 (n, H, W) or (n, H, W, C)."""
    from PIL import Image

    for i, (image, label) in enumerate(zip(pixels, labels)):
        folder = root / class_names[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:05d}.png")
    return root


def _expected(pixels_chw):
    """float pixels (n, C, H, W) in [0, 1] normalised with their own per-channel mean and (population) std."""
    mean = pixels_chw.mean(axis=(0, 2, 3), dtype=np.float64)
    std = pixels_chw.std(axis=(0, 2, 3), dtype=np.float64)
    return (pixels_chw - mean.reshape(1, -1, 1, 1)) / std.reshape(1, -1, 1, 1), mean, std


@pytest.fixture(scope="module")
def digits_folder(tmp_path_factory):
    """200 digits as 8x8 grey PNGs in a folder per class; ImageFolder reads them as RGB."""
    digits = load_digits_images()
    pixels = np.round(unnormalize(digits.data[:200, 0], digits.mean, digits.std) * 255).astype(np.uint8)
    names = [f"digit_{k}" for k in range(10)]
    root = _write_image_folder(tmp_path_factory.mktemp("digits"), pixels, digits.target[:200], names)
    return root, pixels, digits.target[:200]


def test_images_from_image_folder(digits_folder, capsys):
    from torchvision.datasets import ImageFolder

    root, pixels, labels = digits_folder
    bunch = images_from_dataset(ImageFolder(root), batch_size=64, verbose=1)
    assert "reading images" in capsys.readouterr().err  # the progress bar
    # ImageFolder lists files class by class: the labels come sorted, the images with them
    order = np.argsort(labels, kind="stable")
    rgb = np.repeat(pixels[order, None] / 255.0, 3, axis=1)
    expected, mean, std = _expected(rgb)
    assert bunch.data.shape == (200, 3, 8, 8) and bunch.data.dtype == np.float32
    np.testing.assert_allclose(bunch.data, expected, atol=1e-5)
    np.testing.assert_array_equal(bunch.target, labels[order])
    assert bunch.target.dtype == np.int64
    assert bunch.target_names == [f"digit_{k}" for k in range(10)]
    np.testing.assert_allclose(bunch.mean, mean, rtol=1e-6)
    np.testing.assert_allclose(bunch.std, std, rtol=1e-6)
    assert "ImageFolder (200 images of shape (3, 8, 8))" in bunch.DESCR


def test_images_from_dataset_batches_and_workers_agree(digits_folder):
    """Statistics merged batch by batch (1 image or 7 at a time, in a worker process) equal one pass."""
    from torchvision.datasets import ImageFolder

    root, _, _ = digits_folder
    reference = images_from_dataset(ImageFolder(root))
    for kwargs in ({"batch_size": 1}, {"batch_size": 7, "num_workers": 1}):
        other = images_from_dataset(ImageFolder(root), **kwargs)
        np.testing.assert_allclose(other.data, reference.data, atol=1e-5)
        np.testing.assert_allclose(other.std, reference.std, rtol=1e-6)


def test_images_from_dataset_with_given_statistics_and_resizing(digits_folder):
    from PIL import Image
    from torchvision.datasets import ImageFolder

    root, pixels, labels = digits_folder
    grey = ImageFolder(root, loader=lambda path: Image.open(path).convert("L"))
    X, y = images_from_dataset(grey, mean=[0.5], std=[0.25], return_X_y=True)
    order = np.argsort(labels, kind="stable")
    np.testing.assert_allclose(X, (pixels[order, None] / 255.0 - 0.5) / 0.25, atol=1e-5)
    np.testing.assert_array_equal(y, labels[order])
    resized = images_from_dataset(grey, mean=[0.5], std=[0.25], image_size=(16, 12))
    assert resized.data.shape == (200, 1, 16, 12)
    assert resized.mean.tolist() == [0.5] and resized.std.tolist() == [0.25]
    assert "given" in resized.DESCR and "resized to 16x12" in resized.DESCR


def test_images_from_cifar10_pngs(cifar_test, tmp_path):
    """Real RGB images: 100 CIFAR-10 test images written as PNG and read back exactly."""
    from torchvision.datasets import ImageFolder

    index = np.random.default_rng(0).choice(len(cifar_test.target), 100, replace=False)
    pixels = np.round(unnormalize(cifar_test.data[index], cifar_test.mean, cifar_test.std) * 255)
    pixels = np.clip(pixels, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    labels = cifar_test.target[index]
    _write_image_folder(tmp_path, pixels, labels, CIFAR10_CLASSES)
    bunch = images_from_dataset(ImageFolder(tmp_path), mean=cifar_test.mean, std=cifar_test.std)
    present = sorted(set(labels.tolist()))
    order = np.argsort(labels, kind="stable")
    expected = (pixels[order].transpose(0, 3, 1, 2) / 255.0 - cifar_test.mean.reshape(1, 3, 1, 1)) \
        / cifar_test.std.reshape(1, 3, 1, 1)
    np.testing.assert_allclose(bunch.data, expected, atol=1e-5)
    assert bunch.target_names == [CIFAR10_CLASSES[k] for k in present]  # ImageFolder's classes: the folders
    np.testing.assert_array_equal(np.asarray(present)[bunch.target], labels[order])


def test_images_from_tensors_and_arrays():
    """A TensorDataset of uint8 (C, H, W) tensors, float ones, and (H, W, C) NumPy arrays read alike."""
    import torch
    from torch.utils.data import TensorDataset

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(10, 3, 5, 4), dtype=np.uint8)
    labels = np.arange(10) % 2
    as_uint8 = images_from_dataset(TensorDataset(torch.from_numpy(pixels), torch.from_numpy(labels)))
    as_float = images_from_dataset(TensorDataset(torch.from_numpy(pixels / 255.0), torch.from_numpy(labels)))
    as_arrays = images_from_dataset(list(zip(pixels.transpose(0, 2, 3, 1), labels.tolist())))
    expected, _, _ = _expected(pixels / 255.0)
    for bunch in (as_uint8, as_float, as_arrays):
        np.testing.assert_allclose(bunch.data, expected, atol=1e-5)
        np.testing.assert_array_equal(bunch.target, labels)
        assert bunch.target_names == ["0", "1"]


def test_images_from_dataset_errors(tmp_path):
    from PIL import Image
    from torchvision.datasets import ImageFolder

    for size, name in (((8, 8), "a"), ((9, 8), "b")):
        (tmp_path / name).mkdir()
        Image.fromarray(np.zeros(size, np.uint8)).save(tmp_path / name / "0.png")
    with pytest.raises(ValueError, match="different shapes.*image_size="):
        images_from_dataset(ImageFolder(tmp_path), mean=[0, 0, 0], std=[1, 1, 1])
    with pytest.raises(ValueError, match="a channel of the images is constant"):
        images_from_dataset(ImageFolder(tmp_path), image_size=8)
    with pytest.raises(ValueError, match="both mean and std"):
        images_from_dataset(ImageFolder(tmp_path), mean=[0, 0, 0])
    with pytest.raises(ValueError, match="std must be 3 finite numbers"):
        images_from_dataset(ImageFolder(tmp_path), mean=[0, 0, 0], std=[1], image_size=8)
    with pytest.raises(ValueError, match="std must be > 0"):
        images_from_dataset(ImageFolder(tmp_path), mean=[0, 0, 0], std=[1, 0, 1], image_size=8)
    with pytest.raises(ValueError, match="image_size must be"):
        images_from_dataset(ImageFolder(tmp_path), image_size=(8, 0))
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        images_from_dataset(ImageFolder(tmp_path), batch_size=0)
    with pytest.raises(ValueError, match="holds no images"):
        images_from_dataset([])
    with pytest.raises(TypeError, match="map-style"):
        images_from_dataset(image for image in [(np.zeros((4, 4), np.uint8), 0)])
    with pytest.raises(TypeError, match=r"\(image, label\) pairs"):
        images_from_dataset([np.zeros((4, 4), np.uint8)])
    with pytest.raises(TypeError, match="an image is a str"):
        images_from_dataset([("not an image", 0)])

"""Real image datasets as normalised float32 arrays of shape (n, C, H, W).

Every loader returns a :class:`sklearn.utils.Bunch` (or ``(data, target)`` with
``return_X_y=True``) and never touches the network: CIFAR-10 and Fashion-MNIST are
read from files under ``root``, which defaults to the ``DDCAL_DATA`` environment
variable.
"""

import gzip
import io
import os
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

__all__ = [
    "DATA_ENV",
    "images_from_dataset",
    "load_cifar10",
    "load_digits_images",
    "load_fashion_mnist",
    "unnormalize",
]

#: Environment variable naming the folder of the real datasets (``root=None`` reads it).
DATA_ENV = "DDCAL_DATA"
#: Environment variable naming a folder for decoded-archive caches (see :func:`load_cifar10`).
CACHE_ENV = "DDCAL_CACHE"

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
# The customary CIFAR-10 constants. The std values are the mean per-image std, not the
# dataset-wide pixel std (about 0.247, 0.243, 0.261), so normalised data has std ~1.2.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
FASHION_MNIST_MEAN = (0.2860,)
FASHION_MNIST_STD = (0.3530,)

_SUBSETS = ("train", "test")

_DIGITS_DESCR = """\
Optical recognition of handwritten digits (scikit-learn's bundled copy of the UCI test
set): 1,797 grey-scale 8x8 images of the digits 0-9, pixel counts 0-16 scaled to [0, 1]
and then standardised with this dataset's own mean and std.
Licence: CC BY 4.0. Cite: E. Alpaydin and C. Kaynak, "Optical Recognition of Handwritten
Digits", UCI Machine Learning Repository, 1998."""

_FASHION_DESCR = """\
Fashion-MNIST ({subset} subset, {n:,} images): 28x28 grey-scale images of Zalando
articles in 10 classes, read from the original IDX files in
{folder}
Pixels are scaled to [0, 1] and normalised with mean 0.2860 and std 0.3530.
Licence: MIT (Zalando SE, 2017). Cite: H. Xiao, K. Rasul and R. Vollgraf,
"Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning Algorithms",
arXiv:1708.07747, 2017."""

_CIFAR_DESCR = """\
CIFAR-10 ({subset} subset, {n:,} images): 32x32 RGB images in 10 classes, read from
{source}
Pixels are scaled to [0, 1] and normalised with the usual CIFAR-10 constants, mean
(0.4914, 0.4822, 0.4465) and std (0.2023, 0.1994, 0.2010).{caveat}
Licence: none stated. Cite: A. Krizhevsky, "Learning Multiple Layers of Features from
Tiny Images", technical report, University of Toronto, 2009."""

_CIFAR_JPEG_CAVEAT = """
Caveat: this copy is lossy, re-encoded as JPEG quality 75 (about 30 dB PSNR against
the originals, slightly lower channel std). Accuracies are comparable between methods
run on this copy, but expect published numbers (lossless CIFAR-10) to be a little
higher. Images are grouped by class: shuffle before any split."""


def _check_subset(subset):
    if subset not in _SUBSETS:
        raise ValueError(f"subset must be one of {_SUBSETS}, got {subset!r}.")


def _data_root(root, dataset, how_to_get):
    """Resolve ``root``, falling back to ``$DDCAL_DATA``."""
    if root is None:
        root = os.environ.get(DATA_ENV) or None
    if root is None:
        raise FileNotFoundError(
            f"No folder to read {dataset} from: root=None and the {DATA_ENV} "
            f"environment variable is not set. Pass root=<folder> or set "
            f"{DATA_ENV}=<folder>. "
            + how_to_get
        )
    return Path(root)


def _not_found(dataset, paths, how_to_get):
    looked = "\n".join(f"  {path}" for path in paths)
    return FileNotFoundError(
        f"{dataset} not found; looked for:\n{looked}\n"
        f"Pass root=<folder> or set the {DATA_ENV} environment variable to the folder "
        "that holds the data. " + how_to_get
    )


def _normalize(images, scale, mean, std):
    """Scale uint8 images (n, C, H, W) to [0, 1] and standardise each channel."""
    X = images.astype(np.float32, order="C")
    # In place: the float copy of CIFAR-10 train alone is 600 MB.
    X *= np.float32(1.0 / scale)
    X -= mean.reshape(1, -1, 1, 1)
    X /= std.reshape(1, -1, 1, 1)
    return X


def _bunch(X, y, target_names, mean, std, descr, return_X_y):
    if return_X_y:
        return X, y
    return Bunch(
        data=X,
        target=y,
        target_names=list(target_names),
        mean=mean,
        std=std,
        DESCR=descr,
    )


def unnormalize(X, mean, std):
    """Undo per-channel normalisation, e.g. to plot images.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_channels, height, width) or \
(n_channels, height, width)
        Normalised images.
    mean, std : array-like of shape (n_channels,)
        The ``mean`` and ``std`` entries of the loader's Bunch.

    Returns
    -------
    ndarray
        ``X * std + mean`` per channel: pixel values in about [0, 1].

    Examples
    --------
    >>> from ddcal_sklearn.datasets import load_digits_images, unnormalize
    >>> digits = load_digits_images()
    >>> pixels = unnormalize(digits.data, digits.mean, digits.std)
    >>> float(pixels.min()), float(pixels.max())
    (0.0, 1.0)
    """
    X = np.asarray(X)
    mean = np.asarray(mean, dtype=X.dtype).reshape(-1, 1, 1)
    std = np.asarray(std, dtype=X.dtype).reshape(-1, 1, 1)
    return X * std + mean


def load_digits_images(*, return_X_y=False):
    """Load scikit-learn's bundled digits as normalised 8x8 images.

    Pixel counts (0-16) are divided by 16, then standardised with the dataset's own
    mean and std, so the result has mean 0 and std 1. No file is needed.

    Parameters
    ----------
    return_X_y : bool, default=False
        If True, return ``(data, target)`` instead of a Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        With ``data`` (float32, shape (1797, 1, 8, 8)), ``target`` (int64, shape
        (1797,)), ``target_names`` (``['0', ..., '9']``), ``mean`` and ``std``
        (float32, shape (1,)) used for normalising, and ``DESCR``.
    (data, target) : tuple
        If ``return_X_y`` is True.

    Examples
    --------
    >>> from ddcal_sklearn.datasets import load_digits_images
    >>> digits = load_digits_images()
    >>> digits.data.shape, digits.data.dtype
    ((1797, 1, 8, 8), dtype('float32'))
    >>> digits.target_names[:3]
    ['0', '1', '2']
    >>> X, y = load_digits_images(return_X_y=True)
    >>> y[:5], y.dtype
    (array([0, 1, 2, 3, 4]), dtype('int64'))
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = (digits.images / 16.0).astype(np.float32)[:, None]
    mean = pixels.mean(axis=(0, 2, 3), dtype=np.float64).astype(np.float32)
    std = pixels.std(axis=(0, 2, 3), dtype=np.float64).astype(np.float32)
    X = (pixels - mean.reshape(1, -1, 1, 1)) / std.reshape(1, -1, 1, 1)
    y = digits.target.astype(np.int64)
    names = [str(name) for name in digits.target_names]
    return _bunch(X, y, names, mean, std, _DIGITS_DESCR, return_X_y)


# ----------------------------------------------------------------------- Fashion-MNIST

_FASHION_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_FASHION_HOW_TO = (
    "To get the files, run torchvision.datasets.FashionMNIST(root, download=True) on a "
    "machine with internet (they land in root/FashionMNIST/raw/), or download the four "
    "*-ubyte.gz files from https://github.com/zalandoresearch/fashion-mnist."
)


def _read_idx(path, ndim):
    """Read a gzipped IDX file of unsigned bytes with ``ndim`` dimensions."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(
            f"Cannot decompress the IDX file {path}: {exc}. The file is truncated or "
            "corrupted; download it again."
        ) from exc

    header = 4 + 4 * ndim
    # Magic: two zero bytes, 0x08 (unsigned byte data), then the number of dimensions.
    magic = bytes((0, 0, 0x08, ndim))
    if len(raw) < header or raw[:4] != magic:
        got = raw[:4].hex() or "an empty file"
        raise ValueError(
            f"{path} is not a {ndim}-d IDX file of unsigned bytes: expected magic "
            f"number {magic.hex()}, got {got}. The file is corrupted or not the one "
            "named; download it again."
        )
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise ValueError(
            f"{path} holds {len(raw):,} bytes after decompression, but its header "
            f"(shape {shape}) needs {expected:,}. The file is truncated or corrupted; "
            "download it again."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def load_fashion_mnist(root=None, *, subset="train", return_X_y=False):
    """Load Fashion-MNIST from its original IDX files.

    The gzipped IDX files are looked for in ``root/fashion-mnist/``, ``root/`` and
    torchvision's ``root/FashionMNIST/raw/``, in that order. Nothing is downloaded.

    Parameters
    ----------
    root : str or path-like, default=None
        Folder holding the data. None means the ``DDCAL_DATA`` environment variable.
    subset : {"train", "test"}, default="train"
        The 60,000 training or the 10,000 test images.
    return_X_y : bool, default=False
        If True, return ``(data, target)`` instead of a Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        With ``data`` (float32, shape (n, 1, 28, 28), pixels in [0, 1] normalised with
        mean 0.2860 and std 0.3530), ``target`` (int64, shape (n,)), ``target_names``
        (the ten class names), ``mean`` and ``std`` (float32, shape (1,)) and
        ``DESCR``.
    (data, target) : tuple
        If ``return_X_y`` is True.

    Raises
    ------
    FileNotFoundError
        If no root is given or the files are in none of the folders.
    ValueError
        If ``subset`` is invalid or a file is corrupted.

    Examples
    --------
    >>> from ddcal_sklearn.datasets import load_fashion_mnist
    >>> fmnist = load_fashion_mnist("/data", subset="test")  # doctest: +SKIP
    >>> fmnist.data.shape, fmnist.target_names[0]  # doctest: +SKIP
    ((10000, 1, 28, 28), 'T-shirt/top')
    """
    _check_subset(subset)
    root = _data_root(root, "Fashion-MNIST", _FASHION_HOW_TO)
    files = _FASHION_FILES[subset]
    folders = [root / "fashion-mnist", root, root / "FashionMNIST" / "raw"]
    folder = next(
        (d for d in folders if all((d / name).is_file() for name in files)), None
    )
    if folder is None:
        paths = [d / name for d in folders for name in files]
        raise _not_found("Fashion-MNIST", paths, _FASHION_HOW_TO)

    images = _read_idx(folder / files[0], ndim=3)
    labels = _read_idx(folder / files[1], ndim=1)
    if images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise ValueError(
            f"Fashion-MNIST files in {folder} do not match: images of shape "
            f"{images.shape} (expected (n, 28, 28)) and {len(labels)} labels."
        )
    if labels.max(initial=0) >= len(FASHION_MNIST_CLASSES):
        raise ValueError(
            f"{folder / files[1]} holds label {labels.max()}; Fashion-MNIST labels "
            "are 0-9."
        )

    mean = np.array(FASHION_MNIST_MEAN, dtype=np.float32)
    std = np.array(FASHION_MNIST_STD, dtype=np.float32)
    X = _normalize(images[:, None], 255.0, mean, std)
    y = labels.astype(np.int64)
    descr = _FASHION_DESCR.format(subset=subset, n=len(y), folder=folder)
    return _bunch(X, y, FASHION_MNIST_CLASSES, mean, std, descr, return_X_y)


# ---------------------------------------------------------------------------- CIFAR-10

_CIFAR_FOLDER = "cifar-10-batches-py"
_CIFAR_ARCHIVE = "cifar10-jpg.tar.gz"
_CIFAR_HOW_TO = (
    "To get the data, run torchvision.datasets.CIFAR10(root, download=True) on a "
    f"machine with internet; it creates root/{_CIFAR_FOLDER}."
)


def _read_cifar_jpeg(archive, subset):
    """Decode ``subset/<class>/NNNN.jpg`` from the archive in one pass.

    Returns uint8 images (n, 3, 32, 32) and int64 labels, ordered by class index,
    then by NNNN, whatever the order inside the archive.
    """
    from PIL import Image

    class_index = {name: i for i, name in enumerate(CIFAR10_CLASSES)}
    images, labels, ranks = [], [], []
    try:
        # Stream mode: one sequential pass over the gzip, no seeking.
        with tarfile.open(archive, "r|gz") as tar:
            for member in tar:
                parts = member.name.removeprefix("./").split("/")
                if not member.isfile() or parts[0] != subset:
                    continue
                if len(parts) != 3 or parts[1] not in class_index:
                    raise ValueError(
                        f"Unexpected member {member.name!r} in {archive}: expected "
                        f"{subset}/<class>/NNNN.jpg, <class> one of {CIFAR10_CLASSES}."
                    )
                stem = parts[2].removesuffix(".jpg")
                if not stem.isdigit():
                    raise ValueError(
                        f"Unexpected file name {member.name!r} in {archive}: expected "
                        "NNNN.jpg, NNNN being the image's rank within its class."
                    )
                data = tar.extractfile(member).read()
                try:
                    with Image.open(io.BytesIO(data)) as img:
                        pixels = np.asarray(img.convert("RGB"))
                except OSError as exc:
                    raise ValueError(
                        f"Cannot decode {member.name} in {archive}: {exc}."
                    ) from exc
                if pixels.shape != (32, 32, 3):
                    raise ValueError(
                        f"{member.name} in {archive} has shape {pixels.shape[:2]}; "
                        "CIFAR-10 images are 32x32."
                    )
                images.append(pixels)
                labels.append(class_index[parts[1]])
                ranks.append(int(stem))
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise ValueError(
            f"Cannot read {archive}: {exc}. The archive is truncated or corrupted."
        ) from exc
    if not images:
        raise ValueError(f"{archive} holds no images under {subset}/.")

    labels = np.asarray(labels, dtype=np.int64)
    order = np.lexsort((ranks, labels))
    images = np.stack(images)[order].transpose(0, 3, 1, 2)
    return np.ascontiguousarray(images), labels[order]


def _cached_cifar_jpeg(archive, subset, cache_dir):
    """:func:`_read_cifar_jpeg`, through an .npz cache keyed on the archive's stat."""
    stat = archive.stat()
    source = np.array([stat.st_size, stat.st_mtime_ns], dtype=np.int64)
    cache = Path(cache_dir) / f"cifar10-jpg-{subset}.npz"
    try:
        with np.load(cache, allow_pickle=False) as npz:
            if np.array_equal(npz["source"], source):
                return npz["images"], npz["labels"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        pass  # No cache yet, or an unreadable one: rebuild it.

    images, labels = _read_cifar_jpeg(archive, subset)
    cache.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename, so an interrupted run never leaves a half-written cache.
    partial = cache.with_name(f"{cache.name}.{os.getpid()}.partial")
    with open(partial, "wb") as f:
        np.savez(f, images=images, labels=labels, source=source)
    os.replace(partial, cache)
    return images, labels


def load_cifar10(root=None, *, subset="train", return_X_y=False, cache_dir=None):
    """Load CIFAR-10 from torchvision's folder or from a JPEG archive.

    Looks first for torchvision's ``root/cifar-10-batches-py`` (the lossless
    original), then for ``root/cifar10-jpg.tar.gz``, a lossy JPEG (quality 75) copy
    laid out as ``train/<class>/NNNN.jpg`` and ``test/<class>/NNNN.jpg``. Nothing is
    downloaded.

    Parameters
    ----------
    root : str or path-like, default=None
        Folder holding the data. None means the ``DDCAL_DATA`` environment variable.
    subset : {"train", "test"}, default="train"
        The 50,000 training or the 10,000 test images.
    return_X_y : bool, default=False
        If True, return ``(data, target)`` instead of a Bunch.
    cache_dir : str or path-like, default=None
        Folder for an .npz cache of the decoded JPEG archive (uint8, about 150 MB
        for the training set), rebuilt when the archive's size or modification time
        changes. Decoding all 60,000 images takes several seconds; None means the
        ``DDCAL_CACHE`` environment variable, and no cache when it is unset.
        Unused for torchvision's folder, which loads fast.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        With ``data`` (float32, shape (n, 3, 32, 32), pixels in [0, 1] normalised with
        the usual CIFAR-10 mean and std), ``target`` (int64, shape (n,)),
        ``target_names`` (the ten class names), ``mean`` and ``std`` (float32, shape
        (3,)) and ``DESCR``. Images from the archive are ordered by class, then by
        their rank within the class.
    (data, target) : tuple
        If ``return_X_y`` is True.

    Raises
    ------
    FileNotFoundError
        If no root is given or neither source is under it.
    ValueError
        If ``subset`` is invalid or the archive is corrupted.
    RuntimeError
        From torchvision, if ``cifar-10-batches-py`` is incomplete or corrupted.

    Notes
    -----
    The std constants (0.2023, 0.1994, 0.2010) are the customary ones but smaller than
    the dataset-wide pixel std, so the normalised data has a per-channel std of about
    1.2 to 1.3 rather than 1.

    Examples
    --------
    >>> from ddcal_sklearn.datasets import load_cifar10
    >>> X, y = load_cifar10("/data", subset="test", return_X_y=True)  # doctest: +SKIP
    >>> X.shape, y[:3]  # doctest: +SKIP
    ((10000, 3, 32, 32), array([0, 0, 0]))
    """
    _check_subset(subset)
    root = _data_root(root, "CIFAR-10", _CIFAR_HOW_TO)
    folder, archive = root / _CIFAR_FOLDER, root / _CIFAR_ARCHIVE
    if folder.is_dir():
        from torchvision.datasets import CIFAR10

        dataset = CIFAR10(str(root), train=subset == "train", download=False)
        images = np.asarray(dataset.data).transpose(0, 3, 1, 2)
        labels = np.asarray(dataset.targets, dtype=np.int64)
        source, caveat = folder, ""
    elif archive.is_file():
        cache_dir = cache_dir if cache_dir is not None else os.environ.get(CACHE_ENV) or None
        if cache_dir is None:
            images, labels = _read_cifar_jpeg(archive, subset)
        else:
            images, labels = _cached_cifar_jpeg(archive, subset, cache_dir)
        source, caveat = archive, _CIFAR_JPEG_CAVEAT
    else:
        raise _not_found("CIFAR-10", [folder, archive], _CIFAR_HOW_TO)

    mean = np.array(CIFAR10_MEAN, dtype=np.float32)
    std = np.array(CIFAR10_STD, dtype=np.float32)
    X = _normalize(images, 255.0, mean, std)
    descr = _CIFAR_DESCR.format(
        subset=subset, n=len(labels), source=source, caveat=caveat
    )
    return _bunch(X, labels, CIFAR10_CLASSES, mean, std, descr, return_X_y)


# ------------------------------------------------------------------ any image dataset

_ANY_DESCR = """\
{name} ({n:,} images of shape {shape}), read image by image with
ddcal_sklearn.datasets.images_from_dataset: pixels scaled to [0, 1]{resized} and
normalised per channel with mean {mean} and std {std} ({where})."""


class _PixelBatch:
    """``collate_fn`` of :func:`images_from_dataset`: (image, label) pairs -> float32 pixels (B, C, H, W), labels.

    A class (not a closure) so that DataLoader workers can pickle it.
    """

    def __init__(self, image_size):
        self.image_size = image_size

    def __call__(self, items):
        import torch

        images, labels = [], []
        for item in items:
            if not isinstance(item, (tuple, list)) or len(item) < 2:
                raise TypeError(f"the dataset must return (image, label) pairs, got {type(item).__name__}.")
            images.append(self.pixels(item[0]))
            label = item[1]
            labels.append(label.item() if isinstance(label, (torch.Tensor, np.ndarray)) and label.ndim == 0
                          else label)
        shapes = sorted({tuple(image.shape) for image in images})
        if len(shapes) > 1:
            raise ValueError(f"the dataset holds images of different shapes (channels, height, width), e.g. "
                             f"{shapes[0]} and {shapes[-1]}: pass image_size=(height, width) to resize them, "
                             "and give the dataset a transform converting them to one mode (e.g. "
                             "ImageFolder's default loader makes every image RGB).")
        return torch.stack(images), labels

    def pixels(self, image):
        """One image as a float32 tensor (C, H, W) in [0, 1], resized to ``image_size`` if given."""
        import torch
        from PIL import Image
        from torchvision.transforms import functional as F

        if isinstance(image, Image.Image):
            if image.mode == "1":
                image = image.convert("L")
            elif image.mode not in ("L", "RGB"):
                image = image.convert("RGB")
            tensor = F.pil_to_tensor(image).float().div_(255.0)
        elif isinstance(image, (torch.Tensor, np.ndarray)):
            # a tensor is (C, H, W) or (H, W) as transforms.ToTensor makes it; an ndarray is (H, W, C) or (H, W),
            # as PIL and torchvision's datasets store them
            tensor = torch.as_tensor(image)
            if tensor.ndim == 2:
                tensor = tensor[None]
            elif tensor.ndim == 3 and isinstance(image, np.ndarray):
                tensor = tensor.permute(2, 0, 1)
            if tensor.ndim != 3:
                raise ValueError(f"an image has shape {tuple(image.shape)}; expected (channels, height, width) "
                                 "for a tensor, (height, width, channels) for an array, or (height, width).")
            if tensor.dtype == torch.uint8:
                tensor = tensor.float().div_(255.0)
            elif tensor.is_floating_point():
                tensor = tensor.float()  # taken to hold pixels in [0, 1], as ToTensor returns them
            else:
                raise TypeError(f"an image has dtype {tensor.dtype}; expected uint8 (0-255) or floats in [0, 1].")
        else:
            raise TypeError(f"an image is a {type(image).__name__}; expected a PIL image, a torch tensor or a "
                            "NumPy array (the dataset's transform may turn it into something else).")
        if self.image_size is not None and tuple(tensor.shape[1:]) != self.image_size:
            tensor = F.resize(tensor, list(self.image_size), antialias=True)
        return tensor.contiguous()


def _check_image_size(image_size):
    if image_size is None:
        return None
    size = (image_size, image_size) if isinstance(image_size, int) else image_size
    try:
        size = tuple(size)
    except TypeError:
        size = ()
    if len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size):
        raise ValueError(f"image_size must be None, a positive int or a (height, width) pair of them, got "
                         f"{image_size!r}.")
    return size


def _check_channel_statistic(value, name, n_channels):
    if value is None:
        return None
    array = np.asarray(value, dtype=np.float64).reshape(-1)
    if array.shape != (n_channels,) or not np.isfinite(array).all():
        raise ValueError(f"{name} must be {n_channels} finite numbers, one per channel, got {value!r}.")
    if name == "std" and (array <= 0).any():
        raise ValueError(f"std must be > 0 for every channel, got {value!r}.")
    return array.astype(np.float32)


def images_from_dataset(dataset, *, mean=None, std=None, image_size=None, batch_size=256, num_workers=0,
                        verbose=0, return_X_y=False):
    """Read any image dataset into the library's normalised ``(n, C, H, W)`` float32 arrays.

    Takes a torchvision dataset (``CIFAR100``, ``ImageFolder`` for a folder per class,
    ``ImageNet``...), a ``Subset`` of one, or any map-style dataset (``len`` and
    ``dataset[i]``) returning ``(image, label)`` pairs, and reads every image once:
    pixels scaled to [0, 1], resized if asked, then normalised with a per-channel
    ``mean`` and ``std``, computed from these images when not given (the standard
    deviation of all their pixels, per channel). So CIFAR-100, Tiny ImageNet or a
    user's own photos need no loader of ours.

    Images may be PIL images (mode ``"L"`` gives 1 channel, ``"RGB"`` 3; ``"1"`` is read
    as ``"L"``, other modes are converted to RGB), torch tensors ``(C, H, W)`` as
    ``transforms.ToTensor`` returns them, or NumPy arrays ``(H, W, C)`` / ``(H, W)``;
    uint8 values are divided by 255, floats are taken as [0, 1] already.

    Parameters
    ----------
    dataset : torch.utils.data.Dataset
        Map-style, returning ``(image, label)``; give it no normalising transform
        (this function normalises).
    mean, std : array-like of shape (n_channels,), default=None
        Normalisation of pixels in [0, 1]. None computes them from ``dataset`` (then
        both must be None). Pass the training split's statistics when you read its
        test split, so that both are normalised alike.
    image_size : int or (int, int), default=None
        Resize every image to ``(image_size, image_size)`` or ``(height, width)``
        (bilinear, antialiased). None keeps the sizes, which must then all be equal.
    batch_size : int, default=256
        Images read per step of the ``DataLoader`` (per worker).
    num_workers : int, default=0
        ``DataLoader`` worker processes decoding images in parallel; 0 reads them in
        this process.
    verbose : int, default=0
        Show a progress bar (tqdm, on stderr) when > 0.
    return_X_y : bool, default=False
        If True, return ``(data, target)`` instead of a Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        With ``data`` (float32, shape (n, C, H, W)), ``target`` (labels as the
        dataset gives them; int64 for integers), ``target_names`` (the dataset's
        ``classes`` when it has them, else the distinct labels as strings), ``mean``
        and ``std`` (float32, shape (C,)) and ``DESCR``, like the other loaders.
    (data, target) : tuple
        If ``return_X_y`` is True.

    Raises
    ------
    ValueError
        If the dataset is empty, its images differ in shape (and ``image_size`` is
        None), or ``mean``, ``std``, ``image_size``, ``batch_size`` or ``num_workers``
        is invalid.
    TypeError
        If the dataset is not map-style or returns something else than
        ``(image, label)`` with an image of a supported type.

    Notes
    -----
    Everything is held in memory: ``n * C * H * W * 4`` bytes (Tiny ImageNet's
    100,000 training images at 64x64: 4.9 GB). The statistics are accumulated in
    float64 batch by batch (Chan et al.'s parallel variance), so no second copy is made.

    Examples
    --------
    A folder per class of 64x64 PNG images (here 3 images of 2 classes, written on the
    fly), read with torchvision's ``ImageFolder``:

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from PIL import Image
    >>> from torchvision.datasets import ImageFolder
    >>> from ddcal_sklearn import images_from_dataset
    >>> folder = tempfile.TemporaryDirectory()
    >>> root = Path(folder.name)
    >>> rng = np.random.default_rng(0)
    >>> for name in ("cat", "dog"):
    ...     (root / name).mkdir()
    ...     for i in range(3):
    ...         pixels = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    ...         Image.fromarray(pixels).save(root / name / f"{i}.png")
    >>> train = images_from_dataset(ImageFolder(root))
    >>> train.data.shape, train.data.dtype, train.target.tolist(), train.target_names
    ((6, 3, 64, 64), dtype('float32'), [0, 0, 0, 1, 1, 1], ['cat', 'dog'])
    >>> bool(np.allclose(train.data.mean(axis=(0, 2, 3)), 0, atol=1e-5))
    True
    >>> bool(np.allclose(train.data.std(axis=(0, 2, 3)), 1, atol=1e-4))
    True

    A test split is normalised with the training statistics; ``image_size`` resizes:

    >>> small = images_from_dataset(ImageFolder(root), mean=train.mean, std=train.std, image_size=32)
    >>> small.data.shape
    (6, 3, 32, 32)
    >>> folder.cleanup()

    Any torchvision dataset works the same way:

    >>> from torchvision.datasets import CIFAR100
    >>> cifar100 = images_from_dataset(CIFAR100("/data", download=True), verbose=1)  # doctest: +SKIP
    >>> cifar100.data.shape, len(cifar100.target_names)  # doctest: +SKIP
    ((50000, 3, 32, 32), 100)
    """
    import torch
    from torch.utils.data import DataLoader, IterableDataset
    from tqdm.auto import tqdm

    if isinstance(dataset, IterableDataset) or not hasattr(dataset, "__len__") \
            or not hasattr(dataset, "__getitem__"):
        raise TypeError(f"dataset must be a map-style dataset (len(dataset) and dataset[i]), got "
                        f"{type(dataset).__name__}.")
    size = _check_image_size(image_size)
    for name, value, low in (("batch_size", batch_size, 1), ("num_workers", num_workers, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}.")
    if (mean is None) != (std is None):
        raise ValueError("pass both mean and std, or neither (then both are computed from the dataset).")
    n_samples = len(dataset)
    if n_samples == 0:
        raise ValueError(f"the dataset ({type(dataset).__name__}) holds no images.")

    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=_PixelBatch(size))
    X, labels, start = None, [], 0
    count, channel_mean, channel_m2 = 0, None, None  # running per-channel statistics (float64)
    with tqdm(total=n_samples, unit="image", desc="reading images", disable=not verbose) as bar:
        for batch, batch_labels in loader:
            if X is None:
                X = np.empty((n_samples, *batch.shape[1:]), dtype=np.float32)
            elif batch.shape[1:] != X.shape[1:]:
                raise ValueError(f"the dataset holds images of different shapes (channels, height, width), "
                                 f"e.g. {tuple(X.shape[1:])} and {tuple(batch.shape[1:])}: pass "
                                 "image_size=(height, width) to resize them.")
            stop = start + len(batch)
            if stop > n_samples:
                raise ValueError(f"the dataset returned more images than its length, {n_samples}.")
            X[start:stop] = batch.numpy()
            labels.extend(batch_labels)
            start = stop
            if mean is None:
                values = batch.double().transpose(0, 1).reshape(batch.shape[1], -1)
                n_new = values.shape[1]
                new_mean = values.mean(dim=1)
                new_m2 = ((values - new_mean[:, None]) ** 2).sum(dim=1)
                if channel_mean is None:
                    channel_mean, channel_m2 = new_mean, new_m2
                else:  # Chan et al.: merge two groups' means and sums of squared deviations
                    delta = new_mean - channel_mean
                    total = count + n_new
                    channel_mean = channel_mean + delta * (n_new / total)
                    channel_m2 = channel_m2 + new_m2 + delta**2 * (count * n_new / total)
                count += n_new
            bar.update(len(batch))
    if start != n_samples:
        raise ValueError(f"the dataset returned {start} images but its length is {n_samples}.")

    n_channels = X.shape[1]
    if mean is None:
        where = "computed from these images"
        mean = channel_mean.numpy().astype(np.float32)
        std = torch.sqrt(channel_m2 / count).numpy().astype(np.float32)
        if (std <= 0).any():
            raise ValueError(f"a channel of the images is constant (std {std.tolist()}): it cannot be "
                             "normalised; pass mean and std.")
    else:
        where = "given"
        mean = _check_channel_statistic(mean, "mean", n_channels)
        std = _check_channel_statistic(std, "std", n_channels)
    X -= mean.reshape(1, -1, 1, 1)
    X /= std.reshape(1, -1, 1, 1)

    y = np.asarray(labels)
    if y.dtype == object or y.ndim != 1:
        raise TypeError(f"the dataset's labels must be numbers or strings, one per image; got "
                        f"{type(labels[0]).__name__}.")
    if y.dtype.kind in "iub":
        y = y.astype(np.int64)
    classes = getattr(dataset, "classes", None)
    target_names = [str(c) for c in classes] if classes is not None else [str(c) for c in np.unique(y)]
    descr = _ANY_DESCR.format(
        name=type(dataset).__name__, n=n_samples, shape=tuple(X.shape[1:]),
        resized="" if size is None else f", resized to {size[0]}x{size[1]}",
        mean=np.round(mean, 4).tolist(), std=np.round(std, 4).tolist(), where=where)
    return _bunch(X, y, target_names, mean, std, descr, return_X_y)

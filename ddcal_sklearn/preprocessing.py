"""Preprocessing of images: ZCA whitening, as the dataset-distillation literature applies it.

MTT (Cazenavette et al., CVPR 2022) and its successors (FTD, DATM, ...) distil CIFAR-10,
CIFAR-100 and Tiny ImageNet after ZCA whitening fitted on the real training images, with
``kornia.enhance.ZCAWhitening(eps=0.1, compute_inv=True)``; their released synthetic
sets live in that whitened space. :class:`ZCAWhitening` computes the same transform as a
scikit-learn transformer (``fit``, ``transform``, ``inverse_transform``), so it can be a
``Pipeline`` step before a distiller and a classifier, and saves itself without pickle.
This module imports only ``utils/``.
"""

import hashlib
import json
import math
import numbers
import os

import numpy as np
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted, validate_data

from .utils import npz_path, read_npz, write_npz

__all__ = ["ZCAWhitening", "describe_zca"]

#: version of the .npz layout written by :meth:`ZCAWhitening.save`
FORMAT_VERSION = 1
_KIND = "ZCAWhitening"
#: rows of X centred and multiplied at a time while fitting (bounds the float64 working copy)
_FIT_CHUNK_ROWS = 2048


def _has_inverse(zca):
    """available_if check: ``inverse_transform`` exists only with ``compute_inv=True`` (as in kornia)."""
    if not zca.compute_inv:
        raise AttributeError("inverse_transform is not available with compute_inv=False: the inverse matrix "
                             "is not computed. Use ZCAWhitening(compute_inv=True).")
    return True


def _whitening_matrices(eigenvalues, eigenvectors, eps, compute_inv):
    """``U diag((S + eps)^-1/2) U^T`` and, when asked, its inverse ``U diag((S + eps)^1/2) U^T`` (float64)."""
    root = np.sqrt(eigenvalues + eps)
    whitening = (eigenvectors / root) @ eigenvectors.T
    inverse = (eigenvectors * root) @ eigenvectors.T if compute_inv else None
    return whitening, inverse


def _digest(mean, eigenvalues, eigenvectors, eps, unbiased, input_shape):
    """SHA-256 (hex) of what defines a fitted transform: its arrays (float64, C order) and parameters."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"eps": float(eps), "unbiased": bool(unbiased),
                              "input_shape": [int(s) for s in input_shape]}, sort_keys=True).encode())
    for array in (mean, eigenvalues, eigenvectors):
        digest.update(np.ascontiguousarray(array, dtype=np.float64).data)
    return digest.hexdigest()


class ZCAWhitening(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """ZCA whitening of images (or flat features), equal to kornia's as MTT uses it.

    ``fit`` flattens every sample (``(n, C, H, W)`` images become ``(n, C*H*W)``
    rows), computes the mean ``mu`` and the covariance ``Sigma`` of the rows (divided
    by ``n - 1``, or ``n`` with ``unbiased=False``) and its eigendecomposition
    ``Sigma = U diag(S) U^T``. ``transform`` returns ``(x - mu) W`` with the whitening
    matrix ``W = U diag((S + eps)^(-1/2)) U^T``, reshaped to the input's shape;
    ``inverse_transform`` returns ``z W^-1 + mu``, ``W^-1 = U diag((S + eps)^(1/2)) U^T``.
    ZCA is the whitening closest to the identity, so whitened images still look like
    images (edges enhanced), which is why distillation methods can learn them.

    This is the transform of ``kornia.enhance.ZCAWhitening(eps=0.1, compute_inv=True)``
    (``dim=0``, ``unbiased=True``), which MTT fits on the training images of CIFAR-10,
    CIFAR-100 and Tiny ImageNet (``utils.py``, ``get_dataset``: the images as pixel
    values in [0, 1], *not* normalised by a mean and std, then ``zca.fit(images)`` and
    ``zca(images)`` for the training and the test images) and inverts
    (``zca_trans.inverse_transform``) before it plots or saves un-whitened images.
    The statistics are computed in float64 (kornia: the covariance in the input's dtype,
    its SVD in float64); outputs keep the input's dtype (float32 or float64).

    Parameters
    ----------
    eps : float > 0, default=0.1
        Added to every eigenvalue before the inverse square root: directions whose
        variance is well below ``eps`` are damped rather than amplified. MTT's value, for
        pixels in [0, 1]; ``eps`` is absolute, so it means something else on data of
        another scale (normalised images have about 15 times the variance).
    compute_inv : bool, default=True
        Also compute the inverse matrix, needed by :meth:`inverse_transform` (for
        plotting or saving un-whitened images). With False, ``inverse_transform`` does
        not exist (``hasattr`` is False) and a ``d x d`` matrix is saved in memory.
    unbiased : bool, default=True
        Divide the covariance by ``n_samples - 1`` (kornia's default), else by
        ``n_samples``.

    Attributes
    ----------
    mean_ : ndarray of shape (n_pixels,)
        Mean of the flattened training samples (float64), ``n_pixels = C*H*W``.
    eigenvalues_ : ndarray of shape (n_pixels,)
        Eigenvalues of the covariance, in decreasing order (round-off negatives set to 0).
    eigenvectors_ : ndarray of shape (n_pixels, n_pixels)
        The matching eigenvectors, as columns.
    whitening_matrix_ : ndarray of shape (n_pixels, n_pixels)
        ``W``, symmetric (float64); kornia's ``transform_matrix``.
    inverse_matrix_ : ndarray of shape (n_pixels, n_pixels) or None
        ``W^-1`` (kornia's ``transform_inv``); None with ``compute_inv=False``.
    input_shape_ : tuple of int
        Shape of one sample seen in ``fit`` (``(C, H, W)`` for images, ``(n_features,)``
        for flat rows); ``transform`` requires the same.
    n_features_in_ : int
        ``X.shape[1]`` in ``fit`` (channels for images), as scikit-learn counts it.
    feature_names_in_ : ndarray of str
        Column names of a DataFrame given to ``fit``.

    See Also
    --------
    describe_zca : The record of a fitted transform that a synthetic set stores.
    ddcal_sklearn.DatasetDistiller : Distils whitened images when it follows this step.

    Notes
    -----
    Fitting costs ``O(n d^2 + d^3)`` for ``d = C*H*W`` and holds four ``d x d`` float64
    matrices (the covariance, ``U``, ``W``, ``W^-1``): for 32x32 RGB images (``d = 3072``)
    about 300 MB and some seconds on a CPU; for 64x64 RGB (``d = 12288``) about 5 GB and
    minutes. A ``Pipeline`` refits it in every ``fit``; fit it once on the training images
    and reuse it (or :meth:`save` it) when you can.

    **Persistence.** :meth:`save` writes ``.npz`` arrays (mean, eigenvalues,
    eigenvectors; 75 MB for ``d = 3072``) and JSON metadata, never pickle; :meth:`load`
    rebuilds the matrices from them and checks the file against its SHA-256 digest. A
    synthetic set saved with ``DatasetDistiller.save(path, zca=...)`` (or
    :func:`~ddcal_sklearn.save_synthetic_set`) records a short description of the
    transform and that digest (:func:`describe_zca`), not the matrices: one transform
    serves every set distilled from the same training images.

    Examples
    --------
    >>> import numpy as np
    >>> from ddcal_sklearn import ZCAWhitening, load_digits_images, unnormalize
    >>> digits = load_digits_images()
    >>> pixels = unnormalize(digits.data, digits.mean, digits.std)  # in [0, 1], as MTT whitens them
    >>> zca = ZCAWhitening(eps=0.1).fit(pixels)
    >>> whitened = zca.transform(pixels)
    >>> whitened.shape, whitened.dtype
    ((1797, 1, 8, 8), dtype('float32'))
    >>> bool(np.allclose(zca.inverse_transform(whitened), pixels, atol=1e-5))
    True

    In a pipeline, before a distiller and a network (imbalanced-learn's ``Pipeline``
    resamples in ``fit`` only; test images are whitened, then classified):

    >>> from imblearn.pipeline import Pipeline
    >>> from ddcal_sklearn import ConvNetClassifier, DatasetDistiller
    >>> pipe = Pipeline([
    ...     ("zca", ZCAWhitening()),
    ...     ("distil", DatasetDistiller(method="dm", ipc=1, n_iterations=2, augment=None, random_state=0)),
    ...     ("net", ConvNetClassifier(module__depth=2, module__width=8, max_epochs=2, random_state=0)),
    ... ])
    >>> pipe.fit(pixels, digits.target).predict(pixels[:3]).shape
    (3,)
    """

    _parameter_constraints = {
        "eps": [Interval(numbers.Real, 0, None, closed="neither")],
        "compute_inv": ["boolean"],
        "unbiased": ["boolean"],
    }

    def __init__(self, eps=0.1, *, compute_inv=True, unbiased=True):
        self.eps = eps
        self.compute_inv = compute_inv
        self.unbiased = unbiased

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Fit the mean and the whitening matrix (and its inverse) on ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, channels, height, width) or (n_samples, n_features)
            At least 2 samples (1 with ``unbiased=False``); any per-sample shape.
        y : None
            Ignored.

        Returns
        -------
        self : ZCAWhitening
        """
        X = validate_data(self, X, allow_nd=True, dtype=(np.float64, np.float32),
                          ensure_min_samples=2 if self.unbiased else 1)
        n_samples = len(X)
        flat = X.reshape(n_samples, -1)
        mean = flat.mean(axis=0, dtype=np.float64)
        covariance = np.zeros((flat.shape[1], flat.shape[1]))
        for start in range(0, n_samples, _FIT_CHUNK_ROWS):  # float64 without a float64 copy of all of X
            centred = flat[start:start + _FIT_CHUNK_ROWS].astype(np.float64) - mean
            covariance += centred.T @ centred
        covariance /= n_samples - 1 if self.unbiased else n_samples
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)
        del covariance
        # decreasing order, as kornia's SVD; tiny negative eigenvalues are round-off of a PSD matrix
        self.eigenvalues_ = np.clip(eigenvalues[::-1], 0.0, None)
        self.eigenvectors_ = np.ascontiguousarray(eigenvectors[:, ::-1])
        self.mean_ = mean
        self.input_shape_ = tuple(int(s) for s in X.shape[1:])
        self.whitening_matrix_, self.inverse_matrix_ = _whitening_matrices(
            self.eigenvalues_, self.eigenvectors_, self.eps, self.compute_inv)
        return self

    def _flat_input(self, X):
        """Validated ``X`` (float32 or float64) as rows, and its shape."""
        check_is_fitted(self, "whitening_matrix_")
        X = validate_data(self, X, reset=False, allow_nd=True, dtype=(np.float64, np.float32))
        if X.shape[1:] != self.input_shape_:
            raise ValueError(f"X has samples of shape {X.shape[1:]}, but ZCAWhitening was fitted on samples of "
                             f"shape {self.input_shape_}; whiten images of the size it was fitted on.")
        return X.reshape(len(X), -1), X.shape

    def transform(self, X):
        """Whiten ``X``: ``(x - mean_) @ whitening_matrix_``, in ``X``'s shape and dtype.

        Parameters
        ----------
        X : array-like
            Samples of shape ``(n_samples, *input_shape_)``.

        Returns
        -------
        X_whitened : ndarray
            The shape of ``X``; float32 or float64 as ``X`` (other types become float64).
        """
        flat, shape = self._flat_input(X)
        dtype = flat.dtype
        whitened = (flat - self.mean_.astype(dtype, copy=False)) @ self.whitening_matrix_.astype(dtype, copy=False)
        return whitened.reshape(shape)

    @available_if(_has_inverse)
    def inverse_transform(self, X):
        """Un-whiten ``X``: ``x @ inverse_matrix_ + mean_``, in ``X``'s shape and dtype.

        Parameters
        ----------
        X : array-like
            Whitened samples of shape ``(n_samples, *input_shape_)`` (e.g. a synthetic set
            distilled in the whitened space).

        Returns
        -------
        X_original : ndarray
            The shape of ``X``, in the space ``fit`` saw (e.g. pixels).
        """
        flat, shape = self._flat_input(X)
        dtype = flat.dtype
        inverse, mean = self.inverse_matrix_.astype(dtype, copy=False), self.mean_.astype(dtype, copy=False)
        return (flat @ inverse + mean).reshape(shape)

    def get_feature_names_out(self, input_features=None):
        """Output feature names for flat input: the input's (whitened feature ``i`` stays feature ``i``).

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            As in scikit-learn's one-to-one transformers.

        Returns
        -------
        feature_names_out : ndarray of str

        Raises
        ------
        ValueError
            If the transformer was fitted on images: their pixels have no names.
        """
        check_is_fitted(self, "whitening_matrix_")
        if len(self.input_shape_) != 1:
            raise ValueError(f"ZCAWhitening was fitted on images of shape {self.input_shape_}: feature names "
                             "exist for flat input (n_samples, n_features) only.")
        return super().get_feature_names_out(input_features)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True  # images (n, C, H, W) as well as flat rows
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    # ------------------------------------------------------------------ persistence
    @property
    def sha256_(self):
        """SHA-256 (hex) of the fitted transform: its arrays, ``eps``, ``unbiased`` and ``input_shape_``."""
        check_is_fitted(self, "whitening_matrix_")
        return _digest(self.mean_, self.eigenvalues_, self.eigenvectors_, self.eps, self.unbiased,
                       self.input_shape_)

    def save(self, path):
        """Write the fitted transform to ``path`` (.npz, no pickle), atomically.

        Parameters
        ----------
        path : str or path-like
            Destination; ``.npz`` is appended if missing.

        Returns
        -------
        path : pathlib.Path
        """
        check_is_fitted(self, "whitening_matrix_")
        path = npz_path(path)
        metadata = {
            "kind": _KIND, "params": self.get_params(), "input_shape": list(self.input_shape_),
            "n_features_in": self.n_features_in_, "sha256": self.sha256_,
        }
        if hasattr(self, "feature_names_in_"):
            metadata["feature_names_in"] = [str(name) for name in self.feature_names_in_]
        arrays = {"mean": self.mean_, "eigenvalues": self.eigenvalues_, "eigenvectors": self.eigenvectors_}
        return write_npz(path, arrays, metadata, format_version=FORMAT_VERSION)

    @classmethod
    def load(cls, path, *, sha256=None):
        """Read a transform written by :meth:`save` (``allow_pickle=False``).

        Parameters
        ----------
        path : str or path-like
        sha256 : str, default=None
            The digest the transform must have, e.g. ``load_synthetic_set(p).metadata["zca"]["sha256"]``:
            refuses the file of another transform.

        Returns
        -------
        zca : ZCAWhitening
            Fitted: its matrices are rebuilt from the saved eigendecomposition, as ``fit``
            builds them.

        Raises
        ------
        FileNotFoundError
            If ``path`` does not exist.
        ValueError
            If the file is not a regular file or not a ZCAWhitening file, is corrupted
            (shapes that disagree, NaN, negative eigenvalues, arrays that do not match
            the recorded digest), comes from a newer format, or is not the transform
            ``sha256`` names.
        """
        arrays, meta = read_npz(path, ("mean", "eigenvalues", "eigenvectors"), what="ZCAWhitening file",
                                format_version=FORMAT_VERSION)
        try:
            if meta.get("kind") != _KIND:
                raise ValueError(f"its metadata kind is {meta.get('kind')!r}")
            zca = cls(**meta["params"])
            zca._validate_params()
            input_shape = tuple(meta["input_shape"])
            if not input_shape or not all(type(s) is int and s > 0 for s in input_shape):
                raise ValueError(f"input_shape must be positive integers, got {list(input_shape)!r:.80}")
            mean, eigenvalues, eigenvectors = arrays["mean"], arrays["eigenvalues"], arrays["eigenvectors"]
            n_pixels = int(np.prod(input_shape))
            if (mean.shape != (n_pixels,) or eigenvalues.shape != (n_pixels,)
                    or eigenvectors.shape != (n_pixels, n_pixels)):
                raise ValueError(f"arrays of shapes {mean.shape}, {eigenvalues.shape}, {eigenvectors.shape} do "
                                 f"not match samples of shape {input_shape}")
            if any(a.dtype.kind != "f" or not np.isfinite(a).all() for a in (mean, eigenvalues, eigenvectors)):
                raise ValueError("its arrays must hold finite floating-point numbers")
            if (eigenvalues < 0).any():
                raise ValueError("its eigenvalues must be >= 0 (a covariance is positive semi-definite)")
            digest = _digest(mean, eigenvalues, eigenvectors, zca.eps, zca.unbiased, input_shape)
            if digest != meta["sha256"]:
                raise ValueError("its arrays do not match its recorded SHA-256 digest (damaged or edited)")
            n_features_in = meta["n_features_in"]
            if type(n_features_in) is not int or n_features_in != input_shape[0]:
                raise ValueError(f"n_features_in {n_features_in!r} is not input_shape[0] = {input_shape[0]}")
            names = meta.get("feature_names_in")
            if names is not None and (len(input_shape) != 1 or len(names) != n_pixels
                                      or not all(isinstance(name, str) for name in names)):
                raise ValueError("feature_names_in must be one string per feature of flat input")
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path} is not a readable ZCAWhitening file: {exc!s}") from exc
        if sha256 is not None and digest != sha256:
            raise ValueError(f"{path} holds the ZCA transform {digest[:16]}..., not the one of sha256="
                             f"{str(sha256)[:16]!r}...: it was fitted on other data or with other parameters.")
        zca.mean_ = mean.astype(np.float64, copy=False)
        zca.eigenvalues_ = eigenvalues.astype(np.float64, copy=False)
        zca.eigenvectors_ = np.ascontiguousarray(eigenvectors, dtype=np.float64)
        zca.input_shape_ = input_shape
        zca.n_features_in_ = n_features_in
        if names is not None:
            zca.feature_names_in_ = np.asarray(names, dtype=object)
        zca.whitening_matrix_, zca.inverse_matrix_ = _whitening_matrices(
            zca.eigenvalues_, zca.eigenvectors_, zca.eps, zca.compute_inv)
        return zca


_RECORD_KEYS = {"kind", "eps", "unbiased", "input_shape", "sha256", "file"}


def describe_zca(zca):
    """The JSON record of a ZCA transform that a synthetic set stores (``zca=`` metadata).

    :func:`~ddcal_sklearn.save_synthetic_set` and ``DatasetDistiller.save`` call it on
    their ``zca=`` entry, so a set distilled in a whitened space says so: ``kind``,
    ``eps``, ``unbiased``, ``input_shape``, ``sha256`` (the digest of the fitted
    transform, :attr:`ZCAWhitening.sha256_`) and ``file`` (where it was saved, or None).
    The matrices are not copied into the set (75 MB for 32x32 RGB images, and the same
    for every set distilled from the same images): keep the transform's own file, and
    load it with ``ZCAWhitening.load(file, sha256=record["sha256"])``, which refuses
    another transform. No loader of the package opens ``file`` by itself: a path is
    never taken from a file.

    Parameters
    ----------
    zca : ZCAWhitening, str, path-like or dict
        A fitted transform (``file`` is None); the path of one saved with
        :meth:`ZCAWhitening.save` (read and checked; ``file`` is that path, as given);
        or a record made by this function (as read back from a set's metadata).

    Returns
    -------
    record : dict

    Raises
    ------
    TypeError
        If ``zca`` is none of these.
    ValueError
        If the transform is not fitted, the file is not a ZCAWhitening file, or the
        record lacks a key or has one of the wrong type.

    Examples
    --------
    >>> from ddcal_sklearn import ZCAWhitening, load_digits_images
    >>> from ddcal_sklearn.preprocessing import describe_zca
    >>> record = describe_zca(ZCAWhitening().fit(load_digits_images().data))
    >>> sorted(record), record["input_shape"], record["file"]
    (['eps', 'file', 'input_shape', 'kind', 'sha256', 'unbiased'], [1, 8, 8], None)
    """
    if isinstance(zca, ZCAWhitening):
        check_is_fitted(zca, "whitening_matrix_")
        return {"kind": _KIND, "eps": float(zca.eps), "unbiased": bool(zca.unbiased),
                "input_shape": list(zca.input_shape_), "sha256": zca.sha256_, "file": None}
    if isinstance(zca, (str, os.PathLike)):
        return {**describe_zca(ZCAWhitening.load(zca)), "file": os.fspath(zca)}
    if isinstance(zca, dict):
        keys = set(zca)
        if keys != _RECORD_KEYS:
            raise ValueError(f"a ZCA record has the keys {sorted(_RECORD_KEYS)}, got {sorted(keys)}.")
        shape = zca["input_shape"]
        eps = zca["eps"]
        valid = (zca["kind"] == _KIND and isinstance(eps, numbers.Real) and not isinstance(eps, bool)
                 and math.isfinite(eps) and eps > 0
                 and isinstance(zca["unbiased"], bool) and isinstance(zca["sha256"], str)
                 and len(zca["sha256"]) == 64 and isinstance(shape, (list, tuple)) and len(shape) > 0
                 and all(isinstance(s, numbers.Integral) and s > 0 for s in shape)
                 and (zca["file"] is None or isinstance(zca["file"], str)))
        if not valid:
            raise ValueError(f"invalid ZCA record {zca!r:.200}: kind 'ZCAWhitening', eps > 0, unbiased a bool, "
                             "input_shape positive integers, sha256 64 hex digits, file a string or None.")
        return {**zca, "eps": float(zca["eps"]), "input_shape": [int(s) for s in shape]}
    raise TypeError(f"zca must be a fitted ZCAWhitening, the path of a saved one or its record (a dict), "
                    f"got {type(zca).__name__}.")

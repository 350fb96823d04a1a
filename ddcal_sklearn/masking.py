"""The random element mask shared by Masked Temperature Scaling and Masked Distillation Training."""

import numbers

import numpy as np
import torch

from .utils import check_generator


def check_mask_ratio(mask_ratio, *, param="mask_ratio"):
    """Validate a mask ratio: a real number in [0, 1). Returns it as a float."""
    if isinstance(mask_ratio, bool) or not isinstance(mask_ratio, numbers.Real):
        raise TypeError(f"{param} must be a float in [0, 1), got {mask_ratio!r}.")
    if not 0.0 <= float(mask_ratio) < 1.0:
        raise ValueError(
            f"{param} must be in [0, 1) (the probability of zeroing each input "
            f"element; 1 would zero everything), got {mask_ratio!r}."
        )
    return float(mask_ratio)


def keep_mask(shape, mask_ratio, generator, device):
    """The boolean keep-mask that :func:`mask_elements` multiplies a tensor of ``shape`` by.

    One ``torch.rand`` of ``shape`` from ``generator``, kept where it is at least
    ``mask_ratio``: the same generator state gives the mask :func:`mask_elements` would
    apply, so a loop can draw a step's mask apart from its inputs (the distillation
    loops replayed from CUDA graphs do).

    Parameters
    ----------
    shape : tuple of int
    mask_ratio : float in [0, 1)
        Probability of zeroing (False) each element.
    generator : torch.Generator or None
    device : torch.device or str

    Returns
    -------
    keep : Tensor of bool of ``shape``
        True where the element is kept.

    Examples
    --------
    >>> import torch
    >>> from ddcal_sklearn.masking import keep_mask, mask_elements
    >>> X = torch.randn(2, 3, 4, 4)
    >>> keep = keep_mask(X.shape, 0.5, torch.Generator().manual_seed(0), "cpu")
    >>> torch.equal(X * keep, mask_elements(X, 0.5, random_state=torch.Generator().manual_seed(0)))
    True
    """
    return torch.rand(shape, generator=generator, device=device) >= mask_ratio


def mask_elements(X, mask_ratio, *, random_state=None):
    """Zero each element of ``X`` independently with probability ``mask_ratio``.

    This is the mask of Zhu et al. (ICCV 2023), used by both Masked Temperature
    Scaling (on calibration inputs) and Masked Distillation Training (on synthetic
    images): an element-wise Bernoulli keep-mask with probability ``1 - mask_ratio``,
    zero fill, and **no rescaling** of the kept values (unlike dropout). Every channel
    of every pixel is masked independently, and every call draws a fresh mask. Apply
    it in the space the network sees, i.e. to normalised inputs.

    Parameters
    ----------
    X : array-like or torch.Tensor of any shape
        Inputs, typically images ``(n_samples, channels, height, width)``. A tensor
        stays on its device and keeps its autograd graph (the mask is a constant), so
        the function can be used inside a differentiable loop; it is not checked for
        NaN (that would synchronise the device), and a NaN stays NaN where masked.
        Anything else is converted with :func:`numpy.asarray` (a DataFrame gives an
        ndarray) and must be numeric and finite.
    mask_ratio : float in [0, 1)
        Probability of zeroing each element. ``0`` returns ``X`` unchanged.
    random_state : None, int, numpy Generator or torch.Generator, default=None
        Source of the mask. For a NumPy ``X``: anything :func:`numpy.random.default_rng`
        accepts. For a tensor: a ``torch.Generator`` on the tensor's device (or None,
        which uses torch's global generator; the library itself always passes one).

    Returns
    -------
    X_masked : ndarray or torch.Tensor
        Same shape and dtype as ``X``; a tensor for a tensor (on its device), else
        an ndarray.

    Raises
    ------
    TypeError
        If ``X`` is not numeric, or ``mask_ratio`` is not a real number.
    ValueError
        If ``mask_ratio`` is outside [0, 1), or a NumPy ``X`` holds NaN or infinity
        (zeroing cannot remove them: ``NaN * 0`` is NaN).

    Examples
    --------
    >>> import numpy as np
    >>> from ddcal_sklearn import mask_elements
    >>> X = np.ones((2, 1, 4, 4), dtype=np.float32)
    >>> X_masked = mask_elements(X, 0.5, random_state=0)
    >>> X_masked.shape, X_masked.dtype
    ((2, 1, 4, 4), dtype('float32'))
    >>> sorted(np.unique(X_masked).tolist())  # kept values are not rescaled
    [0.0, 1.0]
    """
    mask_ratio = check_mask_ratio(mask_ratio)
    if isinstance(X, torch.Tensor):
        if mask_ratio == 0.0:
            return X
        if random_state is not None and not isinstance(random_state, torch.Generator):
            raise TypeError(
                "random_state must be a torch.Generator (or None) when X is a tensor, "
                f"got {type(random_state).__name__}."
            )
        return X * keep_mask(X.shape, mask_ratio, random_state, X.device).to(X.dtype)
    try:
        X = np.asarray(X)
    except (TypeError, ValueError) as exc:  # ragged nested lists
        raise ValueError(f"X must be an array of numbers (a rectangular array), got {type(X).__name__}: "
                         f"{exc}") from exc
    if X.dtype.kind not in "biuf":
        raise TypeError(f"X must hold numbers (booleans, integers or floats), got dtype {X.dtype}.")
    if X.dtype.kind == "f" and not np.isfinite(X).all():
        raise ValueError(
            "X contains NaN or infinity; masking zeroes elements but cannot make them finite "
            "(NaN * 0 is NaN). Clean or impute X first."
        )
    if mask_ratio == 0.0:
        return X.copy()
    rng = check_generator(random_state)
    keep = rng.random(X.shape, dtype=np.float32) >= mask_ratio
    return np.asarray(X * keep.astype(X.dtype, copy=False))  # a 0-d X stays an array, not a scalar

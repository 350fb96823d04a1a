"""Differentiable Siamese augmentation (DSA) for image batches.

Dataset condensation matches statistics of a real batch and of a synthetic
batch *after* augmenting both with the **same** random transformation
(Zhao & Bilen, 2021, "Dataset Condensation with Differentiable Siamese
Augmentation").  Every transformation here is differentiable with respect to
the images, so gradients reach the synthetic pixels, and is vectorised over
the batch (no Python loop over samples).

The workflow is split in two pure steps so that the very same parameters can
be applied to any number of batches:

1. :meth:`SiameseAugment.sample` draws all random numbers of one iteration
   from an explicit :class:`torch.Generator` into a :class:`DSAParams`;
2. :meth:`SiameseAugment.apply` (or calling the object) applies them to a
   batch ``(N, C, H, W)`` on whatever device the batch lives on.

Defaults follow ``ParamDiffAug`` of the reference implementation.
"""

from __future__ import annotations

import copy
import math
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F

__all__ = ["DSAParams", "SiameseAugment"]

#: Transformation groups, in the order used by the reference strategy string.
TRANSFORMS = ("color", "crop", "cutout", "flip", "scale", "rotate")

# Columns of the single uniform draw made by ``sample`` (one row per sample
# when per-sample parameters are requested, otherwise a single row).
_COL_BRIGHT, _COL_SAT, _COL_CONTRAST = 0, 1, 2
_COL_CROP = slice(3, 5)
_COL_CUTOUT = slice(5, 7)
_COL_FLIP = 7
_COL_SCALE = slice(8, 10)
_COL_ROTATE = 10
_N_COLS = 11


class DSAParams(NamedTuple):
    """Random parameters of one augmentation call.

    Every tensor has a leading dimension ``B`` that is either 1 (one draw
    shared by every image it is applied to, the Siamese default) or the batch
    size (per-sample draws).  Being a ``NamedTuple`` it is a pytree, so it can
    be passed through ``torch.func`` transforms, and fields can be overridden
    with ``_replace``.

    Attributes
    ----------
    ops : tuple of str
        Transformation groups to apply, in order (a subset of
        ``("color", "crop", "cutout", "flip", "scale", "rotate")``).
    brightness : Tensor, shape (B, 1, 1, 1)
        Value added to every pixel.
    saturation : Tensor, shape (B, 1, 1, 1)
        Factor applied to the deviation from the per-pixel channel mean.
    contrast : Tensor, shape (B, 1, 1, 1)
        Factor applied to the deviation from the per-image mean.
    crop : Tensor, shape (B, 2)
        Uniforms in [0, 1) turned into integer (row, column) shifts once the
        image size is known; see :meth:`SiameseAugment.apply`.
    cutout : Tensor, shape (B, 2)
        Uniforms in [0, 1) turned into the (row, column) centre of the cut
        square once the image size is known.
    flip : Tensor of bool, shape (B, 1, 1, 1)
        Whether to flip horizontally (along the width).
    scale : Tensor, shape (B, 2)
        Sampling-grid scale factors ``(sx, sy)`` along width and height; a
        factor above 1 shrinks the content.
    rotate : Tensor, shape (B,)
        Rotation angle in radians.
    """

    ops: tuple
    brightness: torch.Tensor
    saturation: torch.Tensor
    contrast: torch.Tensor
    crop: torch.Tensor
    cutout: torch.Tensor
    flip: torch.Tensor
    scale: torch.Tensor
    rotate: torch.Tensor

    def to(self, device=None, dtype=None) -> "DSAParams":
        """Return a copy with the tensors moved to ``device`` and cast to ``dtype``.

        ``flip``, ``crop`` and ``cutout`` are only moved, never cast.
        """
        # Non-blocking host-to-device copies avoid a stream sync; copies to the
        # CPU stay blocking so the values are ready when read.
        nb = device is not None and torch.device(device).type != "cpu"
        out = {}
        for name in self._fields[1:]:
            t = getattr(self, name)
            # Flags and the uniforms that become integer offsets keep their dtype.
            keep = t.dtype == torch.bool or name in ("crop", "cutout")
            out[name] = t.to(device=device, dtype=None if keep else dtype, non_blocking=nb)
        return self._replace(**out)


def _parse_strategy(strategy: str) -> tuple:
    if strategy in ("", "none", "None"):
        return ()
    ops = tuple(strategy.split("_"))
    unknown = [op for op in ops if op not in TRANSFORMS]
    if unknown:
        raise ValueError(
            f"unknown transformation(s) {unknown} in strategy {strategy!r}; "
            f"expected '_'-joined names from {TRANSFORMS}"
        )
    return ops


class SiameseAugment:
    """Differentiable Siamese augmentation with explicit, shareable parameters.

    Parameters
    ----------
    strategy : str, default="color_crop_cutout_flip_scale_rotate"
        ``'_'``-joined transformation groups from ``color`` (brightness, then
        saturation, then contrast), ``crop`` (zero-padded integer
        translation), ``cutout`` (zero a square), ``flip`` (horizontal),
        ``scale`` and ``rotate`` (bilinear resampling).  ``"none"`` or ``""``
        gives the identity.
    mode : {"single", "all"}, default="single"
        ``"single"``: each call applies ONE group drawn uniformly from the
        strategy (the reference ``aug_mode='S'``, its default).  ``"all"``:
        every group in strategy order (the reference ``aug_mode='M'``).
    scale : float, default=1.2
        Scale factors along width and height are drawn independently and
        uniformly in ``[1 / scale, scale]``; must be >= 1 (1 disables).
    rotate : float, default=15.0
        Angles are uniform in ``[-rotate, rotate]`` degrees.
    crop_ratio : float, default=0.125
        Maximum translation as a fraction of the side: shifts are integers in
        ``[-s, s]`` with ``s = int(side * crop_ratio + 0.5)``; vacated pixels
        become 0.
    cutout_ratio : float, default=0.5
        Side of the zeroed square as a fraction of the image side
        (``int(side * cutout_ratio + 0.5)`` pixels); the square is clipped at
        the border.
    brightness : float, default=1.0
        Added value is uniform in ``[-brightness / 2, brightness / 2]``.
    saturation : float, default=2.0
        Saturation factor is uniform in ``[0, saturation]``.
    contrast : float, default=0.5
        Contrast factor is uniform in ``[contrast, contrast + 1]``.
    flip_p : float, default=0.5
        Probability of a horizontal flip.
    per_sample : bool, default=False
        If False (the Siamese convention), ``sample`` makes one draw shared
        by every image of every batch it is applied to, so a real batch and
        a synthetic batch of different sizes get the same transformation.
        If True, it draws one set per sample and ``apply`` requires a batch
        of exactly that size.

    Notes
    -----
    Randomness comes only from the generator passed to :meth:`sample`.  The
    discrete choice of ``mode="single"`` selects which Python branch runs, so
    it must reach the host; with a CPU generator (recommended) all numbers
    are drawn on the CPU and moved to the target device without any device
    synchronisation -- they are a handful of scalars, cheaper to draw there
    than to launch kernels for.  A CUDA generator works too but the branch
    choice then costs one host synchronisation per call.

    Examples
    --------
    >>> import torch
    >>> aug = SiameseAugment()
    >>> real, syn = torch.randn(6, 1, 8, 8), torch.randn(2, 1, 8, 8, requires_grad=True)
    >>> params = aug.sample(real.shape, torch.Generator().manual_seed(0))
    >>> real_aug, syn_aug = aug(real, params), aug(syn, params)
    >>> syn_aug.shape
    torch.Size([2, 1, 8, 8])
    >>> syn_aug.sum().backward()
    >>> syn.grad.shape
    torch.Size([2, 1, 8, 8])
    """

    def __init__(
        self,
        strategy: str = "color_crop_cutout_flip_scale_rotate",
        *,
        mode: str = "single",
        scale: float = 1.2,
        rotate: float = 15.0,
        crop_ratio: float = 0.125,
        cutout_ratio: float = 0.5,
        brightness: float = 1.0,
        saturation: float = 2.0,
        contrast: float = 0.5,
        flip_p: float = 0.5,
        per_sample: bool = False,
    ):
        self.strategy = strategy
        self.ops = _parse_strategy(strategy)
        if mode not in ("single", "all"):
            raise ValueError(f"mode must be 'single' or 'all', got {mode!r}")
        if scale < 1.0:
            raise ValueError(
                f"scale must be >= 1 (factors are drawn in [1/scale, scale]), got {scale}"
            )
        for name, value in (
            ("rotate", rotate),
            ("brightness", brightness),
            ("saturation", saturation),
            ("contrast", contrast),
        ):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        unit = (("crop_ratio", crop_ratio), ("cutout_ratio", cutout_ratio), ("flip_p", flip_p))
        for name, value in unit:
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        self.mode = mode
        self.scale = float(scale)
        self.rotate = float(rotate)
        self.crop_ratio = float(crop_ratio)
        self.cutout_ratio = float(cutout_ratio)
        self.brightness = float(brightness)
        self.saturation = float(saturation)
        self.contrast = float(contrast)
        self.flip_p = float(flip_p)
        self.per_sample = bool(per_sample)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(strategy={self.strategy!r}, mode={self.mode!r}, "
            f"scale={self.scale}, rotate={self.rotate}, crop_ratio={self.crop_ratio}, "
            f"cutout_ratio={self.cutout_ratio}, brightness={self.brightness}, "
            f"saturation={self.saturation}, contrast={self.contrast}, "
            f"flip_p={self.flip_p}, per_sample={self.per_sample})"
        )

    def with_per_sample(self, per_sample=True) -> "SiameseAugment":
        """A copy of this augmentation with ``per_sample`` set (every other setting kept).

        Training steps augment every image independently (``per_sample=True``) with the
        same settings as the Siamese draws of the matching loss.
        """
        other = copy.copy(self)
        other.per_sample = bool(per_sample)
        return other

    # ------------------------------------------------------------------ sampling
    def sample(
        self,
        n_or_shape: int | Sequence[int],
        generator: torch.Generator,
        device: torch.device | str | None = None,
    ) -> DSAParams:
        """Draw the random parameters of one augmentation call.

        Parameters
        ----------
        n_or_shape : int or sequence of int
            Batch size, or a batch shape whose first entry is the batch
            size.  Only used when ``per_sample=True``; with the default
            shared draw the parameters fit any batch.
        generator : torch.Generator
            The only source of randomness.  The same generator state gives
            the same parameters.
        device : torch.device or str, optional
            Where to put the parameter tensors (default: the generator's
            device).  ``apply`` also moves them to the batch's device.

        Returns
        -------
        DSAParams
            Parameters with leading dimension 1 (shared) or the batch size.

        Examples
        --------
        >>> import torch
        >>> aug = SiameseAugment("flip_rotate", mode="all")
        >>> p = aug.sample(4, torch.Generator().manual_seed(0))
        >>> p.ops, tuple(p.rotate.shape)
        (('flip', 'rotate'), (1,))
        """
        if not isinstance(generator, torch.Generator):
            raise TypeError("generator must be a torch.Generator (the global RNG is never used)")
        n = int(n_or_shape) if isinstance(n_or_shape, int) else int(n_or_shape[0])
        rows = n if self.per_sample else 1
        gen_device = generator.device
        # One draw for everything keeps the stream consumption fixed (the
        # continuous values do not depend on which op is chosen) and costs a
        # single kernel on an accelerator.
        u = torch.rand(1 + rows * _N_COLS, generator=generator, device=gen_device)
        if not self.ops:
            ops: tuple = ()
        elif self.mode == "single":
            # Host value needed to pick the branch; free for a CPU generator.
            k = len(self.ops)
            ops = (self.ops[min(int(u[0] * k), k - 1)],)
        else:
            ops = self.ops
        u = u[1:].reshape(rows, _N_COLS)
        # Map the uniforms to their ranges column-wise in one packed tensor,
        # so moving to another device is a single copy; fields are views.
        lo, rot = 1.0 / self.scale, math.radians(self.rotate)
        # Columns: brightness, saturation, contrast, crop x2, cutout x2, flip,
        # scale x2, rotate (crop/cutout/flip stay raw uniforms).
        span = self.scale - lo
        mul = [self.brightness, self.saturation, 1, 1, 1, 1, 1, 1, span, span, 2 * rot]
        add = [-0.5 * self.brightness, 0, self.contrast, 0, 0, 0, 0, 0, lo, lo, -rot]
        mul = torch.tensor(mul, dtype=u.dtype, device=u.device)
        add = torch.tensor(add, dtype=u.dtype, device=u.device)
        vals = u * mul + add
        if device is not None:
            nb = torch.device(device).type != "cpu"  # see DSAParams.to
            vals = vals.to(device, non_blocking=nb)
        col = lambda j: vals[:, j].reshape(rows, 1, 1, 1)  # noqa: E731
        return DSAParams(
            ops=ops,
            brightness=col(_COL_BRIGHT),
            saturation=col(_COL_SAT),
            contrast=col(_COL_CONTRAST),
            crop=vals[:, _COL_CROP],
            cutout=vals[:, _COL_CUTOUT],
            flip=col(_COL_FLIP) < self.flip_p,
            scale=vals[:, _COL_SCALE],
            rotate=vals[:, _COL_ROTATE],
        )

    # ------------------------------------------------------------------ applying
    def apply(self, x: torch.Tensor, params: DSAParams) -> torch.Tensor:
        """Augment a batch with given parameters.

        Parameters
        ----------
        x : Tensor, shape (N, C, H, W)
            Floating-point images on any device; may require grad.
        params : DSAParams
            From :meth:`sample`.  Shared parameters (leading dimension 1)
            apply to any ``N``; per-sample ones need a matching ``N``.

        Returns
        -------
        Tensor, shape (N, C, H, W)
            Augmented images, same dtype and device, differentiable in ``x``.

        Notes
        -----
        The uniforms in ``params.crop`` and ``params.cutout`` become integers
        from the image size: a shift ``floor(u * (2 s + 1)) - s`` with
        ``s = int(side * crop_ratio + 0.5)``, and a cut square of side
        ``c = int(side * cutout_ratio + 0.5)`` covering
        ``[o - c // 2, o - c // 2 + c)`` with ``o = floor(u * (side + 1 - c % 2))``
        (clipped to the image), as in the reference implementation.

        Examples
        --------
        >>> import torch
        >>> aug = SiameseAugment("flip", flip_p=1.0)
        >>> x = torch.arange(4.0).reshape(1, 1, 1, 4)
        >>> aug.apply(x, aug.sample(1, torch.Generator())).flatten().tolist()
        [3.0, 2.0, 1.0, 0.0]
        """
        if x.ndim != 4:
            raise ValueError(f"expected a batch of shape (N, C, H, W), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"expected floating-point images, got {x.dtype}")
        b = params.flip.shape[0]
        if b not in (1, x.shape[0]):
            raise ValueError(
                f"per-sample parameters for {b} images cannot augment a batch of {x.shape[0]}"
            )
        params = params.to(device=x.device, dtype=x.dtype)
        for op in params.ops:
            x = _APPLY[op](self, x, params)
        return x

    __call__ = apply

    # ------------------------------------------------------------ transformations
    def _color(self, x, p):
        x = x + p.brightness
        # Saturation: around each pixel's mean over channels (no-op for 1 channel).
        m = x.mean(dim=1, keepdim=True)
        x = (x - m) * p.saturation + m
        # Contrast: around each image's global mean.
        m = x.mean(dim=(1, 2, 3), keepdim=True)
        return (x - m) * p.contrast + m

    def _crop(self, x, p):
        n, c, h, w = x.shape
        sh, sw = int(h * self.crop_ratio + 0.5), int(w * self.crop_ratio + 0.5)
        dy = _uniform_to_int(p.crop[:, 0], 2 * sh + 1) - sh
        dx = _uniform_to_int(p.crop[:, 1], 2 * sw + 1) - sw
        # out[i, j] = x[i + dy, j + dx], zero outside: two gathers with
        # clamped indices, then a validity mask (pure, so torch.func-friendly).
        rows = torch.arange(h, device=x.device)[None, :] + dy[:, None]  # (B, H)
        cols = torch.arange(w, device=x.device)[None, :] + dx[:, None]  # (B, W)
        b = rows.shape[0]
        ridx = rows.clamp(0, h - 1).reshape(b, 1, h, 1).expand(n, c, h, w)
        cidx = cols.clamp(0, w - 1).reshape(b, 1, 1, w).expand(n, c, h, w)
        x = x.gather(2, ridx).gather(3, cidx)
        ok_r = ((rows >= 0) & (rows < h)).reshape(b, 1, h, 1)
        ok_c = ((cols >= 0) & (cols < w)).reshape(b, 1, 1, w)
        valid = ok_r & ok_c
        return x * valid.to(x.dtype)

    def _cutout(self, x, p):
        _, _, h, w = x.shape
        ch, cw = int(h * self.cutout_ratio + 0.5), int(w * self.cutout_ratio + 0.5)
        top = _uniform_to_int(p.cutout[:, 0], h + 1 - ch % 2) - ch // 2
        left = _uniform_to_int(p.cutout[:, 1], w + 1 - cw % 2) - cw // 2
        rows = torch.arange(h, device=x.device)[None, :]
        cols = torch.arange(w, device=x.device)[None, :]
        in_r = (rows >= top[:, None]) & (rows < top[:, None] + ch)
        in_c = (cols >= left[:, None]) & (cols < left[:, None] + cw)
        b = in_r.shape[0]
        keep = ~(in_r.reshape(b, 1, h, 1) & in_c.reshape(b, 1, 1, w))
        return x * keep.to(x.dtype)

    def _flip(self, x, p):
        return torch.where(p.flip, x.flip(3), x)

    def _scale(self, x, p):
        sx, sy = p.scale[:, 0], p.scale[:, 1]
        zero = torch.zeros_like(sx)
        theta = torch.stack(
            [torch.stack([sx, zero, zero], -1), torch.stack([zero, sy, zero], -1)], 1
        )
        return _affine(x, theta)

    def _rotate(self, x, p):
        cos, sin = torch.cos(p.rotate), torch.sin(p.rotate)
        zero = torch.zeros_like(cos)
        theta = torch.stack(
            [torch.stack([cos, -sin, zero], -1), torch.stack([sin, cos, zero], -1)], 1
        )
        return _affine(x, theta)


def _uniform_to_int(u: torch.Tensor, k: int) -> torch.Tensor:
    """Map uniforms in [0, 1) to integers in [0, k) (clamped against rounding)."""
    return (u * k).floor().long().clamp(0, max(k - 1, 0))


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Bilinear resampling of ``x`` on the grid of ``theta`` (B, 2, 3), zero padded."""
    n, c, h, w = x.shape
    b = theta.shape[0]
    # With shared parameters build one grid and broadcast it over the batch.
    grid = F.affine_grid(theta, [b, c, h, w], align_corners=False)
    grid = grid.expand(n, h, w, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


_APPLY = {
    "color": SiameseAugment._color,
    "crop": SiameseAugment._crop,
    "cutout": SiameseAugment._cutout,
    "flip": SiameseAugment._flip,
    "scale": SiameseAugment._scale,
    "rotate": SiameseAugment._rotate,
}

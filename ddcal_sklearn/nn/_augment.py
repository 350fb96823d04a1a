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
:meth:`SiameseAugment.sample_groups` draws one Siamese draw per group (per
class, as the reference's distillation loops do) in one call.

:class:`DCAugment` is the other augmentation of the reference code, the one it
trains DC's evaluation networks with (crop, scale, rotate, noise; one per image),
with the same two-step interface; :func:`resolve_augment` maps the names
``"dsa"`` and ``"dc"`` of an ``augment`` parameter to these objects.
"""

from __future__ import annotations

import copy
import math
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F

__all__ = ["DCAugment", "DCParams", "DSAParams", "SiameseAugment", "resolve_augment"]

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
    choice : Tensor of int64 on the CPU, shape (B,), or None
        Per-row choice of ``mode="single"`` made by
        :meth:`SiameseAugment.sample_groups`: row ``i`` applies ``ops[choice[i]]``
        only. None (what :meth:`SiameseAugment.sample` makes): every row applies
        every group of ``ops``. It stays on the host (it selects Python branches),
        so reading it costs no device synchronisation.
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
    choice: torch.Tensor | None = None

    def to(self, device=None, dtype=None) -> "DSAParams":
        """Return a copy with the tensors moved to ``device`` and cast to ``dtype``.

        ``flip``, ``crop`` and ``cutout`` are only moved, never cast; ``choice``
        stays on the host.
        """
        # Non-blocking host-to-device copies avoid a stream sync; copies to the
        # CPU stay blocking so the values are ready when read.
        nb = device is not None and torch.device(device).type != "cpu"
        out = {}
        for name in self._fields[1:-1]:
            t = getattr(self, name)
            # Flags and the uniforms that become integer offsets keep their dtype.
            keep = t.dtype == torch.bool or name in ("crop", "cutout")
            out[name] = t.to(device=device, dtype=None if keep else dtype, non_blocking=nb)
        return self._replace(**out)

    def repeat_interleave(self, repeats: int) -> "DSAParams":
        """Every row repeated ``repeats`` times, in place: rows of groups become rows of samples.

        With one row per class from :meth:`SiameseAugment.sample_groups`, this gives the
        parameters of a class-major batch of ``repeats`` images per class, every image
        with its class's draw.

        Examples
        --------
        >>> import torch
        >>> p = SiameseAugment("rotate").sample_groups(3, torch.Generator().manual_seed(0))
        >>> q = p.repeat_interleave(2)
        >>> tuple(q.rotate.shape), bool((q.rotate[0::2] == p.rotate).all())
        ((6,), True)
        """
        repeats = int(repeats)
        out = {name: getattr(self, name).repeat_interleave(repeats, dim=0) for name in self._fields[1:-1]}
        if self.choice is not None:
            out["choice"] = self.choice.repeat_interleave(repeats, dim=0)
        return self._replace(**out)

    def _rows(self, index: torch.Tensor) -> "DSAParams":
        """The parameter rows ``index`` (on the parameters' device), ``choice`` dropped."""
        out = {name: getattr(self, name).index_select(0, index) for name in self._fields[1:-1]}
        return self._replace(choice=None, **out)


def _parse_strategy(strategy: str, known: tuple = TRANSFORMS) -> tuple:
    if not isinstance(strategy, str):
        raise TypeError(f"strategy must be a '_'-joined string of names from {known}, got {strategy!r}")
    if strategy in ("", "none", "None"):
        return ()
    ops = tuple(strategy.split("_"))
    unknown = [op for op in ops if op not in known]
    if unknown:
        raise ValueError(
            f"unknown transformation(s) {unknown} in strategy {strategy!r}; "
            f"expected '_'-joined names from {known}"
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
        return self._params(u[1:].reshape(rows, _N_COLS), ops, device)

    def concat_draws(self, draws: Sequence[DSAParams]) -> DSAParams:
        """Per-sample draws of several calls as the draw of one call on their concatenated batches.

        Draw ``j`` (from :meth:`sample` with ``per_sample=True``) augments batch ``j``;
        the result augments ``torch.cat(batches)`` exactly as the separate calls would
        (every transformation of a per-sample draw treats each image on its own), with
        one batched pass per transformation group instead of one call per batch. Used to
        augment the batches of many networks trained at once.

        Examples
        --------
        >>> import torch
        >>> aug = SiameseAugment(per_sample=True)
        >>> x = torch.randn(2, 3, 1, 8, 8)
        >>> draws = [aug.sample(3, torch.Generator().manual_seed(s)) for s in (0, 1)]
        >>> both = aug.apply(x.flatten(0, 1), aug.concat_draws(draws)).view_as(x)
        >>> all(torch.allclose(both[j], aug.apply(x[j], draws[j])) for j in (0, 1))
        True
        """
        if not self.per_sample:
            raise ValueError("concat_draws joins per-sample draws; this augmentation shares one draw per call "
                             "(per_sample=False).")
        draws = list(draws)
        tensors = {name: torch.cat([getattr(d, name) for d in draws]) for name in DSAParams._fields[1:-1]}
        if self.mode == "all" or not self.ops:
            return DSAParams(ops=draws[0].ops, **tensors)
        choice = torch.cat([torch.full((d.flip.shape[0],), self.ops.index(d.ops[0]), dtype=torch.long)
                            for d in draws])
        return DSAParams(ops=self.ops, choice=choice, **tensors)

    def sample_groups(
        self,
        n_groups: int,
        generator: torch.Generator,
        device: torch.device | str | None = None,
    ) -> DSAParams:
        """Draw one Siamese draw per group (e.g. per class) in one call.

        The reference code (DSA's and DM's training loops) augments every class with
        its own seed, shared by the real and the synthetic images of that class. This
        draws those ``n_groups`` draws at once: one row of parameters per group and,
        with ``mode="single"``, one group of transformations per row (``choice``).
        Expand the rows to the samples with :meth:`DSAParams.repeat_interleave`
        (class-major blocks of equal size), then :meth:`apply` transforms every row
        with its own draw, one batched pass per transformation group (a loop over at
        most 6 groups, never over the rows).

        Parameters
        ----------
        n_groups : int
            Number of independent draws (rows); ``per_sample`` is not used.
        generator : torch.Generator
            The only source of randomness (a CPU one costs no device sync; the
            choices of a CUDA one are copied to the host, one sync).
        device : torch.device or str, optional
            Where to put the parameter tensors (default: the generator's device).

        Returns
        -------
        DSAParams
            Parameters with leading dimension ``n_groups``; with ``mode="single"``,
            ``ops`` is the whole strategy and ``choice`` says which group each row
            applies. ``sample_groups(1, g)`` consumes the generator as
            ``sample(1, g)`` does and gives the same transformation.

        Examples
        --------
        >>> import torch
        >>> aug = SiameseAugment()
        >>> p = aug.sample_groups(10, torch.Generator().manual_seed(0))
        >>> tuple(p.rotate.shape), tuple(p.choice.shape)
        ((10,), (10,))
        >>> real = torch.randn(10 * 4, 3, 8, 8)  # 4 images per class, class-major
        >>> aug(real, p.repeat_interleave(4)).shape
        torch.Size([40, 3, 8, 8])
        """
        if not isinstance(generator, torch.Generator):
            raise TypeError("generator must be a torch.Generator (the global RNG is never used)")
        n_groups = int(n_groups)
        if n_groups < 1:
            raise ValueError(f"n_groups must be >= 1, got {n_groups}")
        # The layout generalises sample(1): the choices first, then the rows.
        u = torch.rand(n_groups * (1 + _N_COLS), generator=generator, device=generator.device)
        choice = None
        if self.ops and self.mode == "single":
            k = len(self.ops)
            choice = (u[:n_groups] * k).floor().long().clamp_(0, k - 1).cpu()
        params = self._params(u[n_groups:].reshape(n_groups, _N_COLS), self.ops, device)
        return params._replace(choice=choice)

    def _params(self, u: torch.Tensor, ops: tuple, device) -> DSAParams:
        """Map rows of uniforms ``(rows, _N_COLS)`` to their ranges."""
        rows = u.shape[0]
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
            if torch.device(device).type == "cuda" and vals.device.type == "cpu":
                vals = vals.pin_memory()  # from pageable memory the driver may wait for the device
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
        if params.choice is None:
            for op in params.ops:
                x = _APPLY[op](self, x, params)
            return x
        # Row i applies ops[choice[i]] only: one batched pass per chosen group.
        return _by_choice(x, params.choice, lambda k, xs, rows: _APPLY[params.ops[k]](
            self, xs, params if rows is None else params._rows(rows)))

    __call__ = apply

    def apply_static(self, x: torch.Tensor, params: DSAParams, choice: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`apply` with a structure that does not depend on the draws (for CUDA graphs).

        With per-row choices (what :meth:`sample_groups` draws, ``params.choice``), :meth:`apply`
        gathers the rows of each chosen group, on the host. Here ``choice`` is a tensor on
        ``x``'s device, every group of ``params.ops`` transforms every row, and each row
        keeps its own group's result (``torch.where``): the same images, up to rounding,
        with shapes and kernels fixed whatever the draws, and no host read. Costs one
        transformation per group and row instead of one per row.

        Parameters
        ----------
        x : Tensor, shape (N, C, H, W)
        params : DSAParams
            Shared (leading dimension 1) or per-row parameters; ``params.choice`` is ignored.
        choice : Tensor of int64 of shape (N,) on ``x``'s device, or None
            Row ``i`` applies ``params.ops[choice[i]]`` only. None: every row applies every
            group of ``params.ops``, as :meth:`apply` does without a choice.

        Returns
        -------
        Tensor, shape (N, C, H, W)

        Examples
        --------
        >>> import torch
        >>> aug = SiameseAugment()
        >>> p = aug.sample_groups(4, torch.Generator().manual_seed(0))
        >>> x = torch.randn(4, 3, 8, 8)
        >>> torch.allclose(aug.apply_static(x, p, p.choice), aug.apply(x, p), atol=1e-6)
        True
        """
        params = params._replace(choice=None).to(device=x.device, dtype=x.dtype)
        if choice is None:
            return self.apply(x, params)
        out = x
        rows = choice.reshape(-1, 1, 1, 1)
        for k, op in enumerate(params.ops):
            out = torch.where(rows == k, _APPLY[op](self, x, params), out)
        return out

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


def _by_choice(x: torch.Tensor, choice: torch.Tensor, transform) -> torch.Tensor:
    """Apply ``transform(k, x_k, rows_k)`` to the rows ``rows_k`` of ``x`` that chose ``k``; reassemble.

    ``choice`` (int64, on the host) has one entry per row of ``x``, or a single entry
    shared by every row. ``transform`` gets ``rows=None`` when it must treat all of
    ``x`` (the rows' parameters unselected). The loop runs over the distinct choices,
    never over the rows; index tensors are built on the host and copied to the device
    without a synchronisation; the result is assembled out of place (one gather), so
    it stays differentiable in ``x``.
    """
    if choice.numel() == 1:
        return transform(int(choice[0]), x, None)
    chosen = torch.unique(choice)
    if chosen.numel() == 1:
        return transform(int(chosen[0]), x, None)
    nb = x.device.type != "cpu"
    pieces, host_rows = [], []
    for k in chosen.tolist():
        rows = (choice == k).nonzero().flatten()
        host_rows.append(rows)
        rows = rows.to(x.device, non_blocking=nb)
        pieces.append(transform(k, x.index_select(0, rows), rows))
    inverse = torch.argsort(torch.cat(host_rows)).to(x.device, non_blocking=nb)
    return torch.cat(pieces).index_select(0, inverse)


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


# ============================================================================ DC
#: Transformations of the DC augmentation, in the order of its default strategy.
DC_TRANSFORMS = ("crop", "scale", "rotate", "noise")

#: Coordinates this close (in pixels) outside the image still count as inside it
#: when rotating (float rounding of exact boundary points).
_ROTATE_EDGE_TOL = 1e-6


class DCParams(NamedTuple):
    """Random parameters of one :class:`DCAugment` call.

    Every tensor has a leading dimension ``B``: the batch size (per-sample draws,
    the default) or 1 (one draw shared by every image).

    Attributes
    ----------
    ops : tuple of str
        The strategy's transformations; row ``i`` applies ``ops[choice[i]]``.
    choice : Tensor of int64 on the CPU, shape (B,)
        Index into ``ops`` of each row's transformation. It stays on the host (it
        selects which rows go through which transformation), so reading it costs
        no device synchronisation.
    crop : Tensor of int64, shape (B, 2)
        Top-left corner ``(row, column)`` of the window, in ``[0, 2 * crop)``, taken
        from the image padded by ``crop`` pixels: a shift of ``corner - crop``.
    scale : Tensor of float64, shape (B, 2)
        Resize factors of the height and the width, in ``[1 - scale, 1 + scale)``;
        both multiply the image *height* (as in the reference).
    rotate : Tensor of int64, shape (B,)
        Rotation angle in degrees, in ``[-rotate, rotate)``.
    noise_seed : int
        Seed of the generator, on the images' device, of the Gaussian noise of the
        rows that chose ``noise``.
    """

    ops: tuple
    choice: torch.Tensor
    crop: torch.Tensor
    scale: torch.Tensor
    rotate: torch.Tensor
    noise_seed: int

    def to(self, device=None) -> "DCParams":
        """A copy with ``crop``, ``scale`` and ``rotate`` on ``device`` (never cast); ``choice`` stays on the host."""
        nb = device is not None and torch.device(device).type != "cpu"
        return self._replace(**{name: getattr(self, name).to(device, non_blocking=nb)
                                for name in ("crop", "scale", "rotate")})

    def _rows(self, index: torch.Tensor) -> "DCParams":
        return self._replace(**{name: getattr(self, name).index_select(0, index)
                                for name in ("crop", "scale", "rotate")})


class DCAugment:
    """The DC augmentation (Zhao et al., ICLR 2021), batched, seeded and on the device.

    The reference code trains its evaluation networks for DC with ``augment``: every
    image gets ONE transformation drawn uniformly from the strategy, with its own
    random parameters. This class does the same for a whole batch at once: the
    images are grouped by the transformation they drew (a loop over at most 4
    transformations, never over the images), each group is transformed in one
    vectorised pass, and the result is differentiable in the images.

    - ``crop``: pad by ``crop`` pixels with the per-channel mean of the batch, then
      take a window at a random corner in ``[0, 2 * crop)``, i.e. a shift of
      ``-crop .. crop - 1`` pixels; vacated pixels hold the channel's batch mean.
    - ``scale``: resize to ``int(f_h * H)`` rows and ``int(f_w * H)`` columns (both
      from the height ``H``, as the reference does), ``f`` uniform in
      ``[1 - scale, 1 + scale)``, by nearest neighbour, then centre-crop or
      zero-pad back to ``H x W`` (on a square canvas of the largest side, as the
      reference).
    - ``rotate``: rotate by an integer angle in ``[-rotate, rotate)`` degrees about
      the centre, with the reference's geometry (the rotated image's bounding box,
      then its centre crop, whose half-pixel offset when the sizes differ by an odd
      number is kept); points that come from outside the image take the mean of
      the channel means of the batch.
    - ``noise``: add ``noise`` times standard Gaussian noise.

    Parameters
    ----------
    strategy : str, default="crop_scale_rotate_noise"
        ``'_'``-joined transformations from ``crop``, ``scale``, ``rotate``,
        ``noise``; ``"none"`` or ``""`` gives the identity. The reference uses
        ``"crop_scale_rotate"`` for MNIST and ``"crop_noise"`` for networks with
        BatchNorm (its ``get_daparam``).
    crop : int, default=4
        Padding (pixels) of the crop; the shift is in ``[-crop, crop)``.
    scale : float in [0, 1), default=0.2
        Resize factors are uniform in ``[1 - scale, 1 + scale)``.
    rotate : int, default=45
        Angles are integers uniform in ``[-rotate, rotate)`` degrees.
    noise : float, default=0.001
        Standard deviation of the added Gaussian noise.
    per_sample : bool, default=True
        True (the reference): every image draws its own transformation and
        parameters, and ``apply`` needs a batch of the sampled size. False: one
        transformation with one set of parameters for every image of every batch
        (a Siamese draw).

    Notes
    -----
    Differences from the reference ``augment`` (``utils.py`` of
    VICO-UoE/DatasetCondensation), all deliberate:

    - **rotate** interpolates bilinearly (``grid_sample``) where the reference uses
      SciPy's cubic spline (``scipy.ndimage.rotate``, order 3); geometry, angles
      and fill are the same, so this equals ``scipy.ndimage.rotate(..., order=1,
      cval=<mean of channel means>)`` with the reference's centre crop (tested).
      Cubic and linear interpolation differ most on sharp edges.
    - **scale** gathers the same pixels as the reference's
      ``F.interpolate(mode="nearest")`` followed by its canvas and crop: the
      result is the reference's exactly (index arithmetic in float32, as torch's
      kernel; gathers, rather than an approximate ``grid_sample``).
    - **crop** and **noise** compute the reference's formulas.
    - Randomness comes from the ``torch.Generator`` given to :meth:`sample`, never
      from NumPy's or torch's global generators; the noise is drawn at
      :meth:`apply` from a generator on the images' device seeded by the sample
      (``noise_seed``), so it costs no host-to-device copy of a batch of noise,
      and CPU and CUDA give different (equally Gaussian) noise for one seed.
    - The fill values (channel means) are functions of the batch that gradients
      flow through; the reference treats them as constants (it never
      differentiates through its augmentation).
    - Settings the reference cannot run are accepted: ``crop=0`` or ``rotate=0``
      is the identity for that transformation, and a resized side that rounds to
      0 pixels is 1 pixel.
    - The reference mutates the batch it is given; this returns a new tensor.

    Randomness comes only from the generator given to :meth:`sample`: all of it
    is drawn in one call there (the noise seed included). With a CPU generator
    (recommended) the per-image choices reach the host for free; a CUDA
    generator costs one host synchronisation per :meth:`sample`.

    Examples
    --------
    >>> import torch
    >>> aug = DCAugment()
    >>> x = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(1)).requires_grad_()
    >>> params = aug.sample(x.shape, torch.Generator().manual_seed(0))
    >>> y = aug(x, params)
    >>> y.shape
    torch.Size([6, 1, 28, 28])
    >>> [params.ops[k] for k in params.choice.tolist()]
    ['noise', 'crop', 'scale', 'rotate', 'crop', 'noise']
    >>> y.sum().backward()
    >>> x.grad.shape
    torch.Size([6, 1, 28, 28])
    """

    def __init__(
        self,
        strategy: str = "crop_scale_rotate_noise",
        *,
        crop: int = 4,
        scale: float = 0.2,
        rotate: int = 45,
        noise: float = 0.001,
        per_sample: bool = True,
    ):
        self.strategy = strategy
        self.ops = _parse_strategy(strategy, DC_TRANSFORMS)
        for name, value in (("crop", crop), ("rotate", rotate)):
            if isinstance(value, bool) or not float(value).is_integer() or value < 0:
                raise ValueError(f"{name} must be an integer >= 0 (pixels or degrees), got {value!r}")
        if not 0.0 <= scale < 1.0:
            raise ValueError(f"scale must be in [0, 1) (factors are drawn in [1 - scale, 1 + scale)), got {scale!r}")
        if not (noise >= 0 and math.isfinite(noise)):
            raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
        self.crop = int(crop)
        self.scale = float(scale)
        self.rotate = int(rotate)
        self.noise = float(noise)
        self.per_sample = bool(per_sample)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(strategy={self.strategy!r}, crop={self.crop}, scale={self.scale}, "
            f"rotate={self.rotate}, noise={self.noise}, per_sample={self.per_sample})"
        )

    def with_per_sample(self, per_sample=True) -> "DCAugment":
        """A copy of this augmentation with ``per_sample`` set (every other setting kept)."""
        other = copy.copy(self)
        other.per_sample = bool(per_sample)
        return other

    # ------------------------------------------------------------------ sampling
    def sample(
        self,
        n_or_shape: int | Sequence[int],
        generator: torch.Generator,
        device: torch.device | str | None = None,
    ) -> DCParams:
        """Draw the random parameters of one augmentation call, in one draw from ``generator``.

        Parameters
        ----------
        n_or_shape : int or sequence of int
            Batch size, or a batch shape whose first entry is the batch size (with
            ``per_sample=False`` the parameters fit any batch).
        generator : torch.Generator
            The only source of randomness: the same state gives the same parameters.
        device : torch.device or str, optional
            Where to put the parameter tensors (default: the generator's device);
            :meth:`apply` also moves them to the batch's device.

        Returns
        -------
        DCParams

        Examples
        --------
        >>> import torch
        >>> p = DCAugment("rotate", rotate=10).sample(3, torch.Generator().manual_seed(0))
        >>> p.ops, p.rotate.tolist()
        (('rotate',), [5, -7, -6])
        """
        if not isinstance(generator, torch.Generator):
            raise TypeError("generator must be a torch.Generator (the global RNG is never used)")
        n = int(n_or_shape) if isinstance(n_or_shape, int) else int(n_or_shape[0])
        rows = n if self.per_sample else 1
        # Columns: choice, crop corner x2, scale factor x2, angle; then the noise seed.
        # float64, as the reference's NumPy draws (int(f * H) depends on the last bits).
        u = torch.rand(rows * 6 + 1, dtype=torch.float64, generator=generator, device=generator.device)
        noise_seed = int(u[-1] * 2.0**53)  # host value: free for a CPU generator
        u = u[:-1].reshape(rows, 6)
        k = max(len(self.ops), 1)
        choice = (u[:, 0] * k).floor().long().clamp_(0, k - 1).cpu()
        two_crop, two_rotate = 2 * self.crop, 2 * self.rotate
        # One packed float64 tensor (integers exact), so moving it is a single copy.
        vals = torch.cat([
            (u[:, 1:3] * two_crop).floor().clamp_(0, max(two_crop - 1, 0)),
            (1.0 - self.scale) + (2.0 * self.scale) * u[:, 3:5],
            (u[:, 5:6] * two_rotate).floor().clamp_(0, max(two_rotate - 1, 0)) - self.rotate,
        ], dim=1)
        if device is not None:
            vals = vals.to(device, non_blocking=torch.device(device).type != "cpu")
        return DCParams(ops=self.ops, choice=choice, crop=vals[:, 0:2].long(), scale=vals[:, 2:4],
                        rotate=vals[:, 4].long(), noise_seed=noise_seed)

    # ------------------------------------------------------------------ applying
    def apply(self, x: torch.Tensor, params: DCParams) -> torch.Tensor:
        """Augment a batch with given parameters.

        Parameters
        ----------
        x : Tensor, shape (N, C, H, W)
            Floating-point images on any device; may require grad.
        params : DCParams
            From :meth:`sample`: per-sample parameters need ``N`` rows, shared ones
            (``per_sample=False``) apply to any ``N``.

        Returns
        -------
        Tensor, shape (N, C, H, W)
            Augmented images, same dtype and device, differentiable in ``x``.

        Examples
        --------
        >>> import torch
        >>> aug = DCAugment("crop", crop=1, per_sample=False)
        >>> x = torch.arange(1.0, 10.0).reshape(1, 1, 3, 3)
        >>> p = aug.sample(1, torch.Generator())._replace(crop=torch.tensor([[0, 1]]))
        >>> aug(x, p)[0, 0].tolist()  # shifted down by one row; the fill is the mean, 5
        [[5.0, 5.0, 5.0], [1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
        """
        if x.ndim != 4:
            raise ValueError(f"expected a batch of shape (N, C, H, W), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"expected floating-point images, got {x.dtype}")
        b = params.choice.shape[0]
        if b not in (1, x.shape[0]):
            raise ValueError(
                f"per-sample parameters for {b} images cannot augment a batch of {x.shape[0]}"
            )
        if not params.ops:
            return x
        params = params.to(x.device)
        chosen = {params.ops[k] for k in torch.unique(params.choice).tolist()}
        # the reference's fills: the per-channel mean of the batch, and the mean of those
        channel_mean = x.mean(dim=(0, 2, 3)) if chosen & {"crop", "rotate"} else None

        def transform(k, xs, rows):
            p = params if rows is None else params._rows(rows)
            op = params.ops[k]
            if op == "crop":
                return _dc_crop(xs, p.crop, self.crop, channel_mean)
            if op == "scale":
                return _dc_scale(xs, p.scale)
            if op == "rotate":
                return _dc_rotate(xs, p.rotate, channel_mean.mean())
            gen = torch.Generator(device=xs.device).manual_seed(params.noise_seed)
            shape = (p.rotate.shape[0], *xs.shape[1:])  # one noise image per row of parameters
            return xs + self.noise * torch.randn(shape, generator=gen, device=xs.device, dtype=xs.dtype)

        return _by_choice(x, params.choice, transform)

    __call__ = apply


def _dc_crop(x, corner, crop, fill):
    """``out[i, j] = x[i + r - crop, j + c - crop]``, ``fill[channel]`` outside (corner ``(r, c)`` per row)."""
    _, c, h, w = x.shape
    rows = torch.arange(h, device=x.device)[None, :] + (corner[:, 0:1] - crop)  # (b, h)
    cols = torch.arange(w, device=x.device)[None, :] + (corner[:, 1:2] - crop)  # (b, w)
    return _gather_2d(x, rows, cols, fill.to(x.dtype).reshape(1, c, 1, 1))


def _gather_2d(x, rows, cols, fill):
    """``out[n, :, i, j] = x[n, :, rows[n, i], cols[n, j]]``, ``fill`` where an index is out of range."""
    n, c, h, w = x.shape
    b = rows.shape[0]
    ridx = rows.clamp(0, h - 1).reshape(b, 1, h, 1).expand(n, c, h, w)
    cidx = cols.clamp(0, w - 1).reshape(b, 1, 1, w).expand(n, c, h, w)
    out = x.gather(2, ridx).gather(3, cidx)
    valid = ((rows >= 0) & (rows < h)).reshape(b, 1, h, 1) & ((cols >= 0) & (cols < w)).reshape(b, 1, 1, w)
    return torch.where(valid, out, fill)


def _dc_scale(x, factors):
    """The reference's scale: nearest resize to ``int(f * H)`` rows and columns, centred back on ``H x W``."""
    h, w = x.shape[-2:]
    sizes = (factors * h).floor().long().clamp_(min=1)  # both sides from the height, as the reference
    new_h, new_w = sizes[:, 0:1], sizes[:, 1:2]  # (b, 1)
    side = torch.clamp(torch.maximum(new_h, new_w), min=max(h, w))  # the square canvas
    # output pixel -> canvas (crop offset) -> resized image (paste offset) -> source (nearest)
    rows = torch.arange(h, device=x.device)[None, :] + (side - h) // 2 - (side - new_h) // 2
    cols = torch.arange(w, device=x.device)[None, :] + (side - w) // 2 - (side - new_w) // 2
    src_rows = _nearest_source(rows, h, new_h)
    src_cols = _nearest_source(cols, w, new_w)
    # outside the resized image the canvas is zero; mark it with an out-of-range index
    src_rows = torch.where((rows >= 0) & (rows < new_h), src_rows, -1)
    src_cols = torch.where((cols >= 0) & (cols < new_w), src_cols, -1)
    return _gather_2d(x, src_rows, src_cols, x.new_zeros(()))


def _nearest_source(index, in_size, out_size):
    """Source index of ``F.interpolate(mode="nearest")`` resizing ``in_size`` to ``out_size``.

    torch computes ``min(floor(index * (float(in_size) / out_size)), in_size - 1)`` in
    float32; so does this, hence the very same pixels.
    """
    ratio = torch.tensor(float(in_size), dtype=torch.float32, device=index.device) / out_size.float()
    return (index.float() * ratio).floor().long().clamp(0, in_size - 1)


def _dc_rotate(x, degrees, fill):
    """``scipy.ndimage.rotate(reshape=True)`` then centre crop, with bilinear interpolation."""
    n, _, h, w = x.shape
    b = degrees.shape[0]
    theta = torch.deg2rad(degrees.to(torch.float64))
    cos, sin = theta.cos().reshape(b, 1, 1), theta.sin().reshape(b, 1, 1)
    # SciPy's output plane: the bounding box of the rotated image, rounded to the nearest integer
    out_h = (cos.abs() * h + sin.abs() * w + 0.5).floor()
    out_w = (sin.abs() * h + cos.abs() * w + 0.5).floor()
    # the reference's crop starts at int((out - size) / 2) of that plane (truncated towards zero)
    top = torch.trunc((out_h - h) / 2)
    left = torch.trunc((out_w - w) / 2)
    i = torch.arange(h, dtype=torch.float64, device=x.device).reshape(1, h, 1)
    j = torch.arange(w, dtype=torch.float64, device=x.device).reshape(1, 1, w)
    di = i + top - (out_h - 1) / 2  # offsets from the output plane's centre
    dj = j + left - (out_w - 1) / 2
    src_i = cos * di + sin * dj + (h - 1) / 2  # SciPy's matrix [[c, s], [-s, c]] (row, column)
    src_j = -sin * di + cos * dj + (w - 1) / 2
    tol = _ROTATE_EDGE_TOL
    inside = (src_i >= -tol) & (src_i <= h - 1 + tol) & (src_j >= -tol) & (src_j <= w - 1 + tol)
    # pixel coordinates -> grid_sample's [-1, 1] (align_corners=False); "border" only matters at the edge
    grid = torch.stack([(2 * src_j + 1) / w - 1, (2 * src_i + 1) / h - 1], dim=-1).to(x.dtype)
    out = F.grid_sample(x, grid.expand(n, h, w, 2), mode="bilinear", padding_mode="border", align_corners=False)
    return torch.where(inside.reshape(b, 1, h, w), out, fill.to(x.dtype))


# ======================================================================== names
#: Values of the ``augment`` parameters that name an augmentation.
AUGMENTATIONS = ("dsa", "dc")


def resolve_augment(augment):
    """The augmentation object an ``augment`` parameter names.

    Parameters
    ----------
    augment : {"dsa", "dc"}, augmentation object or None
        ``"dsa"``: :class:`SiameseAugment` with the reference's defaults and
        ``per_sample=True`` (as the reference trains its evaluation networks:
        ``DiffAugment`` with ``seed=-1``, one transformation group per call, its own
        parameters per image). ``"dc"``: :class:`DCAugment` with its defaults (one
        transformation per image). An object with ``sample(n, generator, device=)``
        and ``apply(x, params)`` methods (a :class:`SiameseAugment`, a
        :class:`DCAugment`, or your own) is returned as it is; None gives None.

    Returns
    -------
    SiameseAugment, DCAugment, the given object, or None

    Raises
    ------
    ValueError
        For any other value.

    Examples
    --------
    >>> resolve_augment("dc")
    DCAugment(strategy='crop_scale_rotate_noise', crop=4, scale=0.2, rotate=45, noise=0.001, per_sample=True)
    >>> resolve_augment("dsa").per_sample
    True
    """
    if augment is None:
        return None
    if isinstance(augment, str):
        if augment == "dsa":
            return SiameseAugment(per_sample=True)
        if augment == "dc":
            return DCAugment()
    elif callable(getattr(augment, "sample", None)) and callable(getattr(augment, "apply", None)):
        return augment
    raise ValueError(
        f"augment={augment!r} is not an augmentation: use one of {list(AUGMENTATIONS)}, None, or an object "
        "with sample(n, generator, device=) and apply(x, params) methods (a SiameseAugment, a DCAugment)."
    )

"""The protocol between :class:`DatasetDistiller` and a distillation method.

A method is two objects:

- a :class:`DistillationStrategy`, a scikit-learn estimator that only holds the
  method's knobs (``_parameter_constraints``, ``get_params``/``set_params``), so
  ``DatasetDistiller(method=TrajectoryMatching(syn_steps=20))`` puts every knob in
  the distiller's parameter tree (``distiller__method__syn_steps`` in ``GridSearchCV``);
- a :class:`StrategyRun`, built by :meth:`DistillationStrategy.start` for one fit,
  which holds the state of that fit (networks, optimisers, learned scalars). It sees
  a :class:`DistillationContext`, never the estimator.

The distiller owns the outer loop: at every iteration it calls :meth:`StrategyRun.loss`,
back-propagates it into the synthetic images (and the tensors of
:meth:`StrategyRun.param_groups`), takes one optimiser step, then calls
:meth:`StrategyRun.after_step`.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator

from ..masking import mask_elements
from ..nn import SiameseAugment


class ClassBatches:
    """Real images grouped by class on the device; draws one batch per class without host syncs.

    Parameters
    ----------
    X : Tensor of shape (n_samples, ...)
    y_index : Tensor of int of shape (n_samples,)
        Class indices in ``[0, n_classes)``.
    n_classes : int
    generator : torch.Generator
        On the device of ``X``.
    """

    def __init__(self, X, y_index, n_classes, generator):
        order = torch.argsort(y_index, stable=True)
        self.X = X[order]
        counts = torch.bincount(y_index, minlength=n_classes)
        self.offsets = (torch.cumsum(counts, 0) - counts)[:, None]
        self.counts = counts[:, None]
        self.max_count = int(counts.max())
        self.min_count = int(counts.min())
        self.generator = generator

    def sample(self, per_class):
        """``per_class`` images of every class, without replacement, class-major order."""
        return self.X[self.sample_index(per_class)]

    def sample_index(self, per_class):
        """The rows of ``X`` that :meth:`sample` returns (the same draw from the generator)."""
        n_classes = self.counts.shape[0]
        keys = torch.rand(n_classes, self.max_count, generator=self.generator, device=self.X.device)
        positions = torch.arange(self.max_count, device=self.X.device)
        keys = keys.masked_fill(positions >= self.counts, 2.0)  # padding never wins
        picks = keys.topk(per_class, dim=1, largest=False).indices
        return (self.offsets + picks).reshape(-1)


@dataclass
class DistillationContext:
    """Everything a strategy may know of the fit it serves (and nothing of the estimator).

    Attributes
    ----------
    real : ClassBatches
        The real images, grouped by class on the device.
    net : torch.nn.Module
        A network built for the data (``embed`` and ``forward``), on the device.
    augment : SiameseAugment or None
        The Siamese augmentation of the distiller (``augment="dsa"``), or None.
    gen_device, gen_cpu : torch.Generator
        The fit's generators: on the device, and on the CPU for discrete choices
        that must not sync the device. A strategy draws all its randomness from them.
    classes : ndarray
        The class labels (``classes_`` of the distiller).
    ipc : int
        Synthetic images per class.
    batch_real : int
        Real images per class per iteration requested (capped at the smallest class
        by the strategy).
    mdt_mask_ratio : float
        Masked Distillation Training ratio.
    net_spec : dict
        How the network was made, for strategies that build more of them (MTT's
        experts): ``net`` (class or None), ``net_params``, ``augment`` (name or None),
        ``device`` (as requested).
    checkpoint_dir : pathlib.Path or None
        The distiller's checkpoint folder: a strategy may keep its own files below it.
    verbose : int
    siamese_draws : {"per_class", "shared"}
        How :meth:`siamese` draws: one augmentation per class (the reference), or one
        shared by every class.
    """

    real: ClassBatches
    net: torch.nn.Module
    augment: SiameseAugment | None
    gen_device: torch.Generator
    gen_cpu: torch.Generator
    classes: np.ndarray
    ipc: int
    batch_real: int
    mdt_mask_ratio: float
    net_spec: dict
    checkpoint_dir: Path | None = None
    verbose: int = 0
    siamese_draws: str = "per_class"

    @property
    def n_classes(self):
        return len(self.classes)

    @property
    def device(self):
        return self.real.X.device

    def mdt(self, X_syn):
        """The synthetic images as the network sees them: masked (MDT), fresh at every use."""
        return mask_elements(X_syn, self.mdt_mask_ratio, random_state=self.gen_device)

    def siamese(self, real, syn, augment=None):
        """Augment a real and a synthetic batch with the same random draws (DSA); identity without one.

        ``real`` and ``syn`` are class-major, the same number of images per class within
        each. With ``siamese_draws="per_class"`` every class gets its own draw (its own
        transformation and parameters), shared by its real and synthetic images, as in
        the reference code; all draws are made in one call from the CPU generator and
        applied in one batched pass per transformation. With ``"shared"`` one draw
        serves every class.
        """
        augment = self.augment if augment is None else augment
        if augment is None:
            return real, syn
        if self.siamese_draws == "shared":
            params = augment.sample(1, self.gen_cpu, device=real.device)
            return augment(real, params), augment(syn, params)
        if self.siamese_draws != "per_class":
            raise ValueError(f"siamese_draws={self.siamese_draws!r} is unknown; use 'per_class' or 'shared'.")
        params = augment.sample_groups(self.n_classes, self.gen_cpu, device=real.device)
        return (augment(real, params.repeat_interleave(real.shape[0] // self.n_classes)),
                augment(syn, params.repeat_interleave(syn.shape[0] // self.n_classes)))


class DistillationStrategy(BaseEstimator):
    """Base of the distillation methods that :class:`~ddcal_sklearn.DatasetDistiller` runs.

    A strategy is an estimator that holds a method's parameters, so they are
    validated by ``_parameter_constraints``, cloned with the distiller and
    reachable from ``GridSearchCV`` (``distiller__method__<knob>``). It does no work
    itself: :meth:`start` builds a :class:`StrategyRun` for one fit.

    To add a method: subclass this and :class:`StrategyRun` in one file of
    :mod:`ddcal_sklearn.distillation`, and add one entry to the registry
    (``ddcal_sklearn.distillation._registry.STRATEGIES``).
    """

    _parameter_constraints: dict = {}

    def start(self, context):
        """The run of this method for one fit (heavy set-up, e.g. training experts, happens here).

        Parameters
        ----------
        context : DistillationContext

        Returns
        -------
        run : StrategyRun
        """
        raise NotImplementedError

    def check(self, *, ipc, augment, n_dims):
        """Refuse, before any work, settings the method cannot run with (``ValueError``).

        Parameters
        ----------
        ipc : int
        augment : str or None
            The distiller's ``augment``.
        n_dims : int
            Rank of X (4 for images, 2 for flat features).
        """


class StrategyRun:
    """The state of one method during one fit; built by :meth:`DistillationStrategy.start`.

    Checkpoints (``DatasetDistiller(checkpoint_dir=...)``) save the images, the
    optimiser (momentum of every parameter group, :meth:`param_groups` included)
    and both generators; a run that keeps any other state from one iteration to the
    next (a network being trained, a step counter, a learned scalar) returns it
    from :meth:`state_dict` and takes it back in :meth:`load_state_dict`, so that a
    resumed fit equals an uninterrupted one.

    Parameters
    ----------
    strategy : DistillationStrategy
        The parameters (read only).
    context : DistillationContext
    """

    def __init__(self, strategy, context):
        self.strategy = strategy
        self.context = context

    def param_groups(self):
        """Extra learnable tensors as optimiser parameter groups (e.g. MTT's step size)."""
        return []

    def loss(self, X_syn):
        """The matching loss of one iteration, differentiable w.r.t. ``X_syn``."""
        raise NotImplementedError

    def after_step(self, X_syn):
        """Work after the image update (e.g. training the matching network on the new set)."""

    def fitted_attributes(self):
        """Extra fitted attributes to set on the distiller (names end with ``_``)."""
        return {}

    def state_dict(self):
        """State carried from one iteration to the next, for a checkpoint.

        Returns
        -------
        state : dict
            Tensors and plain Python values only (str, int, float, bool, None, lists,
            dicts): it is saved with :func:`torch.save` and read back with
            ``weights_only=True``. The default, ``{}``, suits a run whose every
            iteration starts afresh from the generators (e.g. DM).
        """
        return {}

    def load_state_dict(self, state):
        """Restore :meth:`state_dict`'s result into a freshly started run, before resuming.

        Parameters
        ----------
        state : dict
            Tensors are on the CPU; copy them to the device as needed.
        """
        if state:
            raise ValueError(
                f"{type(self).__name__} keeps no state between iterations, but the checkpoint has "
                f"{sorted(state)}."
            )

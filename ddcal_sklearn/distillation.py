"""``DatasetDistiller``: learn a small synthetic image set from real data (a sampler)."""

import json
import math
import numbers
import os
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator, _fit_context
from sklearn.preprocessing import LabelEncoder
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from tqdm.auto import tqdm

from ._checkpoint import CHECKPOINT_NAME, load_checkpoint, run_fingerprint, save_checkpoint
from ._utils import check_generator, draw_seed, remove_stale_temporaries, resolve_device
from ._validation import check_label_types
from .augment import SiameseAugment
from .masking import check_mask_ratio, mask_elements
from .nets import MLP, ConvNet, network_kwargs

_METHODS = ("dm", "dc", "dsa", "mtt")


def reinitialize_(module, generator):
    """Redraw a module's weights in place with PyTorch's default scheme, from ``generator``.

    Equivalent to building a fresh network, without the Python cost of constructing
    one at every distillation iteration and without touching torch's global RNG.
    """
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear)):
                torch.nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
                if layer.bias is not None:
                    fan_in = layer.weight[0].numel()
                    bound = 1 / math.sqrt(fan_in)
                    torch.nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
            elif isinstance(layer, (torch.nn.GroupNorm, torch.nn.LayerNorm, torch.nn.BatchNorm2d)):
                if getattr(layer, "weight", None) is not None:
                    layer.weight.fill_(1.0)
                    layer.bias.zero_()
    return module


class _ClassBatches:
    """Real images grouped by class on the device; draws one batch per class without host syncs."""

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
        n_classes = self.counts.shape[0]
        keys = torch.rand(n_classes, self.max_count, generator=self.generator, device=self.X.device)
        positions = torch.arange(self.max_count, device=self.X.device)
        keys = keys.masked_fill(positions >= self.counts, 2.0)  # padding never wins
        picks = keys.topk(per_class, dim=1, largest=False).indices
        return self.X[(self.offsets + picks).reshape(-1)]


def build_network(net, net_params, X, n_classes, device):
    """The network a distiller (or expert trajectory) uses for ``X``: ``net`` or ConvNet/MLP by rank.

    The constructor gets ``net_params`` plus the sizes the data determines
    (:func:`~ddcal_sklearn.nets.network_kwargs`); weights come from a forked RNG, since
    every user redraws them from its own generator.
    """
    net_class = net or (ConvNet if X.ndim == 4 else MLP)
    params = network_kwargs(net_class, X.shape[1:], n_classes, net_params)
    try:
        with torch.random.fork_rng(devices=[]):
            module = net_class(**params)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"net={net_class.__name__} cannot be built with net_params={params}: {exc}") from exc
    if not hasattr(module, "embed"):
        raise TypeError(f"net={net_class.__name__} needs an `embed(x)` method returning features.")
    return module.to(device)


class DistillationStrategy:
    """Base of the private per-method strategies of :class:`DatasetDistiller`.

    The distiller owns the outer loop: at every iteration it calls :meth:`loss`,
    back-propagates it into the synthetic images (and the tensors of
    :meth:`param_groups`), takes one optimiser step, then calls :meth:`after_step`.
    A strategy draws all its randomness from ``generators`` (a generator on the
    device, and a CPU generator for discrete choices that must not sync the device)
    and may not read torch's global generator.

    Checkpoints (``DatasetDistiller(checkpoint_dir=...)``) save the images, the
    optimiser (momentum of every parameter group, :meth:`param_groups` included) and
    both generators; a strategy that keeps any other state from one iteration to the
    next (a network being trained, a step counter, a learned scalar) returns it from
    :meth:`state_dict` and takes it back in :meth:`load_state_dict`, so that a resumed
    fit equals an uninterrupted one.

    Parameters
    ----------
    distiller : DatasetDistiller
        The estimator being fitted (read its parameters; ``method_params`` holds the
        method-specific ones, validated against :attr:`defaults`).
    real : _ClassBatches
        Real images grouped by class on the device (``sample(per_class)``).
    net : torch.nn.Module
        A network built for the data (``embed`` and ``forward``), on the device.
    augment : SiameseAugment or None
    generators : (torch.Generator, torch.Generator)
        Device generator, CPU generator.
    """

    #: method-specific parameters and their defaults (``DatasetDistiller(method_params=...)``)
    defaults = {}

    def __init__(self, distiller, real, net, augment, generators):
        self.d = distiller
        self.params = {**self.defaults, **(distiller.method_params or {})}
        self.real = real
        self.net = net
        self.augment = augment
        self.gen_device, self.gen_cpu = generators
        self.n_classes = distiller._n_classes
        self.ipc = distiller.ipc

    def param_groups(self):
        """Extra learnable tensors as optimiser parameter groups (e.g. MTT's step size)."""
        return []

    def loss(self, X_syn):
        """The matching loss of one iteration, differentiable w.r.t. ``X_syn``."""
        raise NotImplementedError

    def after_step(self, X_syn):
        """Work after the image update (e.g. training the matching network on the new set)."""

    def mdt(self, X_syn):
        """The synthetic images as the network sees them: masked (MDT), fresh at every use."""
        return mask_elements(X_syn, self.d.mdt_mask_ratio, random_state=self.gen_device)

    def siamese(self, real, syn):
        """Augment a real and a synthetic batch with one shared random draw (DSA)."""
        if self.augment is None:
            return real, syn
        params = self.augment.sample(1, self.gen_cpu, device=real.device)
        return self.augment(real, params), self.augment(syn, params)

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
            ``weights_only=True``. The default, ``{}``, suits a strategy whose every
            iteration starts afresh from the generators (e.g. DM).
        """
        return {}

    def load_state_dict(self, state):
        """Restore :meth:`state_dict`'s result into a freshly built strategy, before resuming.

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


class _DistributionMatching(DistillationStrategy):
    """DM (Zhao & Bilen, WACV 2023): match class-mean embeddings of randomly initialised networks."""

    def __init__(self, *args):
        super().__init__(*args)
        self.net.requires_grad_(False)  # only the images learn
        self.per_class = min(self.d.batch_real, self.real.min_count)

    def loss(self, X_syn):
        reinitialize_(self.net, self.gen_device)
        real, syn = self.siamese(self.real.sample(self.per_class), self.mdt(X_syn))
        with torch.no_grad():
            mean_real = self.net.embed(real).reshape(self.n_classes, self.per_class, -1).mean(1)
        mean_syn = self.net.embed(syn).reshape(self.n_classes, self.ipc, -1).mean(1)
        return ((mean_real - mean_syn) ** 2).sum()


def _is_json(value):
    try:
        json.dumps(value)
        return True
    except TypeError:
        return False


def _strategy_class(method):
    """The private strategy implementing ``method`` (gradient and trajectory matching live in their own modules)."""
    if method == "dm":
        return _DistributionMatching
    if method in ("dc", "dsa"):
        from ._gradient_matching import GradientMatching

        return GradientMatching
    if method == "mtt":
        from ._trajectory_matching import TrajectoryMatching

        return TrajectoryMatching
    raise ValueError(f"method={method!r} is unknown; use one of {list(_METHODS)}.")


class DatasetDistiller(BaseEstimator):
    """Distil a real labelled image set into ``ipc`` synthetic images per class.

    ``fit(X, y)`` learns ``X_synthetic_`` / ``y_synthetic_`` (class-balanced, same
    dtype and layout as ``X``, labels as in ``y``). In scikit-learn terms this is a
    **sampler**, not a transformer: it changes the number of samples, so
    ``fit_transform`` would break the rows-in-rows-out contract. Two doors compose it:

    - ``fit_resample(X, y)`` returns the synthetic set (imbalanced-learn's sampler
      protocol), so it works inside ``imblearn.pipeline.Pipeline`` like
      ``ClusterCentroids``: the pipeline distils during ``fit`` and passes real data
      through at ``predict``;
    - :class:`~ddcal_sklearn.DistilledClassifier` distils inside ``fit`` and trains a
      classifier on the result, for plain scikit-learn pipelines and ``GridSearchCV``.

    Method ``"dm"`` is distribution matching (Zhao & Bilen, "Dataset Condensation
    with Distribution Matching", WACV 2023): each iteration draws a freshly
    initialised embedding network, embeds a real batch of every class and the
    synthetic images of every class (one batched pass over all classes, with the
    same differentiable Siamese augmentation on both sides), and moves the synthetic
    images by SGD to reduce the squared distance between class-mean embeddings.

    **Masked Distillation Training (MDT)**, our reading of Zhu et al. (ICCV 2023),
    who published no code for it: with ``mdt_mask_ratio = r > 0``, every iteration
    multiplies the synthetic images fed to the network by a fresh element-wise
    Bernoulli keep-mask of probability ``1 - r`` (no rescaling; the same function as
    Masked Temperature Scaling, :func:`~ddcal_sklearn.mask_elements`), before the
    augmentation. The learnable images themselves are never masked. ``r = 0`` is
    plain DM, bit for bit under the same ``random_state``.

    Parameters
    ----------
    method : {"dm", "dc", "dsa", "mtt"}, default="dm"
        Distillation method: "dm" distribution matching (below); "dc" / "dsa"
        gradient matching without / with Siamese augmentation (Zhao et al. 2021;
        Zhao & Bilen 2021; "dc" ignores ``augment``, "dsa" requires it; keys of
        ``method_params`` in ``ddcal_sklearn._gradient_matching.GradientMatching``);
        "mtt" trajectory matching (Cazenavette et al. 2022; ``method_params`` keys in
        ``ddcal_sklearn._trajectory_matching.TrajectoryMatching``).
    ipc : int, default=10
        Synthetic images per class; at most the size of the smallest class.
    mdt_mask_ratio : float in [0, 1), default=0.0
        Probability of zeroing each element of the synthetic images at every use.
    n_iterations : int, default=1000
        Outer iterations (the DM paper uses 20,000 on CIFAR-10).
    lr_images : float, default=1.0
        Learning rate of the synthetic images (DM's default; the DC/DSA reference uses
        0.1, MTT 1000 on CIFAR-10 with its own normalisation: set it per method).
    momentum : float, default=0.5
        SGD momentum of the synthetic images (DM's default).
    batch_real : int, default=256
        Real images per class per iteration (capped at the smallest class).
    init : {"real", "noise"}, default="real"
        Start from randomly chosen real images of each class, or from Gaussian noise.
    augment : {"dsa"} or None, default="dsa"
        Differentiable Siamese augmentation (:class:`~ddcal_sklearn.SiameseAugment`)
        applied with the same parameters to the real and synthetic batches. Needs
        images; use None for flat features.
    net : torch.nn.Module class or None, default=None
        Embedding network class, instantiated with ``in_channels``/``image_size``/
        ``n_features`` and ``n_classes`` where it takes them, plus ``net_params``.
        None means :class:`~ddcal_sklearn.ConvNet` for images, :class:`~ddcal_sklearn.MLP`
        for flat features. It must have an ``embed`` method.
    net_params : dict or None, default=None
        Extra constructor arguments of ``net`` (e.g. ``{"width": 128, "depth": 3}``).
    method_params : dict or None, default=None
        Parameters specific to ``method`` (none for "dm"); unknown keys are an error.
    device : {"auto", "cpu", "cuda", "cuda:N"}, default="auto"
    random_state : None, int, numpy Generator or RandomState, default=None
        Source of every random draw (initial images, batches, networks, augmentation,
        masks). Same value, same synthetic set on the CPU with the same number of
        torch threads (``torch.set_num_threads`` changes float summation order).
    verbose : int, default=0
        1 shows a tqdm progress bar with the loss.
    checkpoint_dir : str, path-like or None, default=None
        Directory for checkpoints (created if needed); None writes none. The loop's
        whole state is written to ``<checkpoint_dir>/distiller.pt`` every
        ``checkpoint_every`` iterations and at the end, and a later ``fit`` with the
        same parameters and data resumes from it (see Notes). Use one directory
        per run. Each ``fit`` then hashes ``X`` once (SHA-256, about a second per
        gigabyte) to recognise its run.
    checkpoint_every : int, default=100
        Iterations between two checkpoints. Each one copies the state to the host
        (one device sync) and writes a file the size of the synthetic set plus its
        momentum (plus the matching network for "dc"/"dsa").

    Attributes
    ----------
    X_synthetic_ : ndarray of shape (n_classes * ipc, ...)
        Distilled images, class-major order, dtype of ``X``.
    y_synthetic_ : ndarray of shape (n_classes * ipc,)
        Their labels.
    classes_ : ndarray of shape (n_classes,)
    loss_curve_ : ndarray of shape (n_iterations,)
        Matching loss at every iteration.
    syn_lr_ : float
        MTT only: the learned step size of the student (use it as the learning rate
        when training on the synthetic set, as the MTT paper does).
    experts_ : ExpertTrajectories
        MTT only: the expert trajectories used (given, or fitted on ``X``); save them
        with ``experts_.save(path)`` to reuse them. MTT needs ``lr_images`` in the
        hundreds to thousands.
    start_iteration_ : int
        Iteration the last ``fit`` started from: 0 for a fresh run, the saved
        iteration count when it resumed from a checkpoint (``n_iterations`` if that
        checkpoint was complete: nothing was recomputed).
    n_features_in_ : int

    Notes
    -----
    **Checkpoints.** With ``checkpoint_dir`` set, each checkpoint holds the synthetic
    images, the SGD state of the images (and of MTT's step size), the strategy's own
    state (the DC/DSA network, its optimiser and position in the outer loop; MTT's
    ``syn_lr``), the states of the device and CPU generators, the iteration count and
    the loss curve so far, in one file written to a temporary name, fsync'ed and
    renamed, so a process killed at any moment (even by SIGKILL) leaves the previous
    checkpoint whole. The
    file is read with ``torch.load(weights_only=True)``: no arbitrary pickle. When
    ``method="mtt"`` trains its own experts, they are checkpointed under
    ``<checkpoint_dir>/experts`` (one file per finished expert), so a resumed fit does
    not train them again.

    A ``fit`` that finds a checkpoint resumes after its last saved iteration
    (``start_iteration_``); on the CPU, with the same number of torch threads, the
    result equals the uninterrupted run's bit for bit. The checkpoint records a
    fingerprint of the run: every parameter but ``verbose`` and ``checkpoint_*``
    (``device`` by its type; a fitted ``experts`` by a digest of its trajectories), a
    SHA-256 of ``X`` and ``y`` with their shapes, and the format version. A checkpoint
    whose fingerprint differs is an error naming what differs, never resumed nor
    overwritten: silently starting afresh would destroy hours of work after a typo,
    and resuming would mix two runs. A damaged file or one of a newer format is an
    error naming the file. With ``random_state`` None (or a generator object), a
    resumed fit continues the saved run's own random streams.

    Examples
    --------
    >>> from ddcal_sklearn import DatasetDistiller, load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> distiller = DatasetDistiller(ipc=2, n_iterations=20, net_params={"width": 16, "depth": 2},
    ...                              random_state=0)
    >>> X_syn, y_syn = distiller.fit_resample(X, y)
    >>> X_syn.shape, y_syn[:4].tolist()
    ((20, 1, 8, 8), [0, 0, 1, 1])
    """

    _parameter_constraints = {
        "method": [StrOptions(set(_METHODS))],
        "ipc": [Interval(numbers.Integral, 1, None, closed="left")],
        "mdt_mask_ratio": [Interval(numbers.Real, 0, 1, closed="left")],
        "n_iterations": [Interval(numbers.Integral, 0, None, closed="left")],
        "lr_images": [Interval(numbers.Real, 0, None, closed="neither")],
        "momentum": [Interval(numbers.Real, 0, 1, closed="left")],
        "batch_real": [Interval(numbers.Integral, 1, None, closed="left")],
        "init": [StrOptions({"real", "noise"})],
        "augment": [StrOptions({"dsa"}), None],
        "net": [type, None],
        "net_params": [dict, None],
        "method_params": [dict, None],
        "device": [str, torch.device, None],
        "random_state": ["random_state", np.random.Generator],
        "verbose": ["verbose"],
        "checkpoint_dir": [str, os.PathLike, None],
        "checkpoint_every": [Interval(numbers.Integral, 1, None, closed="left")],
    }

    def __init__(self, method="dm", *, ipc=10, mdt_mask_ratio=0.0, n_iterations=1000, lr_images=1.0,
                 momentum=0.5, batch_real=256, init="real", augment="dsa", net=None, net_params=None,
                 method_params=None, device="auto", random_state=None, verbose=0, checkpoint_dir=None,
                 checkpoint_every=100):
        self.method = method
        self.ipc = ipc
        self.mdt_mask_ratio = mdt_mask_ratio
        self.n_iterations = n_iterations
        self.lr_images = lr_images
        self.momentum = momentum
        self.batch_real = batch_real
        self.init = init
        self.augment = augment
        self.net = net
        self.net_params = net_params
        self.method_params = method_params
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.target_tags.required = True
        tags.non_deterministic = self.random_state is None
        return tags

    def _check_configuration(self, X, y):
        """Every check that can fail, before any work is done."""
        try:
            strategy_class = _strategy_class(self.method)
        except ImportError as exc:
            raise ValueError(f"method={self.method!r} is not implemented yet.") from exc
        check_mask_ratio(self.mdt_mask_ratio, param="mdt_mask_ratio")
        allowed = strategy_class.defaults
        unknown = set(self.method_params or {}) - set(allowed)
        if unknown:
            raise ValueError(
                f"method_params has keys {sorted(unknown)} unknown to method={self.method!r}; "
                f"allowed: {sorted(allowed) or 'none'}."
            )
        device = resolve_device(self.device)
        if self.checkpoint_dir is not None and os.path.lexists(self.checkpoint_dir) \
                and not os.path.isdir(self.checkpoint_dir):
            raise ValueError(
                f"checkpoint_dir={str(self.checkpoint_dir)!r} exists and is not a directory: pass a "
                "directory (it is created if missing), or None for no checkpoints."
            )
        if X.ndim not in (2, 4):
            raise ValueError(
                f"X has shape {X.shape}: DatasetDistiller needs images (n_samples, channels, "
                "height, width) or flat features (n_samples, n_features)."
            )
        if X.ndim == 2 and self.augment is not None:
            raise ValueError(
                f"augment={self.augment!r} needs images (n_samples, channels, height, width), but X "
                f"has shape {X.shape}; pass augment=None for flat features."
            )
        check_classification_targets(y)
        classes, counts = np.unique(y, return_counts=True)
        if len(classes) < 2:
            raise ValueError(f"y has only one class ({classes[0]!r}); distillation needs at least 2 classes.")
        if self.ipc > counts.min():
            raise ValueError(
                f"ipc={self.ipc} is larger than the smallest class ({classes[counts.argmin()]!r} has "
                f"{counts.min()} samples): lower ipc to at most {counts.min()}."
            )
        return device, strategy_class

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Learn the synthetic set from real ``X``, ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, channels, height, width) or (n_samples, n_features)
            Real inputs, normalised as the downstream network will see them.
        y : array-like of shape (n_samples,)

        Returns
        -------
        self : DatasetDistiller

        Raises
        ------
        ValueError
            Besides invalid parameters or data: if ``checkpoint_dir`` holds a
            checkpoint of another run, a damaged one, or one of a newer format.
        """
        check_label_types(y)  # before NumPy turns [0, "a"] into strings
        X, y = validate_data(self, X, y, allow_nd=True, dtype=(np.float32, np.float64))
        device, strategy_class = self._check_configuration(X, y)
        encoder = LabelEncoder().fit(y)
        self.classes_ = encoder.classes_
        self._n_classes = n_classes = len(self.classes_)
        y_index = encoder.transform(y)

        checkpoint = fingerprint = None
        if self.checkpoint_dir is not None:
            fingerprint = run_fingerprint(self, X, y_index, self.classes_, device)
            checkpoint = load_checkpoint(self._checkpoint_path(), fingerprint, self.checkpoint_dir)
            remove_stale_temporaries(self._checkpoint_path())
        rng = check_generator(self.random_state)
        seeds = (draw_seed(rng), draw_seed(rng))
        if checkpoint is not None:  # equal for an int random_state; None resumes its own run's streams
            seeds = tuple(int(seed) for seed in checkpoint["seeds"])
        gen_device = torch.Generator(device=device).manual_seed(seeds[0])
        gen_cpu = torch.Generator().manual_seed(seeds[1])  # discrete augmentation choices, no device sync
        X_real = torch.as_tensor(np.require(X, requirements=["C", "W"]), dtype=torch.float32, device=device)
        y_real = torch.as_tensor(y_index, device=device)
        real = _ClassBatches(X_real, y_real, n_classes, gen_device)

        if self.init == "real":
            X_syn = real.sample(self.ipc).clone()
        else:
            X_syn = torch.randn((n_classes * self.ipc, *X.shape[1:]), generator=gen_device, device=device)
        X_syn.requires_grad_(True)
        augment = SiameseAugment() if self.augment == "dsa" else None
        net = build_network(self.net, self.net_params, X, n_classes, device)
        strategy = strategy_class(self, real, net, augment, (gen_device, gen_cpu))
        optimizer = torch.optim.SGD([{"params": [X_syn]}, *strategy.param_groups()],
                                    lr=self.lr_images, momentum=self.momentum)

        losses = torch.zeros(self.n_iterations, device=device)
        start = 0
        if checkpoint is not None:
            # after every set-up draw, so the restored generators continue exactly where they stopped
            start = self._restore_checkpoint(checkpoint, X_syn, optimizer, strategy, (gen_device, gen_cpu), losses)
        self.start_iteration_ = start

        def write_checkpoint(n_done):
            save_checkpoint(self._checkpoint_path(), {
                "fingerprint": json.dumps(fingerprint, sort_keys=True), "iteration": n_done, "seeds": list(seeds),
                "X_synthetic": X_syn, "optimizer": optimizer.state_dict(), "strategy": strategy.state_dict(),
                "generator_device": gen_device.get_state(), "generator_cpu": gen_cpu.get_state(),
                "loss_curve": losses[:n_done].clone(),  # a view would save the whole buffer
            })

        progress = tqdm(range(start, self.n_iterations), initial=start, total=self.n_iterations,
                        disable=not self.verbose, desc=f"{self.method} ipc={self.ipc}")
        report_every = max(1, self.n_iterations // 50)
        saved = start if checkpoint is not None else None
        for iteration in progress:
            loss = strategy.loss(X_syn)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            strategy.after_step(X_syn)
            losses[iteration] = loss.detach()  # stays on the device: no host sync per iteration
            if self.verbose and iteration % report_every == 0:
                progress.set_postfix(loss=f"{loss.item():.4g}")
            if fingerprint is not None and (iteration + 1) % self.checkpoint_every == 0:
                write_checkpoint(iteration + 1)
                saved = iteration + 1
        if fingerprint is not None and saved != self.n_iterations:
            write_checkpoint(self.n_iterations)

        self.loss_curve_ = losses.cpu().numpy()
        if not torch.isfinite(X_syn).all():  # one sync, after the loop: a diverged set must not go on silently
            raise ValueError(
                f"Distillation diverged: the synthetic images hold NaN or inf after {self.n_iterations} iterations "
                f"with lr_images={self.lr_images!r}. Lower lr_images (and, for method='mtt', "
                "method_params['lr_lr']), then fit again"
                + (" with a new checkpoint_dir." if self.checkpoint_dir is not None else "."))
        self.X_synthetic_ = X_syn.detach().cpu().numpy().astype(X.dtype, copy=False)
        self.y_synthetic_ = np.repeat(self.classes_, self.ipc)
        for name, value in strategy.fitted_attributes().items():
            setattr(self, name, value)
        del self._n_classes
        return self

    def _checkpoint_path(self):
        return Path(self.checkpoint_dir) / CHECKPOINT_NAME

    def _restore_checkpoint(self, checkpoint, X_syn, optimizer, strategy, generators, losses):
        """Load a (fingerprint-checked) checkpoint into the freshly built loop; return its iteration."""
        path = self._checkpoint_path()
        try:
            iteration = checkpoint["iteration"]
            if not 0 <= iteration <= self.n_iterations:
                raise ValueError(f"iteration={iteration} is outside [0, n_iterations={self.n_iterations}]")
            saved_images, saved_losses = checkpoint["X_synthetic"], checkpoint["loss_curve"]
            if saved_images.shape != X_syn.shape or saved_losses.shape != (iteration,):
                raise ValueError(f"X_synthetic of shape {tuple(saved_images.shape)} and loss_curve of shape "
                                 f"{tuple(saved_losses.shape)}, expected {tuple(X_syn.shape)} and ({iteration},)")
            with torch.no_grad():
                X_syn.copy_(saved_images)
            optimizer.load_state_dict(checkpoint["optimizer"])
            strategy.load_state_dict(checkpoint["strategy"])
            losses[:iteration] = saved_losses
            for generator, key in zip(generators, ("generator_device", "generator_cpu")):
                generator.set_state(checkpoint[key])
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(
                f"{path} is a damaged DatasetDistiller checkpoint ({exc}); delete it to start this run afresh, "
                f"or pass another checkpoint_dir (now checkpoint_dir={str(self.checkpoint_dir)!r})."
            ) from exc
        return iteration

    def fit_resample(self, X, y):
        """Distil and return the synthetic set (imbalanced-learn's sampler protocol).

        Parameters
        ----------
        X : array-like of shape (n_samples, channels, height, width) or (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        X_synthetic : ndarray of shape (n_classes * ipc, ...)
        y_synthetic : ndarray of shape (n_classes * ipc,)
        """
        self.fit(X, y)
        return self.X_synthetic_, self.y_synthetic_

    def save(self, path, **metadata):
        """Save the synthetic set to ``path`` (.npz, no pickle) with its metadata.

        Parameters
        ----------
        path : str or path-like
        **metadata
            Extra JSON-serialisable entries, e.g. ``mean=``/``std=`` of the normalisation.

        Returns
        -------
        path : pathlib.Path
        """
        from .synthetic_set import save_synthetic_set

        check_is_fitted(self, "X_synthetic_")
        # every JSON-able parameter, so the file says how it was made
        params = {key: value for key, value in self.get_params().items() if _is_json(value)}
        params["net"] = getattr(self.net, "__name__", None)
        return save_synthetic_set(path, self.X_synthetic_, self.y_synthetic_, **{**params, **metadata})

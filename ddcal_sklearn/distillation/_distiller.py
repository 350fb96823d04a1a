"""``DatasetDistiller``: learn a small synthetic image set from real data (a sampler)."""

import contextlib
import json
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

from ..masking import check_mask_ratio
from ..nn import SiameseAugment, build_network
from ..utils import (
    RunCheckpoint,
    check_generator,
    check_input_scale,
    check_label_types,
    check_network_input,
    draw_seed,
    image_estimator_tags,
    is_jsonable,
    resolve_device,
    run_fingerprint,
    save_checkpoint,
)
from ._registry import STRATEGIES, resolve_strategy
from ._strategy import ClassBatches, DistillationContext, DistillationStrategy
from ._synthetic_set import save_synthetic_set

#: version of the checkpoint layout; a file with a larger one is refused with a clear error
CHECKPOINT_FORMAT_VERSION = 1
#: a run's checkpoint is ``distiller-<digest of its fingerprint>.pt``; ``distiller.pt`` (the name before
#: one file per run) is still read when its fingerprint is the run's
CHECKPOINT_NAME = "distiller.pt"
_CHECKPOINT_KIND = "ddcal_sklearn.DatasetDistiller checkpoint"
#: what a checkpoint holds (see the Notes of DatasetDistiller), and the type of each entry
_CHECKPOINT_KEYS = {
    "fingerprint": str, "iteration": int, "seeds": list, "X_synthetic": torch.Tensor, "optimizer": dict,
    "strategy": dict, "generator_device": torch.Tensor, "generator_cpu": torch.Tensor, "loss_curve": torch.Tensor,
}


def _like(template, array):
    """``array`` in the container ``template`` came in: list, pandas DataFrame or Series, else ndarray."""
    if isinstance(template, list):
        return array.tolist()
    if hasattr(template, "iloc") and hasattr(template, "columns"):  # a DataFrame (a one-column y too)
        if array.ndim == 1 and template.shape[1] == 1:
            array = array[:, None]
        if array.ndim == 2:
            return type(template)(array, columns=template.columns)
    if hasattr(template, "iloc") and getattr(template, "ndim", None) == 1:  # a Series
        return type(template)(array, name=template.name)
    return array


def _check_seeds(state):
    seeds = state["seeds"]
    return [] if len(seeds) == 2 and all(isinstance(seed, int) for seed in seeds) else ["seeds"]


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
    same differentiable Siamese augmentation on the real and synthetic images of a
    class, drawn per class; see ``siamese_draws``), and moves the synthetic
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
    method : {"dm", "dc", "dsa", "mtt"} or DistillationStrategy, default="dm"
        Distillation method, by name with its defaults, or as a strategy whose
        parameters are then part of this estimator's (``method__syn_steps`` in
        ``GridSearchCV``, cloned with it, shown in its HTML repr):
        "dm" is :class:`~ddcal_sklearn.DistributionMatching` (below); "dc" / "dsa" are
        :class:`~ddcal_sklearn.GradientMatching` without / with Siamese augmentation
        (Zhao et al. 2021; Zhao & Bilen 2021; "dc" ignores ``augment``, "dsa" requires
        it); "mtt" is :class:`~ddcal_sklearn.TrajectoryMatching` (Cazenavette et al.
        2022).
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
    siamese_draws : {"per_class", "shared"}, default="per_class"
        How the Siamese augmentation of the matching loss (DM, DSA) is drawn at every
        iteration: ``"per_class"`` gives every class its own transformation and
        parameters, shared by the real and synthetic images of that class, as the
        reference code does (all classes still in one batched pass); ``"shared"``
        makes one draw for all classes (this package's earlier behaviour, kept to
        reproduce sets made with it). Ignored without augmentation, by ``"dc"``, and by ``"mtt"``
        (whose training steps draw per image).
    net : str, torch.nn.Module class or None, default=None
        Embedding network: a name of :data:`~ddcal_sklearn.nn.NETWORKS` (``"convnet"``,
        ``"convnet_d4"``, ``"resnet18"``, ...: the class with the literature's presets) or a class, instantiated with ``in_channels``/``image_size``/
        ``n_features`` and ``n_classes`` where it takes them, plus ``net_params``.
        None means :class:`~ddcal_sklearn.ConvNet` for images, :class:`~ddcal_sklearn.MLP`
        for flat features. It must have an ``embed`` method.
    net_params : dict or None, default=None
        Extra constructor arguments of ``net`` (e.g. ``{"width": 128, "depth": 3}``).
    method_params : dict or None, default=None
        Deprecated (a ``FutureWarning``; removed in 0.3): parameters of the method's
        strategy, applied with ``set_params``; unknown keys are an error. Pass a
        strategy instead: ``method=GradientMatching(outer_loop=2)``.
    device : {"auto", "cpu", "cuda", "cuda:N"}, default="auto"
    random_state : None, int, numpy Generator or RandomState, default=None
        Source of every random draw (initial images, batches, networks, augmentation,
        masks). Same value, same synthetic set on the CPU with the same number of
        torch threads (``torch.set_num_threads`` changes float summation order).
    verbose : int, default=0
        1 shows a tqdm progress bar with the loss.
    checkpoint_dir : str, path-like or None, default=None
        Directory for checkpoints (created if needed); None writes none. The loop's
        whole state is written to ``<checkpoint_dir>/distiller-<digest>.pt`` every
        ``checkpoint_every`` iterations and at the end, and a later ``fit`` with the
        same parameters and data resumes from it (see Notes). Runs with other
        parameters or data may share the directory (a ``GridSearchCV``): each has its
        own file. Each ``fit`` hashes ``X`` once (SHA-256, about a second per
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
    strategy_ : DistillationStrategy
        The strategy the last fit ran (``method`` resolved, a clone).
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

    A ``fit`` that finds its run's checkpoint resumes after its last saved iteration
    (``start_iteration_``); on the CPU, with the same number of torch threads, the
    result equals the uninterrupted run's bit for bit. A run is identified by its
    fingerprint: every parameter but ``verbose`` and ``checkpoint_*`` (``device`` by its
    type; a fitted ``experts`` by a digest of its trajectories), a SHA-256 of ``X`` and
    ``y`` with their shapes, and the format version. Its file is named after it
    (``distiller-<digest>.pt``, the first 16 hex digits of the SHA-256 of the
    fingerprint), so runs with other parameters or data never overwrite each other in
    a shared directory, and each ``GridSearchCV`` candidate resumes its own. A
    ``distiller.pt`` written before this naming is still resumed when its fingerprint
    matches (it is never written again). A file of this run that is damaged, of a
    newer format, or holds another run's fingerprint (renamed by hand) is an error
    naming the file.

    **Runs that share a directory.** A ``fit`` holds an advisory lock of its run
    (``distiller-<digest>.lock``, via the ``filelock`` package; the operating system
    releases it when the process dies, even by SIGKILL) from start to end. A second
    ``fit`` of the same run while the first is alive, in this process or another (in a
    parallel ``GridSearchCV``, the candidates that differ only downstream of the
    distiller share its run on each fold), waits for the first to end, then reads the
    checkpoint it left: complete (nothing is recomputed), or partial if it died (the
    run resumes). Fits of other runs go on side by side. Temporary files of an
    interrupted write (``distiller-<digest>.pt.*.tmp``) are removed by the next ``fit``
    of their run, under its lock, so never while the run that writes them is alive. With
    ``random_state`` None (or a generator object), a resumed fit continues the saved
    run's own random streams.

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
        "method": [StrOptions(set(STRATEGIES)), DistillationStrategy],
        "ipc": [Interval(numbers.Integral, 1, None, closed="left")],
        "mdt_mask_ratio": [Interval(numbers.Real, 0, 1, closed="left")],
        "n_iterations": [Interval(numbers.Integral, 0, None, closed="left")],
        "lr_images": [Interval(numbers.Real, 0, None, closed="neither")],
        "momentum": [Interval(numbers.Real, 0, 1, closed="left")],
        "batch_real": [Interval(numbers.Integral, 1, None, closed="left")],
        "init": [StrOptions({"real", "noise"})],
        "augment": [StrOptions({"dsa"}), None],
        "siamese_draws": [StrOptions({"per_class", "shared"})],
        "net": [type, str, None],
        "net_params": [dict, None],
        "method_params": [dict, None],
        "device": [str, torch.device, None],
        "random_state": ["random_state", np.random.Generator],
        "verbose": ["verbose"],
        "checkpoint_dir": [str, os.PathLike, None],
        "checkpoint_every": [Interval(numbers.Integral, 1, None, closed="left")],
    }

    def __init__(self, method="dm", *, ipc=10, mdt_mask_ratio=0.0, n_iterations=1000, lr_images=1.0,
                 momentum=0.5, batch_real=256, init="real", augment="dsa", siamese_draws="per_class", net=None,
                 net_params=None, method_params=None, device="auto", random_state=None, verbose=0,
                 checkpoint_dir=None, checkpoint_every=100):
        self.method = method
        self.ipc = ipc
        self.mdt_mask_ratio = mdt_mask_ratio
        self.n_iterations = n_iterations
        self.lr_images = lr_images
        self.momentum = momentum
        self.batch_real = batch_real
        self.init = init
        self.augment = augment
        self.siamese_draws = siamese_draws
        self.net = net
        self.net_params = net_params
        self.method_params = method_params
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every

    def __sklearn_tags__(self):
        return image_estimator_tags(super().__sklearn_tags__(), self.random_state, target_required=True)

    def _check_configuration(self, X, y):
        """Every check that can fail, before any work is done."""
        strategy = resolve_strategy(self.method, self.method_params)
        strategy._validate_params()
        check_mask_ratio(self.mdt_mask_ratio, param="mdt_mask_ratio")
        device = resolve_device(self.device)
        if self.checkpoint_dir is not None and os.path.lexists(self.checkpoint_dir) \
                and not os.path.isdir(self.checkpoint_dir):
            raise ValueError(
                f"checkpoint_dir={str(self.checkpoint_dir)!r} exists and is not a directory: pass a "
                "directory (it is created if missing), or None for no checkpoints."
            )
        check_network_input(X, self.augment, owner="DatasetDistiller")
        check_input_scale(X, owner="DatasetDistiller")  # before the loop reports an overflow as a divergence
        check_classification_targets(y)
        classes, counts = np.unique(y, return_counts=True)
        if len(classes) < 2:
            raise ValueError(f"y has only one class ({classes[0]!r}); distillation needs at least 2 classes.")
        if self.ipc > counts.min():
            raise ValueError(
                f"ipc={self.ipc} is larger than the smallest class ({classes[counts.argmin()]!r} has "
                f"{counts.min()} samples): lower ipc to at most {counts.min()}."
            )
        strategy.check(ipc=self.ipc, augment=self.augment, n_dims=X.ndim)
        return device, strategy

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
            Besides invalid parameters or data: if ``X`` looks unnormalised (values
            beyond 1e6 in magnitude, which overflow the float32 loop; the message
            says how to normalise); if ``checkpoint_dir`` holds this
            run's checkpoint damaged, of a newer format, or renamed from another
            run's (see Notes).
            A fit that raises leaves the estimator as it was before (fitted or not).
        """
        saved = {name: value for name, value in vars(self).items() if name.endswith("_")}
        try:
            with contextlib.ExitStack() as held:  # the run's checkpoint lock, held until the fit ends
                return self._fit(X, y, held)
        except BaseException:
            # no mixed state: the previous fit's attributes, all of them, or none
            for name in [name for name in vars(self) if name.endswith("_")]:
                delattr(self, name)
            vars(self).update(saved)
            raise

    def _fit(self, X, y, held):
        check_label_types(y)  # before NumPy turns [0, "a"] into strings
        X, y = validate_data(self, X, y, allow_nd=True, dtype=(np.float32, np.float64))
        device, strategy = self._check_configuration(X, y)
        encoder = LabelEncoder().fit(y)
        classes = encoder.classes_
        n_classes = len(classes)
        y_index = encoder.transform(y)

        checkpoint = fingerprint = files = None
        if self.checkpoint_dir is not None:
            params = self.get_params(deep=False)
            if self.method_params is not None:  # deprecated spelling: fingerprinted as the strategy it makes
                params.update(method=strategy, method_params=None)
            fingerprint = run_fingerprint(params, X, y_index, classes, device,
                                          format_version=CHECKPOINT_FORMAT_VERSION)
            # this run's own file and lock (a live fit of the same run is waited for); its dead fits' temporaries go
            files = held.enter_context(RunCheckpoint(self.checkpoint_dir, CHECKPOINT_NAME, fingerprint,
                                                     owner="DatasetDistiller", verbose=self.verbose))
            checkpoint = files.read(kind=_CHECKPOINT_KIND, format_version=CHECKPOINT_FORMAT_VERSION,
                                    expected=_CHECKPOINT_KEYS, check=_check_seeds)
        rng = check_generator(self.random_state)
        seeds = (draw_seed(rng), draw_seed(rng))
        if checkpoint is not None:  # equal for an int random_state; None resumes its own run's streams
            seeds = tuple(int(seed) for seed in checkpoint["seeds"])
        gen_device = torch.Generator(device=device).manual_seed(seeds[0])
        gen_cpu = torch.Generator().manual_seed(seeds[1])  # discrete augmentation choices, no device sync
        X_real = torch.as_tensor(np.require(X, requirements=["C", "W"]), dtype=torch.float32, device=device)
        y_real = torch.as_tensor(y_index, device=device)
        real = ClassBatches(X_real, y_real, n_classes, gen_device)

        if self.init == "real":
            X_syn = real.sample(self.ipc).clone()
        else:
            X_syn = torch.randn((n_classes * self.ipc, *X.shape[1:]), generator=gen_device, device=device)
        X_syn.requires_grad_(True)
        augment = SiameseAugment() if self.augment == "dsa" else None
        net = build_network(self.net, self.net_params, X, n_classes, device)
        context = DistillationContext(
            real=real, net=net, augment=augment, gen_device=gen_device, gen_cpu=gen_cpu, classes=classes,
            ipc=self.ipc, batch_real=self.batch_real, mdt_mask_ratio=self.mdt_mask_ratio,
            net_spec={"net": self.net, "net_params": self.net_params, "augment": self.augment,
                      "device": self.device},
            checkpoint_dir=None if self.checkpoint_dir is None else Path(self.checkpoint_dir),
            verbose=self.verbose, siamese_draws=self.siamese_draws,
        )
        run = strategy.start(context)
        optimizer = torch.optim.SGD([{"params": [X_syn]}, *run.param_groups()],
                                    lr=self.lr_images, momentum=self.momentum)

        losses = torch.zeros(self.n_iterations, device=device)
        start = 0
        if checkpoint is not None:
            # after every set-up draw, so the restored generators continue exactly where they stopped
            start = self._restore_checkpoint(checkpoint, files.source, X_syn, optimizer, run,
                                             (gen_device, gen_cpu), losses)

        def write_checkpoint(n_done):
            save_checkpoint(files.path, {
                "fingerprint": json.dumps(fingerprint, sort_keys=True), "iteration": n_done, "seeds": list(seeds),
                "X_synthetic": X_syn, "optimizer": optimizer.state_dict(), "strategy": run.state_dict(),
                "generator_device": gen_device.get_state(), "generator_cpu": gen_cpu.get_state(),
                "loss_curve": losses[:n_done].clone(),  # a view would save the whole buffer
            }, kind=_CHECKPOINT_KIND, format_version=CHECKPOINT_FORMAT_VERSION)

        name = self.method if isinstance(self.method, str) else type(strategy).__name__
        progress = tqdm(range(start, self.n_iterations), initial=start, total=self.n_iterations,
                        disable=not self.verbose, desc=f"{name} ipc={self.ipc}")
        report_every = max(1, self.n_iterations // 50)
        last_saved = start if checkpoint is not None else None
        for iteration in progress:
            loss = run.loss(X_syn)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            run.after_step(X_syn)
            losses[iteration] = loss.detach()  # stays on the device: no host sync per iteration
            if self.verbose and iteration % report_every == 0:
                progress.set_postfix(loss=f"{loss.item():.4g}")
            if fingerprint is not None and (iteration + 1) % self.checkpoint_every == 0:
                write_checkpoint(iteration + 1)
                last_saved = iteration + 1
        if fingerprint is not None and last_saved != self.n_iterations:
            write_checkpoint(self.n_iterations)

        if not torch.isfinite(X_syn).all():  # one sync, after the loop: a diverged set must not go on silently
            raise ValueError(
                f"Distillation diverged: the synthetic images hold NaN or inf after {self.n_iterations} iterations "
                f"with lr_images={self.lr_images!r}. Lower lr_images (and, for method='mtt', "
                "TrajectoryMatching(lr_lr=...)), then fit again"
                + (" with a new checkpoint_dir." if self.checkpoint_dir is not None else "."))
        for name in ("syn_lr_", "experts_"):  # a previous method's extras must not outlive it
            vars(self).pop(name, None)
        self.classes_ = classes
        self.strategy_ = strategy
        self.start_iteration_ = start
        self.loss_curve_ = losses.cpu().numpy()
        self.X_synthetic_ = X_syn.detach().cpu().numpy().astype(X.dtype, copy=False)
        self.y_synthetic_ = np.repeat(classes, self.ipc)
        for name, value in run.fitted_attributes().items():
            setattr(self, name, value)
        return self

    def _restore_checkpoint(self, checkpoint, path, X_syn, optimizer, run, generators, losses):
        """Load a (fingerprint-checked) checkpoint, read from ``path``, into the freshly built loop; return its
        iteration."""
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
            run.load_state_dict(checkpoint["strategy"])
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
            In the container of ``X``, as imbalanced-learn's samplers do: a list for a
            list, a DataFrame with the same columns for a DataFrame.
        y_synthetic : ndarray of shape (n_classes * ipc,)
            A list for a list, a Series with the same name for a Series.
        """
        self.fit(X, y)
        return _like(X, self.X_synthetic_), _like(y, self.y_synthetic_)

    def save(self, path, **metadata):
        """Save the synthetic set to ``path`` (.npz, no pickle) with its metadata.

        Parameters
        ----------
        path : str or path-like
        **metadata
            Extra JSON-serialisable entries, e.g. ``mean=``/``std=`` of the normalisation,
            and ``zca=`` (a fitted :class:`~ddcal_sklearn.ZCAWhitening` or the path of a
            saved one) when the images were distilled ZCA-whitened: its record is stored
            (see :func:`~ddcal_sklearn.save_synthetic_set`).

        Returns
        -------
        path : pathlib.Path
        """
        check_is_fitted(self, "X_synthetic_")
        # every JSON-able parameter (the method's too), so the file says how it was made
        params = {key: value for key, value in self.get_params().items() if is_jsonable(value)}
        params["method"] = self.method if isinstance(self.method, str) else type(self.method).__name__
        params["net"] = self.net if isinstance(self.net, str) else getattr(self.net, "__name__", None)
        # the step size the set was made for (MTT), read back as load_synthetic_set(path).learned_lr
        if "syn_lr" not in metadata:
            metadata.setdefault("learned_lr", getattr(self, "syn_lr_", None))
        return save_synthetic_set(path, self.X_synthetic_, self.y_synthetic_, **{**params, **metadata})

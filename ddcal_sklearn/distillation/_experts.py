"""``ExpertTrajectories``: parameter trajectories of networks trained on real data (for MTT).

Matching Training Trajectories (Cazenavette et al., CVPR 2022, "Dataset Distillation
by Matching Training Trajectories") needs *expert trajectories*: the parameters of
networks trained on the real data, recorded at the end of every epoch. This module
trains them once, stores them as flat parameter vectors, and saves and loads them
without pickle, so the expensive part of MTT can be reused across distillations.
"""

import contextlib
import json
import numbers
import os

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, _fit_context
from sklearn.preprocessing import LabelEncoder
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from tqdm.auto import tqdm

from ..nn import (
    NETWORKS,
    MLP,
    ConvNet,
    SiameseAugment,
    build_network,
    flatten_parameters,
    network_kwargs,
    reinitialize_,
    resolve_network,
    unflatten_parameters,
)
from ..utils import (
    check_generator,
    check_input_scale,
    check_label_types,
    check_network_input,
    draw_seed,
    image_estimator_tags,
    npz_path,
    read_npz,
    resolve_device,
    run_fingerprint,
    RunCheckpoint,
    to_jsonable,
    write_npz,
)

__all__ = ["ExpertTrajectories"]

#: version of the .npz layout written by :meth:`ExpertTrajectories.save` and the checkpoints
FORMAT_VERSION = 1

# Networks that ``load`` may rebuild from their recorded name (nothing else is ever imported).
# Recorded by their public path; files written before the subpackages name them ddcal_sklearn.nets.*.
_KNOWN_NETS = {f"{prefix}.{cls.__qualname__}": cls for cls in (ConvNet, MLP)
               for prefix in ("ddcal_sklearn.nn", "ddcal_sklearn.nets")}


def _class_path(net_class):
    if net_class in (ConvNet, MLP):
        return f"ddcal_sklearn.nn.{net_class.__qualname__}"
    return f"{net_class.__module__}.{net_class.__qualname__}"


def _net_spec(net_class, net_params, X, n_classes):
    """JSON description of the network: class path and its constructor arguments."""
    params = network_kwargs(net_class, X.shape[1:], n_classes, net_params)
    return {"class": _class_path(net_class), "params": to_jsonable(params)}


def _train_expert(net, X, y, *, n_epochs, lr, momentum, weight_decay, batch_size, augment,
                  generators, progress=None):
    """Train ``net`` in place with plain SGD on device tensors; return its trajectory and losses.

    The weights must already be initialised. Everything stays on the device: one
    permutation per epoch from the device generator, augmentation parameters drawn on
    the CPU generator (copied without a sync), losses accumulated as tensors.

    Returns
    -------
    trajectory : Tensor of shape (n_epochs + 1, n_params)
        Flat parameters at initialisation and after every epoch.
    train_loss : Tensor of shape (n_epochs,)
        Mean training loss of every epoch (on the augmented batches).
    """
    gen_device, gen_cpu = generators
    device = X.device
    n = len(X)
    params = list(net.parameters())
    trajectory = torch.empty(n_epochs + 1, sum(p.numel() for p in params), device=device)
    train_loss = torch.zeros(n_epochs, device=device)
    trajectory[0] = flatten_parameters(net)
    optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    net.train()
    for epoch in range(n_epochs):
        order = torch.randperm(n, generator=gen_device, device=device)
        loss_sum = torch.zeros((), device=device)
        for start in range(0, n, batch_size):
            index = order[start:start + batch_size]
            xb = X[index]
            if augment is not None:
                xb = augment(xb, augment.sample(len(xb), gen_cpu, device=device))
            loss = F.cross_entropy(net(xb), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * len(index)
        trajectory[epoch + 1] = flatten_parameters(net)
        train_loss[epoch] = loss_sum / n
        if progress is not None:
            progress.update(1)
    return trajectory, train_loss


def non_finite_experts(trajectories):
    """Indices of the experts whose trajectory (``trajectories[k]``) holds NaN or inf.

    One expert at a time, so the check never holds more than one trajectory's mask.
    """
    return [k for k, trajectory in enumerate(trajectories) if not np.isfinite(trajectory).all()]


class ExpertTrajectories(BaseEstimator):
    """Train expert networks on real data and record their parameters at every epoch.

    The expert trajectories of Matching Training Trajectories (MTT; Cazenavette et al.,
    CVPR 2022): ``fit(X, y)`` trains ``n_experts`` networks from independent random
    initialisations with plain SGD (the paper's "buffer" step) and keeps, for each, the
    flattened parameter vector at initialisation and after each of the ``n_epochs``
    epochs. :class:`~ddcal_sklearn.DatasetDistiller` with ``method="mtt"`` then teaches
    synthetic images to reproduce short segments of these trajectories; pass a fitted
    instance as ``TrajectoryMatching(experts=...)`` to reuse them across distillations.

    The network is built exactly as :class:`~ddcal_sklearn.DatasetDistiller` builds its
    own from the same ``net``/``net_params`` (ConvNet for images, MLP for flat
    features), so the parameter vectors line up with the distiller's student network.
    Networks without batch statistics (the default instance normalisation) are assumed.

    Parameters
    ----------
    n_experts : int, default=5
        Number of independently initialised networks.
    n_epochs : int, default=20
        Training epochs of each expert; ``n_epochs + 1`` snapshots are kept.
    lr : float, default=0.01
        SGD learning rate (MTT's ``lr_teacher``).
    momentum : float, default=0.0
    weight_decay : float, default=0.0
    batch_size : int, default=256
    augment : {"dsa"} or None, default="dsa"
        Differentiable Siamese augmentation of every real batch, with independent
        parameters per image (as MTT's experts); None for flat features.
    net : str, torch.nn.Module class or None, default=None
        As in :class:`~ddcal_sklearn.DatasetDistiller`.
    net_params : dict or None, default=None
        As in :class:`~ddcal_sklearn.DatasetDistiller` (e.g. ``{"width": 128, "depth": 3}``).
    checkpoint_dir : str, path-like or None, default=None
        If given, every finished expert is written there
        (``experts-<digest>-0000.npz``, ...; see Notes), and a later ``fit`` with the
        same data and parameters loads the finished experts instead of training them
        again (resuming an interrupted fit). Fits with other data or parameters may
        share the directory: each has its own files, never reused nor overwritten by
        another.
    device : {"auto", "cpu", "cuda", "cuda:N"}, default="auto"
    random_state : None, int, numpy Generator or RandomState, default=None
        Source of every random draw. Expert ``k`` gets its own streams, drawn up front,
        so resuming from a checkpoint gives the same trajectories as an uninterrupted fit.
    verbose : int, default=0
        1 shows a tqdm progress bar over epochs.

    Attributes
    ----------
    trajectories_ : ndarray of shape (n_experts, n_epochs + 1, n_params), float32
        Flat parameter vectors; ``trajectories_[k, e]`` is expert ``k`` after ``e`` epochs.
    train_loss_ : ndarray of shape (n_experts, n_epochs), float32
        Mean training cross-entropy of every epoch.
    param_names_ : list of str
        Parameter names in the order of the flat vector (``named_parameters()``).
    param_shapes_ : list of tuple of int
        Their shapes.
    classes_ : ndarray of shape (n_classes,)
        Labels, in the order of the network's outputs.
    input_shape_ : tuple of int
        Shape of one input sample.
    net_spec_ : dict
        ``{"class": "module.Class", "params": {...}}``: the network's class and every
        constructor argument it received.
    n_features_in_ : int
    n_resumed_ : int
        Experts loaded from ``checkpoint_dir`` rather than trained in the last ``fit``.

    Notes
    -----
    **Checkpoints.** A run is identified by a fingerprint of every parameter but
    ``n_experts``, ``verbose`` and ``checkpoint_dir`` (expert ``k`` is the same whatever
    the number of experts, so a fit with more experts reuses the finished ones), of the
    data (SHA-256) and of the device type. Its files are named after it: expert ``k``
    is ``experts-<digest>-<k:04d>.npz``, the digest being the first 16 hex digits of
    the SHA-256 of the fingerprint, so runs with other parameters or data never
    overwrite each other in a shared directory (a grid search over
    ``DatasetDistiller(method="mtt")``, whose experts live in
    ``<checkpoint_dir>/experts``). Files of the layout before these names
    (``expert_0000.npz``) are still loaded when their fingerprint matches. A ``fit``
    holds an advisory lock of its run (``experts-<digest>.lock``, via the ``filelock``
    package; released by the operating system when the process dies) while it trains:
    a second ``fit`` of the same experts while the first is alive (the distillers of a
    parallel grid search over ``method="mtt"`` share their experts) waits for it, then
    loads the experts it saved (and trains those it did not finish, if it died), and
    the temporary files of interrupted writes are removed only by a later ``fit`` of
    their own run, under its lock.

    Examples
    --------
    >>> from ddcal_sklearn import load_digits_images
    >>> from ddcal_sklearn import ExpertTrajectories
    >>> X, y = load_digits_images(return_X_y=True)
    >>> experts = ExpertTrajectories(n_experts=2, n_epochs=3, net_params={"width": 8, "depth": 2},
    ...                              random_state=0).fit(X[:300], y[:300])
    >>> experts.trajectories_.shape  # (experts, epochs + 1, parameters)
    (2, 4, 1026)
    >>> experts.param_names_[:2]
    ['features.0.weight', 'features.0.bias']
    """

    _parameter_constraints = {
        "n_experts": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_epochs": [Interval(numbers.Integral, 1, None, closed="left")],
        "lr": [Interval(numbers.Real, 0, None, closed="neither")],
        "momentum": [Interval(numbers.Real, 0, 1, closed="left")],
        "weight_decay": [Interval(numbers.Real, 0, None, closed="left")],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "augment": [StrOptions({"dsa"}), None],
        "net": [type, str, None],
        "net_params": [dict, None],
        "checkpoint_dir": [str, os.PathLike, None],
        "device": [str, torch.device, None],
        "random_state": ["random_state", np.random.Generator],
        "verbose": ["verbose"],
    }

    def __init__(self, n_experts=5, n_epochs=20, *, lr=0.01, momentum=0.0, weight_decay=0.0,
                 batch_size=256, augment="dsa", net=None, net_params=None, checkpoint_dir=None,
                 device="auto", random_state=None, verbose=0):
        self.n_experts = n_experts
        self.n_epochs = n_epochs
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.augment = augment
        self.net = net
        self.net_params = net_params
        self.checkpoint_dir = checkpoint_dir
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def __sklearn_tags__(self):
        return image_estimator_tags(super().__sklearn_tags__(), self.random_state, target_required=True)

    # ------------------------------------------------------------------ fitting
    def _check_configuration(self, X, y):
        device = resolve_device(self.device)
        check_network_input(X, self.augment, owner="ExpertTrajectories")
        check_input_scale(X, owner="ExpertTrajectories")  # before an overflow reads as a divergence
        check_classification_targets(y)
        if len(np.unique(y)) < 2:
            raise ValueError(f"y has only one class ({y[0]!r}); experts need at least 2 classes.")
        return device

    def _fingerprint(self, X, y_index, device):
        """Everything that determines one expert's trajectory (any number of experts shares it)."""
        params = self.get_params(deep=False)
        del params["n_experts"]  # expert k is the same whatever the number of experts
        fingerprint = run_fingerprint(params, X, y_index, self.classes_, device, format_version=FORMAT_VERSION)
        return json.dumps(fingerprint, sort_keys=True)

    @staticmethod
    def _checkpoint_path(files, k):
        """Expert ``k``'s file of the run ``files`` (a :class:`RunCheckpoint`): ``experts-<digest>-0000.npz``."""
        return files.file(f"-{k:04d}.npz")

    def _load_checkpoint(self, k, files, n_params):
        """Expert ``k`` of this run (None if not saved yet): its own file, else one of the layout before one
        name per run (``expert_0000.npz``) whose fingerprint is this run's (another run's is left alone)."""
        own = self._checkpoint_path(files, k)
        for path in (own, files.directory / f"expert_{k:04d}.npz"):
            if not os.path.lexists(path):
                continue
            try:
                arrays, meta = read_npz(path, ("trajectory", "train_loss"), what="expert checkpoint file",
                                        format_version=FORMAT_VERSION)
            except ValueError as exc:
                raise ValueError(
                    f"{exc} (in checkpoint_dir={str(self.checkpoint_dir)!r}; delete {path.name} to train "
                    "that expert again)"
                ) from exc
            if meta.get("fingerprint") != files.fingerprint:
                if path != own:
                    continue  # another run's expert of the old layout
                raise ValueError(
                    f"{path.name} in checkpoint_dir={str(self.checkpoint_dir)!r} is named for this run but was "
                    "written by a fit with other data or parameters: it was renamed or copied. Delete it to "
                    "train that expert again."
                )
            trajectory, train_loss = arrays["trajectory"], arrays["train_loss"]
            if trajectory.shape != (self.n_epochs + 1, n_params) or train_loss.shape != (self.n_epochs,):
                raise ValueError(f"{path} has arrays of unexpected shapes {trajectory.shape}, "
                                 f"{train_loss.shape}.")
            return trajectory.astype(np.float32, copy=False), train_loss.astype(np.float32, copy=False)
        return None

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Train the experts on real ``X``, ``y`` and record their trajectories.

        Parameters
        ----------
        X : array-like of shape (n_samples, channels, height, width) or (n_samples, n_features)
            Real inputs, normalised as the distiller will see them.
        y : array-like of shape (n_samples,)

        Returns
        -------
        self : ExpertTrajectories

        Raises
        ------
        ValueError
            Besides invalid parameters or data: if ``X`` looks unnormalised (values
            beyond 1e6 in magnitude), or if an expert diverges (NaN or infinite
            parameters: lower ``lr``); NaN trajectories are never returned.
        """
        X, y = validate_data(self, X, y, allow_nd=True, dtype=(np.float32, np.float64))
        device = self._check_configuration(X, y)
        encoder = LabelEncoder().fit(y)
        self.classes_ = encoder.classes_
        n_classes = len(self.classes_)
        y_index = encoder.transform(y)
        net = build_network(self.net, self.net_params, X, n_classes, device)
        net_class, net_params = resolve_network(self.net, self.net_params)
        self.net_spec_ = _net_spec(type(net), net_params, X, n_classes)
        self.input_shape_ = tuple(int(s) for s in X.shape[1:])
        named = list(net.named_parameters())
        self.param_names_ = [name for name, _ in named]
        self.param_shapes_ = [tuple(int(s) for s in p.shape) for _, p in named]
        n_params = sum(p.numel() for _, p in named)

        # Every expert's streams are drawn up front: expert k is the same whether or not
        # the experts before it were trained in this call or loaded from a checkpoint.
        rng = check_generator(self.random_state)
        seeds = [(draw_seed(rng), draw_seed(rng)) for _ in range(self.n_experts)]
        fingerprint = self._fingerprint(X, y_index, device) if self.checkpoint_dir is not None else None

        X_dev = torch.as_tensor(np.require(X, requirements=["C", "W"]), dtype=torch.float32, device=device)
        y_dev = torch.as_tensor(y_index, device=device)
        augment = SiameseAugment(per_sample=True) if self.augment == "dsa" else None
        trajectories = np.empty((self.n_experts, self.n_epochs + 1, n_params), dtype=np.float32)
        train_loss = np.empty((self.n_experts, self.n_epochs), dtype=np.float32)
        self.n_resumed_ = 0
        held, files = contextlib.ExitStack(), None
        progress = tqdm(total=self.n_experts * self.n_epochs, disable=not self.verbose, desc="experts")
        try:
            if fingerprint is not None:
                # this run's files and lock, held until the last expert is written: a live fit of the same
                # experts is waited for; the temporary files of its dead fits are removed
                files = held.enter_context(RunCheckpoint(self.checkpoint_dir, "experts", fingerprint,
                                                         owner="ExpertTrajectories", verbose=self.verbose))
            for k, (seed_device, seed_cpu) in enumerate(seeds):
                saved = self._load_checkpoint(k, files, n_params) if files is not None else None
                if saved is not None:
                    trajectories[k], train_loss[k] = saved
                    self.n_resumed_ += 1
                    progress.update(self.n_epochs)
                    continue
                gen_device = torch.Generator(device=device).manual_seed(seed_device)
                gen_cpu = torch.Generator().manual_seed(seed_cpu)
                reinitialize_(net, gen_device)
                trajectory, losses = _train_expert(
                    net, X_dev, y_dev, n_epochs=self.n_epochs, lr=self.lr, momentum=self.momentum,
                    weight_decay=self.weight_decay, batch_size=self.batch_size, augment=augment,
                    generators=(gen_device, gen_cpu), progress=progress,
                )
                trajectories[k] = trajectory.cpu().numpy()  # one host sync per expert
                train_loss[k] = losses.cpu().numpy()
                if non_finite_experts(trajectories[k:k + 1]):  # before a checkpoint keeps it
                    raise ValueError(
                        f"Expert training diverged: expert {k}'s parameters hold NaN or inf after training with "
                        f"lr={self.lr!r} (momentum={self.momentum!r}). Lower lr (for experts that "
                        "DatasetDistiller(method='mtt') trains itself: TrajectoryMatching(lr_teacher=...)).")
                if files is not None:
                    write_npz(self._checkpoint_path(files, k),
                              {"trajectory": trajectories[k], "train_loss": train_loss[k]},
                              {"fingerprint": fingerprint, "expert": k}, format_version=FORMAT_VERSION)
        finally:
            progress.close()
            held.close()  # releases the run's lock
        bad = non_finite_experts(trajectories)  # only experts read from checkpoint_dir can get here
        if bad:
            raise ValueError(
                f"experts {bad} read from checkpoint_dir={str(self.checkpoint_dir)!r} hold NaN or inf parameters: "
                "their files are damaged; delete them to train those experts again.")
        self.trajectories_ = trajectories
        self.train_loss_ = train_loss
        return self

    # ------------------------------------------------------------------ persistence
    def save(self, path):
        """Write the fitted trajectories to ``path`` (.npz, no pickle), atomically.

        Arrays (trajectories, training losses, classes) are stored as NumPy arrays and
        everything else (parameters, parameter names and shapes, network description,
        ``format_version``) as a JSON string, so :meth:`load` never needs pickle. The
        file is written under a temporary name and renamed.

        Parameters
        ----------
        path : str or path-like
            Destination; ``.npz`` is appended if missing.

        Returns
        -------
        path : pathlib.Path
        """
        check_is_fitted(self, "trajectories_")
        path = npz_path(path)
        classes = np.asarray(self.classes_)
        if classes.dtype == object:
            raise TypeError("classes_ must hold numbers or strings to be saved without pickle.")
        params = self.get_params(deep=False)
        params["net"] = None if self.net is None else self.net if isinstance(self.net, str) else _class_path(self.net)
        params["checkpoint_dir"] = None if self.checkpoint_dir is None else str(self.checkpoint_dir)
        if not isinstance(self.random_state, (numbers.Integral, type(None))):
            params["random_state"] = None  # a generator object has no faithful JSON form
        params["device"] = str(self.device) if self.device is not None else None
        metadata = {
            "kind": "ExpertTrajectories", "params": params,
            "param_names": self.param_names_, "param_shapes": self.param_shapes_,
            "input_shape": self.input_shape_, "net_spec": self.net_spec_,
            "n_features_in": self.n_features_in_,
        }
        try:
            return write_npz(path, {"trajectories": self.trajectories_, "train_loss": self.train_loss_,
                                    "classes": classes}, metadata, format_version=FORMAT_VERSION)
        except TypeError as exc:
            raise TypeError(f"net_params must be JSON-serialisable to be saved: {exc}") from exc

    @classmethod
    def load(cls, path, *, net=None):
        """Read trajectories written by :meth:`save` (``allow_pickle=False``).

        Parameters
        ----------
        path : str or path-like
        net : torch.nn.Module class or None, default=None
            The network class, needed only to ``fit`` the loaded estimator again when
            it was not a ddcal-sklearn network (no class is ever imported from a file).

        Returns
        -------
        experts : ExpertTrajectories
            Fitted, with the saved parameters except ``checkpoint_dir``, which is
            always None: a path is never taken from a file (one that lies could point
            a later ``fit`` at any folder, ``../`` included). Set it yourself to
            checkpoint a new ``fit``.

        Raises
        ------
        FileNotFoundError
            If ``path`` does not exist.
        ValueError
            If the file is not a regular file or not an ExpertTrajectories file, is
            corrupted (invalid parameters, inconsistent shapes, NaN or infinite
            trajectories: what ``fit`` never returns), or comes from a newer format.
        """
        arrays, meta = read_npz(path, ("trajectories", "train_loss", "classes"), what="ExpertTrajectories file",
                                format_version=FORMAT_VERSION)
        try:
            if meta.get("kind") != "ExpertTrajectories":
                raise ValueError(f"its metadata kind is {meta.get('kind')!r}")
            params = dict(meta["params"])
            net_path = params.pop("net")
            params["net"] = net if net is not None else (
                net_path.lower() if isinstance(net_path, str) and net_path.lower() in NETWORKS
                else _KNOWN_NETS.get(net_path))
            params["checkpoint_dir"] = None  # never a path from a file
            experts = cls(**params)
            experts._validate_params()
            shapes = [tuple(int(s) for s in shape) for shape in meta["param_shapes"]]
            names = [str(name) for name in meta["param_names"]]
            trajectories, train_loss = arrays["trajectories"], arrays["train_loss"]
            n_params = sum(int(np.prod(shape)) for shape in shapes)
            if (trajectories.ndim != 3 or trajectories.shape[2] != n_params or len(names) != len(shapes)
                    or train_loss.shape != (trajectories.shape[0], trajectories.shape[1] - 1)):
                raise ValueError(f"arrays of inconsistent shapes {trajectories.shape}, {train_loss.shape}")
            classes = arrays["classes"]
            check_label_types(classes, param="classes")
            if classes.ndim != 1 or len(classes) < 2 or len(np.unique(classes)) != len(classes):
                raise ValueError(f"classes must be at least 2 distinct labels, got {classes.tolist()!r:.80}")
            bad = non_finite_experts(trajectories)
            if bad:
                raise ValueError(f"the trajectories of experts {bad} hold NaN or inf (diverged experts, "
                                 "which fit refuses to return)")
            experts.trajectories_ = trajectories.astype(np.float32, copy=False)
            experts.train_loss_ = train_loss.astype(np.float32, copy=False)
            experts.classes_ = classes
            experts.param_names_ = names
            experts.param_shapes_ = shapes
            experts.input_shape_ = tuple(int(s) for s in meta["input_shape"])
            experts.net_spec_ = meta["net_spec"]
            experts.n_features_in_ = int(meta["n_features_in"])
            experts.n_resumed_ = 0
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path} is not a readable ExpertTrajectories file: {exc!s}") from exc
        return experts

    # ------------------------------------------------------------------ helpers
    def unflatten(self, vector):
        """Split one flat parameter vector into a ``{name: tensor}`` dict (views, differentiable).

        Parameters
        ----------
        vector : Tensor of shape (n_params,)

        Returns
        -------
        params : dict of str to Tensor
            Ready for :func:`torch.func.functional_call`.
        """
        check_is_fitted(self, "param_shapes_")
        return unflatten_parameters(vector, self.param_names_, self.param_shapes_)

"""Gradient matching (DC) and its Siamese-augmented variant (DSA) for :class:`DatasetDistiller`.

The per-class gradients of the matching network are computed for all classes in
one batched pass with :mod:`torch.func` (``vmap`` over classes of ``grad`` of the
class loss through ``functional_call``), on the real side and on the synthetic
side; the synthetic-side gradients stay differentiable with respect to the
synthetic images.
"""

import functools
import numbers
import weakref

import torch
import torch.nn.functional as F
from sklearn.utils._param_validation import Interval, StrOptions
from torch.func import functional_call, grad, vmap

from ..masking import keep_mask
from ..nn import reinitialize_
from ._graphs import GraphCache, cuda_graphs_setting
from ._strategy import DistillationStrategy, StrategyRun

#: (outer_loop, inner_loop) per images-per-class count, the values found good by
#: Zhao et al. (their ``get_loops``); other ipc values take the nearest entry.
_LOOPS_BY_IPC = {1: (1, 1), 10: (10, 50), 20: (20, 25), 30: (30, 20), 40: (40, 15), 50: (50, 10)}

_DISTANCES = ("layerwise_cosine", "mse", "cosine")

#: Added to the product of norms in the cosine distances (as in the reference).
_COSINE_EPS = 1e-6


def _loops_for_ipc(ipc):
    """``(outer_loop, inner_loop)`` of the nearest tabulated ipc (ties go to the smaller ipc)."""
    nearest = min(_LOOPS_BY_IPC, key=lambda k: (abs(k - ipc), k))
    return _LOOPS_BY_IPC[nearest]


def _per_class_gradients(net, params, X, n_classes, buffers=None):
    """Gradient of every class's mean cross-entropy w.r.t. ``params``, all classes in one pass.

    Parameters
    ----------
    net : torch.nn.Module
        Called through :func:`torch.func.functional_call`; it must not use batch
        statistics (per-sample normalisation only), since each class is its own batch.
    params : dict of str to Tensor
        The parameters to differentiate (typically detached copies of the net's).
    X : Tensor of shape (n_classes * per_class, ...)
        Inputs in class-major order, the same number per class; row block ``c`` has
        label ``c``. If ``X`` requires grad, so do the returned gradients (they can
        be back-propagated into ``X``: create_graph semantics).
    n_classes : int
    buffers : dict of str to Tensor, optional

    Returns
    -------
    dict of str to Tensor
        For each parameter name, a tensor of shape ``(n_classes, *param.shape)``.
    """
    per_class = X.shape[0] // n_classes
    X = X.reshape(n_classes, per_class, *X.shape[1:])
    labels = torch.arange(n_classes, device=X.device)
    buffers = buffers or {}

    def class_loss(p, x, label):
        logits = functional_call(net, (p, buffers), (x,))
        return F.cross_entropy(logits, label.expand(x.shape[0]))

    return vmap(grad(class_loss), in_dims=(None, 0, 0))(params, X, labels)


def _gradient_distance(g_syn, g_real, distance="layerwise_cosine"):
    """Distance between per-class gradients, summed over classes.

    ``g_syn`` and ``g_real`` map parameter names to tensors of shape
    ``(n_classes, *param.shape)``.

    - ``"layerwise_cosine"`` (the reference's default): for every parameter tensor
      of two or more dimensions, reshape the gradient to ``(out_units, -1)`` and sum
      ``1 - cos`` over the output units; one-dimensional tensors (biases,
      normalisation scales) are skipped.
    - ``"mse"``: sum of squared differences over every parameter.
    - ``"cosine"``: ``1 - cos`` between the gradients of all parameters flattened
      into one vector per class.
    """
    if distance == "layerwise_cosine":
        total = None
        for name, real in g_real.items():
            if real.ndim < 3:  # class axis + a 1-D parameter
                continue
            real, syn = real.flatten(2), g_syn[name].flatten(2)
            cos = (real * syn).sum(-1) / (real.norm(dim=-1) * syn.norm(dim=-1) + _COSINE_EPS)
            term = (1 - cos).sum()
            total = term if total is None else total + term
        if total is None:
            raise ValueError("distance='layerwise_cosine' found no parameter with 2 or more dimensions.")
        return total
    if distance == "mse":
        return sum(((g_syn[name] - real) ** 2).sum() for name, real in g_real.items())
    if distance == "cosine":
        real = torch.cat([g.flatten(1) for g in g_real.values()], dim=1)
        syn = torch.cat([g_syn[name].flatten(1) for name in g_real], dim=1)
        cos = (real * syn).sum(-1) / (real.norm(dim=-1) * syn.norm(dim=-1) + _COSINE_EPS)
        return (1 - cos).sum()
    raise ValueError(f"distance={distance!r} is unknown; use one of {list(_DISTANCES)}.")


class GradientMatching(DistillationStrategy):
    """Gradient matching: DC (Zhao, Mopuri & Bilen, 2021) and DSA (Zhao & Bilen, 2021).

    **DC** learns synthetic images whose training gradients imitate those of real
    images: for a matching network at some state of its training, and for every
    class ``c``, the gradient of the cross-entropy of a real batch of class ``c``
    with respect to the network's parameters is compared with the gradient of the
    synthetic images of class ``c``, and the synthetic images move to reduce the
    distance (summed over classes). The network itself alternates between being
    matched and being trained on the current synthetic set, and is periodically
    redrawn from scratch, so that the synthetic set reproduces the real gradients
    along whole training trajectories of random networks. **DSA** is the same
    procedure with differentiable Siamese augmentation: the real and the
    synthetic batches of each class are transformed with one shared random draw
    before the gradients are taken (the gradient flows through the augmentation into the
    synthetic pixels), and the network's training on the synthetic set uses
    augmentation too (per-sample draws, as in the reference).

    Mapping onto :class:`~ddcal_sklearn.DatasetDistiller`'s loop: one distiller
    iteration is one outer-loop step of the reference. :meth:`loss` computes the
    matching loss over all classes for the network's current state; after the
    distiller's image update, :meth:`after_step` trains the network for
    ``inner_loop`` epochs (SGD, ``lr_net``) on the detached synthetic set, except
    after the last step of each block of ``outer_loop`` iterations, where the
    network is instead redrawn (:func:`~ddcal_sklearn.nn.reinitialize_`
    from the distiller's device generator; its optimiser is reset too) before the
    next loss. ``n_iterations`` distiller iterations are therefore
    ``n_iterations / outer_loop`` reference iterations: the reference's 1000
    iterations at ipc 10 are ``n_iterations=10_000``.

    All classes are processed in one batched pass: the network (instance
    normalisation, no batch statistics) is applied through
    :func:`torch.func.functional_call` with detached parameters, and the per-class
    gradients are ``vmap`` over classes of :func:`torch.func.grad` of the class
    loss, for the real batch (``batch_real`` images per class, capped at the
    smallest class) and for the synthetic batch. The synthetic-side gradients are
    differentiable with respect to the synthetic images, and only they are: the
    loss back-propagates into ``X_syn`` and nowhere else. Networks with batch
    statistics (BatchNorm) are rejected.

    **Augmentation.** With ``dsa=False`` (``method="dc"``) the distiller's ``augment``
    parameter is ignored (DC as published uses no augmentation while learning the
    images, and the distiller's default ``augment="dsa"`` would otherwise turn every
    DC run into DSA). ``dsa=True`` (``method="dsa"``) requires ``augment="dsa"``. Each class gets its own
    Siamese draw, shared by its real and synthetic batches, as in the reference (all
    classes are still augmented in one batched pass); the distiller's
    ``siamese_draws="shared"`` makes one draw for all classes instead.

    **MDT** (Masked Distillation Training, our reading of Zhu et al., ICCV 2023):
    with ``mdt_mask_ratio = r > 0``, every time the synthetic images are fed to the
    matching network, in the matching loss and in each inner training step alike,
    they are multiplied by a fresh element-wise Bernoulli keep-mask of probability
    ``1 - r`` (no rescaling), before augmentation. The learnable images are never
    masked. ``r = 0`` is plain DC/DSA, bit for bit under the same ``random_state``.

    Parameters
    ----------
    dsa : bool, default=False
        Differentiable Siamese augmentation: False is DC (``method="dc"``), True is
        DSA (``method="dsa"``).
    outer_loop : int or None, default=None
        Iterations between two network redraws. None: from ``ipc`` as in the
        reference (ipc 1: 1, 10: 10, 20: 20, 30: 30, 40: 40, 50: 50; other values
        take the nearest entry, ties to the smaller ipc).
    inner_loop : int or None, default=None
        Training epochs of the network on the synthetic set after each image
        update. None: from ``ipc`` (ipc 1: 1, 10: 50, 20: 25, 30: 20, 40: 15, 50: 10).
    lr_net : float, default=0.01
        Learning rate of the network's SGD.
    momentum_net : float, default=0.0
        Momentum of the network's SGD (the reference's current code uses none).
    batch_syn : int or None, default=None
        Synthetic images per class in each matching loss, drawn afresh; None uses
        all ``ipc`` images (the reference).
    batch_train : int, default=256
        Mini-batch size of the network's training epochs on the synthetic set (one
        full batch when the set is not larger).
    distance : {"layerwise_cosine", "mse", "cosine"}, default="layerwise_cosine"
        Gradient distance. ``"layerwise_cosine"`` is the reference's ``'ours'``:
        for every parameter tensor of two or more dimensions, ``1 - cos`` between
        real and synthetic gradients per output unit (rows of the gradient reshaped
        to ``(out_units, -1)``), summed; biases and other 1-D tensors are skipped.
        ``"mse"``: squared Euclidean distance over all parameters. ``"cosine"``:
        ``1 - cos`` of all gradients flattened into one vector.
    cuda_graphs : "auto" or bool, default="auto"
        Run the network's training steps on the synthetic set (``inner_loop`` epochs
        after every image update) by replaying a CUDA graph captured on the first step
        of each structure (batch size, MDT, augmentation transform), instead of
        launching their small kernels from Python one by one. The random draws are
        made as without it, in the same order, and the kernels are the same: the same
        network up to rounding. "auto": on a CUDA device with ``momentum_net=0`` (a
        momentum buffer would be recreated with every new network). True: the same, and
        an error elsewhere. It does not enter a checkpoint's fingerprint. See
        ``docs/performance.md`` for what it saves.

    Notes
    -----
    Pass an instance as ``DatasetDistiller(method=GradientMatching(...))``: every
    parameter is then reachable as ``method__<name>`` (``GridSearchCV``), and invalid
    values raise ``ValueError`` before any work. The distance is summed over classes:
    ``loss_curve_`` holds that sum. The reference learns the images with
    ``lr_images=0.1`` and ``momentum=0.5`` (pass them to the distiller; its default
    ``lr_images=1.0`` is DM's, and also works for DC).

    References
    ----------
    .. [1] B. Zhao, K. R. Mopuri and H. Bilen, "Dataset Condensation with Gradient
       Matching", ICLR 2021.
    .. [2] B. Zhao and H. Bilen, "Dataset Condensation with Differentiable Siamese
       Augmentation", ICML 2021.
    .. [3] Reference implementation: https://github.com/VICO-UoE/DatasetCondensation
    .. [4] Y. Zhu, B. Zhao et al., "Rethinking Data Distillation: Do Not Overlook
       Calibration", ICCV 2023 (masked distillation training).

    Examples
    --------
    >>> from ddcal_sklearn import DatasetDistiller, GradientMatching, load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> d = DatasetDistiller(method=GradientMatching(dsa=True, outer_loop=2, inner_loop=1),
    ...                      ipc=2, n_iterations=4, lr_images=0.1,
    ...                      net_params={"width": 8, "depth": 2}, random_state=0)
    >>> d.fit(X, y).X_synthetic_.shape, d.loss_curve_.shape
    ((20, 1, 8, 8), (4,))
    """

    _parameter_constraints = {
        "dsa": ["boolean"],
        "outer_loop": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "inner_loop": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "lr_net": [Interval(numbers.Real, 0, None, closed="neither")],
        "momentum_net": [Interval(numbers.Real, 0, None, closed="left")],
        "batch_syn": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "batch_train": [Interval(numbers.Integral, 1, None, closed="left")],
        "distance": [StrOptions(set(_DISTANCES))],
        "cuda_graphs": [StrOptions({"auto"}), "boolean"],
    }

    def __init__(self, dsa=False, *, outer_loop=None, inner_loop=None, lr_net=0.01, momentum_net=0.0,
                 batch_syn=None, batch_train=256, distance="layerwise_cosine", cuda_graphs="auto"):
        self.dsa = dsa
        self.outer_loop = outer_loop
        self.inner_loop = inner_loop
        self.lr_net = lr_net
        self.momentum_net = momentum_net
        self.batch_syn = batch_syn
        self.batch_train = batch_train
        self.distance = distance
        self.cuda_graphs = cuda_graphs

    def check(self, *, ipc, augment, n_dims):
        if self.batch_syn is not None and self.batch_syn > ipc:
            raise ValueError(f"batch_syn={self.batch_syn} of GradientMatching is larger than ipc={ipc}: "
                             f"lower it to at most {ipc}, or None for all images.")
        if self.dsa and augment is None:
            raise ValueError("method='dsa' (GradientMatching(dsa=True)) needs augment='dsa'; use method='dc' "
                             "(dsa=False) for no augmentation.")

    def loops(self, ipc):
        """``(outer_loop, inner_loop)`` this strategy runs at ``ipc`` images per class (None resolved).

        Examples
        --------
        >>> from ddcal_sklearn import GradientMatching
        >>> GradientMatching().loops(10), GradientMatching(inner_loop=5).loops(10)
        ((10, 50), (10, 5))
        """
        default_outer, default_inner = _loops_for_ipc(ipc)
        return (default_outer if self.outer_loop is None else int(self.outer_loop),
                default_inner if self.inner_loop is None else int(self.inner_loop))

    def start(self, context):
        return _GradientMatchingRun(self, context)


class _GradientMatchingRun(StrategyRun):
    """One fit of gradient matching: the matching network, its optimiser, the position in the outer loop."""

    def __init__(self, strategy, context):
        super().__init__(strategy, context)
        net = context.net
        if any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules()):
            raise ValueError(
                f"method={'dsa' if strategy.dsa else 'dc'!r} computes the per-class gradients in one batched "
                "pass, which needs a network without batch statistics; use a per-sample normalisation, e.g. "
                "net_params={'norm': 'instancenorm'}."
            )
        self.outer_loop, self.inner_loop = strategy.loops(context.ipc)
        self.batch_syn = strategy.batch_syn
        # DC learns the images without augmentation; DSA trains the network with per-image draws
        self.augment = context.augment if strategy.dsa else None
        self.train_augment = self.augment.with_per_sample() if self.augment is not None else None
        net.requires_grad_(True).train()
        self.per_class_real = min(context.batch_real, context.real.min_count)
        self.labels_syn = torch.arange(context.n_classes, device=context.device).repeat_interleave(context.ipc)
        self.net_optimizer = None
        self.step = 0
        self._X = None
        self._graphs = GraphCache(context.device, "GradientMatching", cuda_graphs_setting(strategy) is True) \
            if self._use_cuda_graphs() else None

    def _reset_network(self):
        reinitialize_(self.context.net, self.context.gen_device)
        self.net_optimizer = self._new_net_optimizer()

    def _new_net_optimizer(self):
        s = self.strategy
        return torch.optim.SGD(self.context.net.parameters(), lr=s.lr_net, momentum=s.momentum_net)

    def state_dict(self):
        """The matching network, its optimiser and the position in the outer loop (for checkpoints)."""
        optimizer = None if self.net_optimizer is None else self.net_optimizer.state_dict()
        return {"step": self.step, "net": self.context.net.state_dict(), "net_optimizer": optimizer}

    def load_state_dict(self, state):
        self.step = int(state["step"])
        self.context.net.load_state_dict(state["net"])
        self.net_optimizer = None
        if state["net_optimizer"] is not None:  # None: the network is drawn at the next loss
            self.net_optimizer = self._new_net_optimizer()
            self.net_optimizer.load_state_dict(state["net_optimizer"])

    def _synthetic_batch(self, X_syn):
        """``batch_syn`` synthetic images of every class (all of them by default), class-major."""
        c = self.context
        if self.batch_syn is None or self.batch_syn == c.ipc:
            return X_syn
        keys = torch.rand(c.n_classes, c.ipc, generator=c.gen_device, device=X_syn.device)
        picks = keys.topk(self.batch_syn, dim=1, largest=False).indices
        offsets = torch.arange(c.n_classes, device=X_syn.device)[:, None] * c.ipc
        return X_syn[(offsets + picks).reshape(-1)]

    def loss(self, X_syn):
        c = self.context
        if self.step % self.outer_loop == 0:
            self._reset_network()
        syn = self._synthetic_batch(X_syn)
        if self.augment is None:
            real, syn = c.real.sample(self.per_class_real), c.mdt(syn)
        else:
            real, syn = c.siamese(c.real.sample(self.per_class_real), c.mdt(syn), self.augment)
        params = {name: p.detach() for name, p in c.net.named_parameters()}
        buffers = dict(c.net.named_buffers())
        with torch.no_grad():  # torch.func.grad still differentiates inside
            g_real = _per_class_gradients(c.net, params, real, c.n_classes, buffers)
        g_syn = _per_class_gradients(c.net, params, syn, c.n_classes, buffers)
        return _gradient_distance(g_syn, g_real, self.strategy.distance)

    def after_step(self, X_syn):
        c = self.context
        last_of_block = self.step % self.outer_loop == self.outer_loop - 1
        self.step += 1
        if last_of_block:  # the network is redrawn before the next loss
            return
        X = X_syn.detach()
        if self._graphs is not None:
            X = self._graph_images(X)
        n = X.shape[0]
        batch_train = self.strategy.batch_train
        for _ in range(self.inner_loop):
            if n > batch_train:
                batches = torch.randperm(n, generator=c.gen_device, device=X.device).split(batch_train)
            else:
                batches = (None,)
            for index in batches:
                if self._graphs is None:
                    self._train_step(X, index)
                else:
                    self._replay_train_step(X, index)

    def _train_step(self, X, index):
        """One SGD step of the network on a batch of the synthetic set (masked by MDT, augmented by DSA)."""
        c = self.context
        x, y = self._batch(X, index, None)
        x = c.mdt(x)
        augment = None
        if self.train_augment is not None:
            augment = self.train_augment.sample(x.shape[0], c.gen_cpu, device=x.device)
        self._sgd_step(x, y, augment)

    # ------------------------------------------------------------------ CUDA graphs of the training step
    def _use_cuda_graphs(self):
        s, device = self.strategy, self.context.device
        cuda_graphs = cuda_graphs_setting(s)
        if cuda_graphs is True and device.type != "cuda":
            raise ValueError(f"GradientMatching(cuda_graphs=True) replays CUDA graphs, but the distiller runs on "
                             f"{device}: set device='cuda', or cuda_graphs='auto' (CUDA graphs where available).")
        if cuda_graphs is True and s.momentum_net != 0:
            raise ValueError(f"GradientMatching(cuda_graphs=True) replays the network's SGD step, which it can do "
                             f"without momentum only (momentum_net={s.momentum_net!r}): set momentum_net=0, or "
                             "cuda_graphs='auto' (then the steps run op by op).")
        return bool(cuda_graphs) and device.type == "cuda" and s.momentum_net == 0

    def _graph_images(self, X):
        """The synthetic set copied into the static tensor the training graphs read (once per iteration)."""
        if self._X is None:
            self._X = torch.zeros_like(X)
        self._X.copy_(X)
        return self._X

    def _replay_train_step(self, X, index):
        """:meth:`_train_step` replayed from a CUDA graph: the same draws in the same order, the same kernels."""
        c = self.context
        rows = X.shape[0] if index is None else index.shape[0]
        keep = None
        if c.mdt_mask_ratio > 0:  # mask_elements' draw
            keep = keep_mask((rows, *X.shape[1:]), c.mdt_mask_ratio, c.gen_device, X.device)
        augment = None
        if self.train_augment is not None:
            augment = self.train_augment.sample(rows, c.gen_cpu, device=X.device)
        key = (rows, index is None, keep is not None, None if augment is None else augment.ops)
        inputs = (index, keep, augment)
        entry = self._graphs.get(key, inputs, functools.partial(_training_bodies, weakref.ref(self), X))
        if entry is None:  # capture failed ("auto"): the same step, op by op
            self._sgd_step(*self._batch(X, index, keep), augment)
            return
        replay, _ = entry["step"]
        if self._graphs.checked(entry, "step"):
            replay()
            return
        # the first replay must land where the eager step does, from the same weights
        params = list(self.context.net.parameters())
        before = [p.detach().clone() for p in params]
        self._sgd_step(*self._batch(X, index, keep), augment)
        expected = tuple(p.detach().clone() for p in params)
        with torch.no_grad():
            for p, value in zip(params, before):
                p.copy_(value)
        replay()
        if not self._graphs.agrees(entry, "step", tuple(p.detach() for p in params), expected):
            with torch.no_grad():
                for p, value in zip(params, expected):
                    p.copy_(value)

    def _batch(self, X, index, keep):
        """``(x, y)``: the rows ``index`` of the synthetic set (all for None) and their labels, masked by ``keep``."""
        x, y = (X, self.labels_syn) if index is None else (X[index], self.labels_syn[index])
        return (x if keep is None else x * keep.to(x.dtype)), y

    def _sgd_step(self, x, y, augment):
        """Augment ``x`` (DSA), then one SGD step of the network on the cross-entropy of ``(x, y)``.

        Also the body of the captured training step: ``zero_grad(set_to_none=True)`` launches no
        kernel, so a replay writes the gradients afresh, as the eager step does.
        """
        if augment is not None:
            x = self.train_augment(x, augment)
        loss = F.cross_entropy(self.context.net(x), y)
        self.net_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.net_optimizer.step()
        return loss.detach()


def _training_bodies(run, X, static):
    """The training step's graph (``run`` held weakly: the graphs must not keep their run alive)."""
    index, keep, augment = static

    def step():
        self = run()
        return self._sgd_step(*self._batch(X, index, keep), augment)

    return {"step": (step, _undo_warm_up(run))}


def _undo_warm_up(run):
    """A ``prepare`` for the training step's capture: the warm-up took real SGD steps, so the weights go
    back to what they were (the capture itself runs nothing)."""
    net = run().context.net
    saved = [p.detach().clone() for p in net.parameters()]

    def prepare():
        with torch.no_grad():
            for p, value in zip(net.parameters(), saved):
                p.copy_(value)

    return prepare

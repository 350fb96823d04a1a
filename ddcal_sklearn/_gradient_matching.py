"""Gradient matching (DC) and its Siamese-augmented variant (DSA) for :class:`DatasetDistiller`.

The per-class gradients of the matching network are computed for all classes in
one batched pass with :mod:`torch.func` (``vmap`` over classes of ``grad`` of the
class loss through ``functional_call``), on the real side and on the synthetic
side; the synthetic-side gradients stay differentiable with respect to the
synthetic images.
"""

import numbers

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from .augment import SiameseAugment
from .distillation import DistillationStrategy, reinitialize_

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


def _check_positive_int(value, name, *, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        allowed = "a positive int or None" if allow_none else "a positive int"
        raise ValueError(f"method_params[{name!r}]={value!r} is not valid: use {allowed}.")
    return int(value)


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
    synthetic batches are transformed with one shared random draw before the
    gradients are taken (the gradient flows through the augmentation into the
    synthetic pixels), and the network's training on the synthetic set uses
    augmentation too (per-sample draws, as in the reference).

    Mapping onto :class:`~ddcal_sklearn.DatasetDistiller`'s loop: one distiller
    iteration is one outer-loop step of the reference. :meth:`loss` computes the
    matching loss over all classes for the network's current state; after the
    distiller's image update, :meth:`after_step` trains the network for
    ``inner_loop`` epochs (SGD, ``lr_net``) on the detached synthetic set, except
    after the last step of each block of ``outer_loop`` iterations, where the
    network is instead redrawn (:func:`~ddcal_sklearn.distillation.reinitialize_`
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

    **Augmentation.** Method ``"dc"`` ignores the distiller's ``augment`` parameter
    (DC as published uses no augmentation while learning the images, and the
    distiller's default ``augment="dsa"`` would otherwise turn every DC run into
    DSA). Method ``"dsa"`` requires ``augment="dsa"``. One Siamese draw is shared by
    all classes of an iteration (the reference draws one per class; batching the
    classes needs a single draw).

    **MDT** (Masked Distillation Training, our reading of Zhu et al., ICCV 2023):
    with ``mdt_mask_ratio = r > 0``, every time the synthetic images are fed to the
    matching network, in the matching loss and in each inner training step alike,
    they are multiplied by a fresh element-wise Bernoulli keep-mask of probability
    ``1 - r`` (no rescaling), before augmentation. The learnable images are never
    masked. ``r = 0`` is plain DC/DSA, bit for bit under the same ``random_state``.

    Parameters
    ----------
    distiller, real, net, augment, generators
        As for :class:`~ddcal_sklearn.distillation.DistillationStrategy`; the
        distiller builds the strategy for ``method="dc"`` and ``method="dsa"``.

    Other Parameters
    ----------------
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

    The keys above are passed as ``DatasetDistiller(method_params={...})``; unknown
    keys and invalid values raise ``ValueError`` before any work. The distance is
    summed over classes: ``loss_curve_`` holds that sum. The reference learns the
    images with ``lr_images=0.1`` and ``momentum=0.5`` (pass them to the
    distiller; its default ``lr_images=1.0`` is DM's, and also works for DC).

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
    >>> from ddcal_sklearn import DatasetDistiller, load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> d = DatasetDistiller(method="dsa", ipc=2, n_iterations=4, lr_images=0.1,
    ...                      net_params={"width": 8, "depth": 2},
    ...                      method_params={"outer_loop": 2, "inner_loop": 1}, random_state=0)
    >>> d.fit(X, y).X_synthetic_.shape, d.loss_curve_.shape
    ((20, 1, 8, 8), (4,))
    """

    defaults = {
        "outer_loop": None,
        "inner_loop": None,
        "lr_net": 0.01,
        "momentum_net": 0.0,
        "batch_syn": None,
        "batch_train": 256,
        "distance": "layerwise_cosine",
    }

    def __init__(self, *args):
        super().__init__(*args)
        method = self.d.method
        p = self.params
        default_outer, default_inner = _loops_for_ipc(self.ipc)
        outer = _check_positive_int(p["outer_loop"], "outer_loop", allow_none=True)
        inner = _check_positive_int(p["inner_loop"], "inner_loop", allow_none=True)
        self.outer_loop = default_outer if outer is None else outer
        self.inner_loop = default_inner if inner is None else inner
        self.batch_train = _check_positive_int(p["batch_train"], "batch_train")
        self.batch_syn = _check_positive_int(p["batch_syn"], "batch_syn", allow_none=True)
        if self.batch_syn is not None and self.batch_syn > self.ipc:
            raise ValueError(f"method_params['batch_syn']={self.batch_syn} is larger than ipc={self.ipc}.")
        for name in ("lr_net", "momentum_net"):
            value = p[name]
            low_ok = value > 0 if name == "lr_net" else value >= 0
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not low_ok:
                allowed = "a float > 0" if name == "lr_net" else "a float >= 0"
                raise ValueError(f"method_params[{name!r}]={value!r} is not valid: use {allowed}.")
        if p["distance"] not in _DISTANCES:
            raise ValueError(f"method_params['distance']={p['distance']!r} is unknown; use one of {list(_DISTANCES)}.")
        self.distance = p["distance"]
        if any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in self.net.modules()):
            raise ValueError(
                f"method={method!r} computes the per-class gradients in one batched pass, which needs a "
                "network without batch statistics; use a per-sample normalisation, e.g. "
                "net_params={'norm': 'instancenorm'}."
            )
        if method == "dsa":
            if self.augment is None:
                raise ValueError("method='dsa' needs augment='dsa' (use method='dc' for no augmentation).")
            a = self.augment
            self._train_augment = SiameseAugment(
                a.strategy, mode=a.mode, scale=a.scale, rotate=a.rotate, crop_ratio=a.crop_ratio,
                cutout_ratio=a.cutout_ratio, brightness=a.brightness, saturation=a.saturation,
                contrast=a.contrast, flip_p=a.flip_p, per_sample=True,
            )
        else:  # DC: no augmentation while learning the images (see the class docstring)
            self.augment = None
            self._train_augment = None
        self.net.requires_grad_(True).train()
        self.per_class_real = min(self.d.batch_real, self.real.min_count)
        device = next(self.net.parameters()).device
        self._labels_syn = torch.arange(self.n_classes, device=device).repeat_interleave(self.ipc)
        self._net_optimizer = None
        self._step = 0

    def _reset_network(self):
        reinitialize_(self.net, self.gen_device)
        self._net_optimizer = self._new_net_optimizer()

    def _new_net_optimizer(self):
        return torch.optim.SGD(self.net.parameters(), lr=self.params["lr_net"], momentum=self.params["momentum_net"])

    def state_dict(self):
        """The matching network, its optimiser and the position in the outer loop (for checkpoints)."""
        optimizer = None if self._net_optimizer is None else self._net_optimizer.state_dict()
        return {"step": self._step, "net": self.net.state_dict(), "net_optimizer": optimizer}

    def load_state_dict(self, state):
        self._step = int(state["step"])
        self.net.load_state_dict(state["net"])
        self._net_optimizer = None
        if state["net_optimizer"] is not None:  # None: the network is drawn at the next loss
            self._net_optimizer = self._new_net_optimizer()
            self._net_optimizer.load_state_dict(state["net_optimizer"])

    def _synthetic_batch(self, X_syn):
        """``batch_syn`` synthetic images of every class (all of them by default), class-major."""
        if self.batch_syn is None or self.batch_syn == self.ipc:
            return X_syn
        keys = torch.rand(self.n_classes, self.ipc, generator=self.gen_device, device=X_syn.device)
        picks = keys.topk(self.batch_syn, dim=1, largest=False).indices
        offsets = torch.arange(self.n_classes, device=X_syn.device)[:, None] * self.ipc
        return X_syn[(offsets + picks).reshape(-1)]

    def loss(self, X_syn):
        if self._step % self.outer_loop == 0:
            self._reset_network()
        syn = self._synthetic_batch(X_syn)
        real, syn = self.siamese(self.real.sample(self.per_class_real), self.mdt(syn))
        params = {name: p.detach() for name, p in self.net.named_parameters()}
        buffers = dict(self.net.named_buffers())
        with torch.no_grad():  # torch.func.grad still differentiates inside
            g_real = _per_class_gradients(self.net, params, real, self.n_classes, buffers)
        g_syn = _per_class_gradients(self.net, params, syn, self.n_classes, buffers)
        return _gradient_distance(g_syn, g_real, self.distance)

    def after_step(self, X_syn):
        last_of_block = self._step % self.outer_loop == self.outer_loop - 1
        self._step += 1
        if last_of_block:  # the network is redrawn before the next loss
            return
        X = X_syn.detach()
        n = X.shape[0]
        for _ in range(self.inner_loop):
            if n > self.batch_train:
                batches = torch.randperm(n, generator=self.gen_device, device=X.device).split(self.batch_train)
            else:
                batches = (None,)
            for index in batches:
                x, y = (X, self._labels_syn) if index is None else (X[index], self._labels_syn[index])
                x = self.mdt(x)
                if self._train_augment is not None:
                    x = self._train_augment(x, self._train_augment.sample(x.shape[0], self.gen_cpu, device=x.device))
                loss = F.cross_entropy(self.net(x), y)
                self._net_optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self._net_optimizer.step()

"""The reference code's distillation loops, re-implemented plainly in PyTorch, for benchmarks.

Each function reproduces the *structure* of a published implementation, so that its cost can be
measured beside the library's batched version in the same process, on the same data:

- :func:`reference_dm`: DM (Zhao & Bilen, ``main_DM.py`` of VICO-UoE/DatasetCondensation): a new
  network every iteration, a Python loop over classes, one Siamese augmentation draw per class.
- :func:`reference_gradient_matching`: DC and DSA (Zhao et al., ``main.py`` of the same
  repository): per outer iteration a new network, ``outer_loop`` matching steps, each a Python
  loop over classes taking the real gradient and the synthetic gradient (``create_graph=True``)
  one class at a time, matched with the layer-wise cosine distance (``'ours'``), and between the
  steps ``inner_loop`` epochs of training the network on the synthetic set.
- :func:`reference_mtt`: MTT (Cazenavette et al., ``distill.py``): a student on a flat parameter
  vector whose every SGD step stays in the autograd graph (``student_params`` grows by one
  tensor per step), and one backward pass through the whole stored unroll.

The per-iteration bodies (:func:`dm_loss`, :func:`gradient_matching_loss`, :func:`mtt_loss`) take
their random draws as arguments, so tests can check them against the library on identical draws.
The augmentation is the library's :class:`~ddcal_sklearn.SiameseAugment` (tested to match the
reference's ``DiffAugment``; its default ``mode="single"`` picks one transformation per call,
the reference's ``aug_mode='S'``). With ``host_syncs=True`` (default) the loops also keep the
reference's host round trips: the loss read back every iteration, and for DC/DSA the
``DataLoader`` over the synthetic set and the per-batch loss and accuracy read back in its
training epochs; ``host_syncs=False`` drops them, leaving only the algorithm's structure.
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call

from ddcal_sklearn import ConvNet, SiameseAugment
from ddcal_sklearn.nn import unflatten_parameters

#: added to the product of norms in the reference's ``distance_wb``
_COSINE_EPS = 1e-6


# ---------------------------------------------------------------------------- shared set-up
class _RealImages:
    """The real set on the device with per-class indices, drawn as the reference's ``get_images``."""

    def __init__(self, X, y, device, seed):
        self.X = torch.as_tensor(X, device=device)
        y = np.asarray(y)
        self.classes = np.unique(y)
        self.indices = [np.flatnonzero(y == c) for c in self.classes]
        self.rng = np.random.default_rng(seed)

    @property
    def n_classes(self):
        return len(self.classes)

    def get(self, c, n):
        """``n`` random images of class index ``c``: a host permutation, then an index into the device set."""
        return self.X[torch.from_numpy(self.rng.permutation(self.indices[c])[:n])]

    def initial_synthetic(self, ipc):
        """``ipc`` real images of every class, class-major, as a learnable leaf (the reference's init='real')."""
        return torch.cat([self.get(c, ipc) for c in range(self.n_classes)]).clone().requires_grad_(True)

    def network(self, net_params):
        """A new ConvNet for these images, drawn from torch's global generator as the reference does."""
        shape = self.X.shape[1:]
        return ConvNet(shape[0], self.n_classes, tuple(shape[1:]), **net_params).to(self.X.device)


# ---------------------------------------------------------------------------- DM
def dm_loss(net, class_batches, augment=None):
    """DM's loss, one class at a time: squared distance of the class-mean embeddings, summed.

    Parameters
    ----------
    net : ConvNet
        Its ``embed`` is the feature extractor.
    class_batches : iterable of (real, syn, draw)
        Per class: a real batch, the class's synthetic images, and the Siamese draw shared by
        both (ignored when ``augment`` is None). An iterator is consumed lazily, so only one
        class's real batch is alive at a time, as in the reference.
    augment : SiameseAugment or None
    """
    loss = 0.0
    for real, syn, draw in class_batches:
        if augment is not None:
            real, syn = augment(real, draw), augment(syn, draw)
        mean_real = net.embed(real).detach().mean(0)
        loss = loss + ((mean_real - net.embed(syn).mean(0)) ** 2).sum()
    return loss


def reference_dm(X, y, ipc, iterations, batch_real, net_params, device, *, lr_img=1.0, augment=None, seed=0,
                 host_syncs=True):
    """Run ``iterations`` iterations of DM as the reference code structures them.

    Every iteration builds a new network (frozen), and for every class in a Python loop draws a
    real batch of ``batch_real`` images and one Siamese draw shared by the class's real and
    synthetic images (``augment``, default :class:`~ddcal_sklearn.SiameseAugment`: DM always
    augments), then one SGD step (``lr_img``, momentum 0.5) on the images.

    Returns
    -------
    X_syn : Tensor of shape (n_classes * ipc, ...)
    """
    torch.manual_seed(seed)
    device = torch.device(device)
    data = _RealImages(X, y, device, seed)
    augment = SiameseAugment() if augment is None else augment
    gen = torch.Generator().manual_seed(seed)
    X_syn = data.initial_synthetic(ipc)
    optimizer = torch.optim.SGD([X_syn], lr=lr_img, momentum=0.5)
    for _ in range(iterations):
        net = data.network(net_params).train()
        net.requires_grad_(False)
        batches = ((data.get(c, batch_real), X_syn[c * ipc:(c + 1) * ipc], augment.sample(1, gen, device=device))
                   for c in range(data.n_classes))
        loss = dm_loss(net, batches, augment)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if host_syncs:
            loss.item()  # the reference accumulates loss_avg every iteration
    return X_syn.detach()


# ---------------------------------------------------------------------------- DC / DSA
def _distance_wb(gw_real, gw_syn):
    """The reference's ``distance_wb``: sum over output units of ``1 - cos``; 0 for 1-D tensors."""
    shape = gw_real.shape
    if len(shape) == 1:  # biases, normalisation scales: skipped by 'ours'
        return torch.zeros((), device=gw_real.device)
    if len(shape) > 2:  # convolution (out, in, h, w) or layer norm (C, h, w): one row per output unit
        gw_real, gw_syn = gw_real.reshape(shape[0], -1), gw_syn.reshape(shape[0], -1)
    cos = (gw_real * gw_syn).sum(-1) / (gw_real.norm(dim=-1) * gw_syn.norm(dim=-1) + _COSINE_EPS)
    return (1 - cos).sum()


def match_loss(gw_syn, gw_real):
    """The reference's ``match_loss`` with ``dis_metric='ours'``: layer-wise distances, summed."""
    return sum(_distance_wb(real, syn) for syn, real in zip(gw_syn, gw_real))


def gradient_matching_loss(net, class_batches, augment=None):
    """One matching step's loss, one class at a time (DC; DSA with ``augment``).

    For class ``c``: the gradient of the real batch's cross-entropy w.r.t. the network's
    parameters (detached), the synthetic batch's gradient with ``create_graph=True`` (so the loss
    reaches the images), and their :func:`match_loss`.

    Parameters
    ----------
    net : torch.nn.Module
    class_batches : iterable of (real, syn, draw)
        As in :func:`dm_loss`; the class index is the position in the iterable.
    augment : SiameseAugment or None
    """
    params = list(net.parameters())
    loss = 0.0
    for c, (real, syn, draw) in enumerate(class_batches):
        if augment is not None:
            real, syn = augment(real, draw), augment(syn, draw)
        label_real = torch.full((real.shape[0],), c, device=real.device)
        label_syn = torch.full((syn.shape[0],), c, device=syn.device)
        gw_real = [g.detach().clone() for g in torch.autograd.grad(F.cross_entropy(net(real), label_real), params)]
        gw_syn = torch.autograd.grad(F.cross_entropy(net(syn), label_syn), params, create_graph=True)
        loss = loss + match_loss(gw_syn, gw_real)
    return loss


def _train_epochs(net, optimizer, X, y, epochs, batch_train, augment, gen, host_syncs):
    """The reference's ``epoch('train', ...)`` repeated ``epochs`` times on the synthetic set."""
    if host_syncs:  # the reference: a DataLoader over a detached copy (per-sample indexing, then a stack)
        dataset = torch.utils.data.TensorDataset(X.detach().clone(), y)
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_train, shuffle=True, num_workers=0)
    for _ in range(epochs):
        if host_syncs:
            batches = loader
        else:
            X_d = X.detach()
            batches = ((X_d[i], y[i]) for i in torch.randperm(len(y), device=y.device).split(batch_train))
        for x, label in batches:
            if augment is not None:  # per-image draws, one transformation per call
                x = augment(x, augment.sample(x.shape[0], gen, device=x.device))
            output = net(x)
            loss = F.cross_entropy(output, label)
            if host_syncs:  # the reference reads the loss and the accuracy back every batch
                loss.item()
                (output.argmax(-1) == label).sum().item()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def reference_gradient_matching(X, y, ipc, iterations, batch_real, net_params, device, *, dsa=False, outer_loop=1,
                                inner_loop=1, lr_img=0.1, lr_net=0.01, batch_train=256, augment=None, seed=0,
                                host_syncs=True):
    """Run ``iterations`` outer iterations of DC (``dsa=False``) or DSA as the reference code structures them.

    One outer iteration: a new network (the library's ConvNet, instance normalisation) and its
    SGD (``lr_net``, no momentum); then ``outer_loop`` times: :func:`gradient_matching_loss` over
    the classes (``batch_real`` real images and the ``ipc`` synthetic images of each class; with
    DSA one draw per class shared by both), an SGD step on the images (``lr_img``, momentum
    0.5), and, except after the last step, ``inner_loop`` epochs of training the network on the
    detached synthetic set (batches of ``batch_train``, shuffled; DSA augments every image with
    its own draw, DC not at all). One outer iteration is ``outer_loop`` iterations of the
    library's ``DatasetDistiller``.

    Returns
    -------
    X_syn : Tensor of shape (n_classes * ipc, ...)
    """
    torch.manual_seed(seed)
    device = torch.device(device)
    data = _RealImages(X, y, device, seed)
    augment = (SiameseAugment() if augment is None else augment) if dsa else None
    train_augment = augment.with_per_sample() if augment is not None else None
    gen = torch.Generator().manual_seed(seed)
    X_syn = data.initial_synthetic(ipc)
    y_syn = torch.arange(data.n_classes, device=device).repeat_interleave(ipc)
    optimizer_img = torch.optim.SGD([X_syn], lr=lr_img, momentum=0.5)
    for _ in range(iterations):
        net = data.network(net_params).train()
        optimizer_net = torch.optim.SGD(net.parameters(), lr=lr_net)
        for step in range(outer_loop):
            batches = ((data.get(c, batch_real), X_syn[c * ipc:(c + 1) * ipc],
                        None if augment is None else augment.sample(1, gen, device=device))
                       for c in range(data.n_classes))
            loss = gradient_matching_loss(net, batches, augment)
            optimizer_img.zero_grad()
            loss.backward()
            optimizer_img.step()
            if host_syncs:
                loss.item()  # loss_avg
            if step == outer_loop - 1:
                break
            _train_epochs(net, optimizer_net, X_syn, y_syn, inner_loop, batch_train, train_augment, gen, host_syncs)
    return X_syn.detach()


# ---------------------------------------------------------------------------- MTT
def mtt_loss(net, names, shapes, X_syn, y_syn, syn_lr, start, target, batches, aug_params=None, augment=None):
    """MTT's normalised matching loss through the stored unrolled graph, as the reference builds it.

    ``student_params`` starts as a leaf copy of ``start`` and grows by one tensor per step,
    ``student_params[-1] - syn_lr * grad`` with the gradient taken with ``create_graph=True``,
    so the whole unroll (every step's activations) stays alive until the backward pass.

    Parameters
    ----------
    net : torch.nn.Module
        Called with :func:`torch.func.functional_call` on the unflattened vector.
    names, shapes : sequences
        The parameter names and shapes of ``net``, in flat-vector order.
    X_syn : Tensor
        Synthetic images (a leaf that requires grad).
    y_syn : Tensor of int
    syn_lr : Tensor, 0-d
        Learnable step size.
    start, target : Tensor of shape (n_params,)
        Expert parameters at the start and the end of the segment.
    batches : sequence of index tensors
        The minibatch of each step (its length is the number of steps).
    aug_params : sequence of DSAParams or None
        Per-image draws of each step, for ``augment``.
    augment : SiameseAugment with ``per_sample=True``, or None

    Returns
    -------
    loss : Tensor, 0-d
        ``(||theta_N - target||^2 / n) / (||start - target||^2 / n)``.
    """
    student_params = [start.detach().clone().requires_grad_(True)]
    for i, index in enumerate(batches):
        x = X_syn[index]
        if augment is not None:
            x = augment(x, aug_params[i])
        output = functional_call(net, unflatten_parameters(student_params[-1], names, shapes), (x,))
        ce = F.cross_entropy(output, y_syn[index])
        (grad,) = torch.autograd.grad(ce, student_params[-1], create_graph=True)
        student_params.append(student_params[-1] - syn_lr * grad)
    num_params = start.numel()
    param_loss = F.mse_loss(student_params[-1], target, reduction="sum") / num_params
    param_dist = F.mse_loss(start, target, reduction="sum") / num_params
    return param_loss / param_dist


def reference_mtt(X_syn_init, y_syn, trajectories, iterations, *, syn_steps, expert_epochs, max_start_epoch,
                  net_params, device, lr_img=1000.0, lr_lr=1e-5, lr_teacher=0.01, batch_syn=None, augment=None,
                  seed=0, host_syncs=True):
    """Run ``iterations`` iterations of MTT as the reference code structures them.

    Every iteration: a new student network (used only functionally), a random expert and start
    epoch ``t < max_start_epoch``, its parameters at ``t`` and ``t + expert_epochs`` moved from the
    host (where the reference keeps its buffer of trajectories) to the device, ``syn_steps``
    minibatches walking through random permutations (``batch_syn``, default all images), one
    per-image augmentation draw per step, :func:`mtt_loss`, and SGD steps (momentum 0.5) on the
    images (``lr_img``) and on the step size (``lr_lr``, initially ``lr_teacher``).

    Parameters
    ----------
    X_syn_init : array-like of shape (n_syn, ...)
    y_syn : array-like of int of shape (n_syn,)
        Class indices ``0 .. n_classes - 1``.
    trajectories : ndarray of shape (n_experts, n_epochs + 1, n_params)
        ``ExpertTrajectories.trajectories_``, kept on the host.

    Returns
    -------
    X_syn : Tensor
    syn_lr : float
    """
    torch.manual_seed(seed)
    device = torch.device(device)
    rng = np.random.default_rng(seed)
    X_syn = torch.tensor(np.asarray(X_syn_init), device=device).requires_grad_(True)
    y_syn = torch.as_tensor(np.asarray(y_syn), device=device)
    syn_lr = torch.tensor(float(lr_teacher), device=device).requires_grad_(True)
    optimizer_img = torch.optim.SGD([X_syn], lr=lr_img, momentum=0.5)
    optimizer_lr = torch.optim.SGD([syn_lr], lr=lr_lr, momentum=0.5)
    step_augment = (SiameseAugment() if augment is None else augment).with_per_sample()
    gen = torch.Generator().manual_seed(seed)
    n_syn = len(y_syn)
    batch_syn = n_syn if batch_syn is None else batch_syn
    n_classes = int(y_syn.max()) + 1
    for _ in range(iterations):
        net = ConvNet(X_syn.shape[1], n_classes, tuple(X_syn.shape[2:]), **net_params).to(device)
        names, shapes = zip(*[(name, p.shape) for name, p in net.named_parameters()])
        expert = trajectories[rng.integers(len(trajectories))]
        epoch = int(rng.integers(max_start_epoch))
        start = torch.as_tensor(expert[epoch]).to(device)
        target = torch.as_tensor(expert[epoch + expert_epochs]).to(device)
        batches, chunks = [], []
        for _ in range(syn_steps):
            if not chunks:  # the reference pops chunks of a fresh permutation from its end
                chunks = list(torch.randperm(n_syn).split(batch_syn))
            batches.append(chunks.pop())
        aug_params = [step_augment.sample(len(index), gen, device=device) for index in batches]
        loss = mtt_loss(net, names, shapes, X_syn, y_syn, syn_lr, start, target, batches, aug_params, step_augment)
        optimizer_img.zero_grad()
        optimizer_lr.zero_grad()
        loss.backward()
        optimizer_img.step()
        optimizer_lr.step()
        if host_syncs:
            loss.item()  # logged every iteration
    return X_syn.detach(), float(syn_lr.detach())

"""Device-resident data for skorch: a tensor dataset, a batch iterator and the literature's LR step."""

import torch
from skorch.callbacks import LRScheduler


class DeviceTensorDataset(torch.utils.data.Dataset):
    """Inputs and targets held as tensors on the training device.

    Parameters
    ----------
    X : torch.Tensor of shape (n_samples, ...)
    y : torch.Tensor of shape (n_samples,) or None

    Examples
    --------
    >>> import torch
    >>> from ddcal_sklearn.nn import DeviceTensorDataset
    >>> ds = DeviceTensorDataset(torch.zeros(3, 1, 8, 8), torch.tensor([0, 1, 0]))
    >>> len(ds), ds[1][1].item()
    (3, 1)
    """

    def __init__(self, X, y=None):
        self.X = X
        self.y = y

    def __len__(self):
        return len(self.X)

    def __getitem__(self, index):
        return self.X[index], (self.y[index] if self.y is not None else torch.empty(0))


def _tensors_or_none(dataset):
    """The (X, y) tensors behind ``dataset``, or None when it is not made of two (or one) tensors."""
    if isinstance(dataset, DeviceTensorDataset):
        return dataset.X, dataset.y
    if isinstance(dataset, torch.utils.data.TensorDataset) and len(dataset.tensors) in (1, 2):
        return dataset.tensors[0], (dataset.tensors[1] if len(dataset.tensors) == 2 else None)
    if isinstance(dataset, torch.utils.data.Subset):
        tensors = _tensors_or_none(dataset.dataset)
        if tensors is None:
            return None
        X, y = tensors
        index = torch.as_tensor(dataset.indices, device=X.device)
        return X[index], (y[index] if y is not None else None)
    return None


def dataset_tensors(dataset):
    """The (X, y) tensors behind a DeviceTensorDataset, a TensorDataset, or a Subset of one.

    Examples
    --------
    >>> import torch
    >>> from ddcal_sklearn.nn import dataset_tensors
    >>> ds = torch.utils.data.TensorDataset(torch.zeros(4, 2), torch.arange(4))
    >>> dataset_tensors(torch.utils.data.Subset(ds, [3, 1]))[1].tolist()
    [3, 1]
    """
    tensors = _tensors_or_none(dataset)
    if tensors is None:
        raise TypeError(
            f"dataset_tensors needs a DeviceTensorDataset, a TensorDataset of (X, y) or (X,), or a "
            f"Subset of one; got {type(dataset).__name__}."
        )
    return tensors


class DeviceBatchIterator:
    """Mini-batches sliced from tensors, without per-sample Python calls.

    A drop-in for ``torch.utils.data.DataLoader`` in skorch's ``iterator_train`` /
    ``iterator_valid``: no per-sample ``__getitem__``, no collation and no copy, so an
    epoch over a distilled set of a few hundred images costs a handful of kernel
    launches rather than thousands of Python calls. Each batch is a view of the
    dataset's tensors, on whatever device they live: :class:`ConvNetClassifier` keeps
    training data on the device, and inference data on the host (each batch is moved
    to the device only when the network runs on it).

    Any other map-style dataset (one whose items are not slices of tensors) is read
    item by item through a :class:`torch.utils.data.DataLoader` with the same batches
    (the permutation still comes from ``generator``), as skorch reads datasets.

    Parameters
    ----------
    dataset : DeviceTensorDataset, TensorDataset, a Subset of one, or any map-style Dataset
    batch_size : int, default=128
    shuffle : bool, default=False
        Draw a fresh permutation (on the device) at every pass.
    generator : torch.Generator or None, default=None
        Generator on the data's device used for the permutation.
    drop_last : bool, default=False

    Examples
    --------
    >>> import torch
    >>> from ddcal_sklearn.nn import DeviceBatchIterator, DeviceTensorDataset
    >>> ds = DeviceTensorDataset(torch.arange(10.0), torch.arange(10))
    >>> [len(xb) for xb, yb in DeviceBatchIterator(ds, batch_size=4)]
    [4, 4, 2]
    """

    def __init__(self, dataset, batch_size=128, shuffle=False, generator=None, drop_last=False):
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator
        self.drop_last = drop_last

    def __len__(self):
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _permutation(self, n, device):
        generator_device = self.generator.device if self.generator is not None else device
        return torch.randperm(n, generator=self.generator, device=generator_device).to(device)

    def __iter__(self):
        tensors = _tensors_or_none(self.dataset)
        if tensors is None:  # a general dataset: per-item reads and collation, as a DataLoader does
            n = len(self.dataset)
            order = self._permutation(n, "cpu").tolist() if self.shuffle else range(n)
            yield from torch.utils.data.DataLoader(
                self.dataset, batch_size=self.batch_size, sampler=order, drop_last=self.drop_last)
            return
        X, y = tensors
        n = len(X)
        if self.shuffle:
            order = self._permutation(n, X.device)
            X, y = X[order], (y[order] if y is not None else None)
        stop = n - n % self.batch_size if self.drop_last else n
        for start in range(0, stop, self.batch_size):
            end = start + self.batch_size
            yield X[start:end], (y[start:end] if y is not None else None)


class LRStepAtFraction(LRScheduler):
    """Multiply the learning rate by ``gamma`` once, after ``fraction`` of ``max_epochs``.

    The evaluation protocol of the dataset-distillation literature divides the
    learning rate by 10 at half of training. The milestone follows the net's
    ``max_epochs`` at the start of every ``fit``, so a grid search over
    ``max_epochs`` stays faithful to it.

    Parameters
    ----------
    fraction : float, default=0.5
        The cut comes after ``max(1, round(fraction * max_epochs))`` epochs.
    gamma : float, default=0.1
    milestone : int or None, default=None
        When set, the cut comes after exactly this many epochs (``fraction`` is then
        ignored). The reference code (``evaluate_synset`` of DC/DSA/DM) trains
        ``E + 1`` epochs and cuts after ``E // 2 + 2`` of them.
    reset_momentum : bool, default=False
        Clear the optimiser's state (SGD's momentum buffers) at the cut, as the
        reference code does by building a new optimiser there.

    Examples
    --------
    >>> from ddcal_sklearn import ConvNetClassifier
    >>> from ddcal_sklearn.nn import LRStepAtFraction
    >>> net = ConvNetClassifier(callbacks__lr_scheduler__fraction=0.8)
    >>> LRStepAtFraction(milestone=502, reset_momentum=True).milestone_for(1001)
    502
    """

    def __init__(self, fraction=0.5, gamma=0.1, event_name="event_lr", milestone=None, reset_momentum=False):
        super().__init__(policy=torch.optim.lr_scheduler.MultiStepLR, event_name=event_name)
        self.fraction = fraction
        self.gamma = gamma
        self.milestone = milestone
        self.reset_momentum = reset_momentum

    def milestone_for(self, max_epochs):
        """The number of epochs trained before the cut, for a fit of ``max_epochs`` epochs."""
        if self.milestone is not None:
            if int(self.milestone) < 1:
                raise ValueError(f"LRStepAtFraction(milestone={self.milestone!r}) must be a positive "
                                 "number of epochs, or None to use fraction.")
            return int(self.milestone)
        return max(1, int(round(self.fraction * max_epochs)))

    def _get_scheduler(self, net, policy, **scheduler_kwargs):
        return policy(net.optimizer_, milestones=[self.milestone_for(net.max_epochs)], gamma=self.gamma)

    def on_epoch_end(self, net, **kwargs):
        super().on_epoch_end(net, **kwargs)
        if self.reset_momentum and self.lr_scheduler_.last_epoch == self.milestone_for(net.max_epochs):
            net.optimizer_.state.clear()  # a fresh optimiser at the cut, as the reference builds one

    @property
    def kwargs(self):
        return {}

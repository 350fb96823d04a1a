"""``ConvNetClassifier``: a skorch ``NeuralNetClassifier`` with the distillation literature's protocol."""

import contextlib
import functools
import inspect
import json
import numbers
import os
import sys
import time
import warnings
from collections.abc import Mapping

import numpy as np
import torch
import torch.optim.optimizer as _optimizer_module
from skorch import NeuralNet, NeuralNetClassifier
from skorch.callbacks import Callback, EpochScoring, EpochTimer, LRScheduler, PassthroughScoring, PrintLog
from skorch.dataset import get_len, unpack_data
from skorch.history import History
from skorch.utils import TeeGenerator, data_from_dataset, is_dataset, to_device, to_numpy, to_tensor
from sklearn.base import clone
from sklearn.preprocessing import LabelEncoder
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions, validate_parameter_constraints
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .nn import (
    ConvNet,
    DeviceBatchIterator,
    DeviceTensorDataset,
    FocalLoss,
    LRStepAtFraction,
    module_buffers,
    network_kwargs,
    resolve_augment,
    resolve_network,
    train_stacked,
)

from .utils import (
    RunCheckpoint,
    check_generator,
    check_input_scale,
    check_label_types,
    check_soft_labels,
    draw_seed,
    dumps_with_arrays,
    is_soft_labels,
    loads_with_arrays,
    naming_the_input,
    resolve_device,
    run_fingerprint,
    save_checkpoint,
)


def _index_accuracy(net, X, y):
    """Validation accuracy on the encoded targets that skorch sees during fit.

    The argmax of the logits is the argmax of the probabilities; reading the logits (which
    EpochScoring caches) lets a diverged epoch reach the "Training diverged" check of fit.
    """
    logits = net.forward(X)
    logits = logits[0] if isinstance(logits, tuple) else logits
    y = to_numpy(y)
    if y.ndim == 2:  # soft labels: their most probable class
        y = y.argmax(axis=1)
    return float(np.mean(to_numpy(logits).argmax(axis=1) == y))


class _RequestedDevice:
    """``device`` as given (``"auto"`` kept for ``get_params``/``clone``), resolved where skorch reads it."""

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self
        loop = obj.__dict__.get("_training_loop")
        if loop is not None:  # read twice per batch; fixed while the fit loop runs
            return loop.device
        requested = obj.__dict__.get("device", "auto")
        try:
            return None if requested is None else str(resolve_device(requested))
        except ValueError:  # reported by fit, before any work; set_params and repr must not raise
            return requested

    def __set__(self, obj, value):
        obj.__dict__["device"] = value


#: layout of the checkpoint files written by ``ConvNetClassifier(checkpoint_dir=...)``
CHECKPOINT_FORMAT_VERSION = 1
#: a run's checkpoint is ``classifier-<digest of its fingerprint>.pt``; ``classifier.pt`` (the name before
#: one file per run) is still read when its fingerprint is the run's
_CHECKPOINT_NAME = "classifier.pt"
_CHECKPOINT_KIND = "ddcal_sklearn.ConvNetClassifier checkpoint"
_CHECKPOINT_KEYS = {
    "fingerprint": str, "epoch": int, "modules": dict, "criteria": dict, "optimizers": dict,
    "callbacks": dict, "history": str, "random_state": str, "mixup_random_state": str, "generators": dict,
}
#: attributes that live only while fit runs (CUDA generators among them): never pickled
_TRANSIENT = ("_shuffle_generator", "_mixup_generator", "_mixup_rng", "_augment_generator", "_augment",
              "_checkpoint_run", "_sized_by_data", "_training_loop")


class _OutOfMemoryAdvice(torch.OutOfMemoryError):
    """A device out-of-memory error that already names the parameters to lower."""


class _CheckpointRun:
    """One ``fit``'s checkpoint files (a locked :class:`RunCheckpoint`), and the state it resumes from (or None)."""

    def __init__(self, files, state):
        self.files = files
        self.path = files.path
        self.fingerprint = files.fingerprint
        self.state = state
        self.streams_restored = False


def _accepts_argument(factory, name):
    """Whether the class (or the class of the instance) ``factory`` takes keyword ``name``."""
    cls = factory if inspect.isclass(factory) else type(factory)
    try:
        parameters = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind is p.VAR_KEYWORD for p in parameters)


_NOT_PLAIN = object()


def _plain(value):
    """``value`` if ``torch.load(weights_only=True)`` reads it back as it is, else ``_NOT_PLAIN``."""
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value
    if type(value) in (list, tuple):
        items = [_plain(item) for item in value]
        return _NOT_PLAIN if any(item is _NOT_PLAIN for item in items) else type(value)(items)
    if type(value) is dict:
        items = {key: _plain(item) for key, item in value.items()}
        if any(not isinstance(key, (str, int)) or item is _NOT_PLAIN for key, item in items.items()):
            return _NOT_PLAIN
        return items
    return _NOT_PLAIN  # a Counter (MultiStepLR's milestones), a set, a function...


def _rng_state(rng):
    return "" if rng is None else dumps_with_arrays(rng.bit_generator.state)


def _side_pair(size):
    """``image_size`` as (height, width), as :class:`~ddcal_sklearn.ConvNet` reads it."""
    if isinstance(size, numbers.Integral):
        return int(size), int(size)
    return tuple(int(side) for side in size)


class _EncodedTargets(torch.utils.data.Dataset):
    """A dataset of ``(x, label)`` pairs seen as ``(x, class index)``: what the criterion needs."""

    def __init__(self, dataset, classes):
        self.dataset = dataset
        self.classes = classes
        self._index = {label: index for index, label in enumerate(classes.tolist())}

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        x, label = self.dataset[i]
        key = label.item() if isinstance(label, (torch.Tensor, np.ndarray, np.generic)) else label
        try:
            return x, torch.tensor(self._index[key], dtype=torch.int64)
        except (KeyError, TypeError):
            raise ValueError(
                f"Item {i} of the training dataset has label {key!r}, which is not in "
                f"classes_={self.classes.tolist()!r}: add it to the classes parameter."
            ) from None


class _SoftTargets(torch.utils.data.Dataset):
    """A dataset of ``(x, class probabilities)`` pairs seen with float32 targets in the columns of ``classes_``."""

    def __init__(self, dataset, columns):
        self.dataset = dataset
        self.columns = torch.as_tensor(columns, dtype=torch.int64)

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        x, probabilities = self.dataset[i]
        target = torch.zeros(len(self.columns), dtype=torch.float32)
        target[self.columns] = torch.as_tensor(probabilities).to(device="cpu", dtype=torch.float32)
        return x, target


#: optimizers whose ``step(closure)`` calls the closure once, before it changes anything: for them
#: ``zero_grad``, forward/backward, ``step()`` is the arithmetic of skorch's closure step, in its order
#: (LBFGS calls the closure again, so it keeps skorch's step)
_ONE_CALL_CLOSURE_OPTIMIZERS = (
    torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW, torch.optim.Adamax, torch.optim.NAdam,
    torch.optim.RAdam, torch.optim.RMSprop, torch.optim.Adagrad, torch.optim.Adadelta, torch.optim.ASGD,
    torch.optim.Rprop,
)
_NET_HOOKS = ("on_epoch_begin", "on_epoch_end", "on_batch_begin", "on_batch_end", "on_grad_computed")
#: batch losses held on the device before they are read in one go (bounds their memory)
_MAX_PENDING = 1024


class _OneEpoch:
    """The ``net`` that a deferred :class:`PassthroughScoring` sees: a history of its own epoch only."""

    def __init__(self, row):
        self.history = History([row])


def _skips(callback, method, training, net):
    """Whether ``callback.method`` does nothing for a batch of this kind (so it need not be called)."""
    kind = type(callback)
    if getattr(kind, method) is getattr(Callback, method):
        return True
    if method != "on_batch_end":
        return False
    if kind in (LRScheduler, LRStepAtFraction):
        return not training or callback.step_every != "batch"
    if kind is EpochScoring:
        caching = callback.use_caching if net.use_caching == "auto" else net.use_caching
        return not caching or training != callback.on_train
    return False


def _reads_no_batch_losses(callback):
    """Whether the batch-level hooks of ``callback`` are known not to read the history."""
    kind = type(callback)
    if kind is EpochScoring:  # caches the batch's targets and predictions
        return True
    # stepping per batch records the learning rate; only ReduceLROnPlateau reads a score
    return kind in (LRScheduler, LRStepAtFraction) and not isinstance(
        getattr(callback, "lr_scheduler_", None), torch.optim.lr_scheduler.ReduceLROnPlateau)


def _epoch_end_role(callback):
    """How the own loop runs ``callback.on_epoch_end`` (see ``_TrainingLoop.notify``)."""
    kind = type(callback)
    if kind in (PrintLog, PassthroughScoring, EpochScoring):
        return kind
    if kind is EpochTimer or (kind in (LRScheduler, LRStepAtFraction) and (
            callback.step_every != "epoch" or not isinstance(
                getattr(callback, "lr_scheduler_", None), torch.optim.lr_scheduler.ReduceLROnPlateau))):
        return "safe"  # reads no loss
    return "reader"  # may read anything: the losses are read first


class _TrainingLoop:
    """The per-batch work of one ``fit_loop``, without skorch's per-batch host sync and no-op calls.

    skorch reads every batch loss with ``.item()``: a host sync per batch, after which the
    host waits for the device at every step instead of queueing the next one. Here a loss
    stays on the device (detached) in the history until something reads it: then all the
    pending ones are read in one ``tolist``. The readers are known: a callback that is not
    known to leave the losses alone gets them as floats before its hook runs, and every
    ``PassthroughScoring`` of a pending loss runs later, on its own epoch, when they are read
    (same values, same ``*_best`` flags, keys in the same order); the end of the fit loop
    and each checkpoint read them all. Hooks that do nothing (the base class's, an LR
    scheduler stepping per epoch at a batch's end, ...) are not called, a silent ``PrintLog``
    does not build the table nobody sees, a module already in training mode is not walked
    to be set so again, and with an optimizer that calls its closure once the step runs
    without skorch's closure and accumulator. (``dur`` then times the host's work of the
    epoch: on a GPU the device may still be running it.)
    """

    def __init__(self, net):
        callbacks = [callback for _, callback in net.callbacks_]
        # per training flag: the on_batch_begin and on_batch_end hooks that do something
        self.batch_hooks = {
            training: tuple([getattr(cb, method) for cb in callbacks if not _skips(cb, method, training, net)]
                            for method in ("on_batch_begin", "on_batch_end"))
            for training in (True, False)}
        self.grad_hooks = any(not _skips(cb, "on_grad_computed", True, net) for cb in callbacks)
        batch_callbacks = {id(hook.__self__): hook.__self__ for hooks in self.batch_hooks.values()
                           for group in hooks for hook in group}
        # a batch hook that may read the losses of earlier batches gets them as floats, as in skorch
        self.defer = not self.grad_hooks and all(map(_reads_no_batch_losses, batch_callbacks.values()))
        # the epoch hooks that do something: (bound method, whether the losses are read first)
        self.epoch_begin = [(callback.on_epoch_begin, type(callback) not in (EpochTimer, EpochScoring))
                            for callback in callbacks if not _skips(callback, "on_epoch_begin", True, net)]
        self.epoch_end = [(callback, _epoch_end_role(callback)) for callback in callbacks
                          if not _skips(callback, "on_epoch_end", True, net)]
        optimizers = [getattr(net, name + "_") for name in net._optimizers]
        self.plain_step = all(
            type(optimizer) in _ONE_CALL_CLOSURE_OPTIMIZERS and not optimizer._optimizer_step_pre_hooks
            for optimizer in optimizers) and not _optimizer_module._global_optimizer_pre_hooks
        self.device = net.device
        # module.train() walks every submodule (nn.Module.__setattr__ on each) at every batch
        self.top_modules = self._top_modules(net)
        self.all_modules = [module for top in self.top_modules for module in top.modules()]
        self.plain_train = all(type(module).train is torch.nn.Module.train for module in self.all_modules)
        self.pending = []  # (batch row, key, detached loss on the device)
        self.deferred = []  # (PassthroughScoring, epoch row): its on_epoch_end, run once the losses are read

    @staticmethod
    def _top_modules(net):
        modules = [getattr(net, name + "_") for name in net._modules + net._criteria]
        return [module for module in modules if isinstance(module, torch.nn.Module)]

    @staticmethod
    def applies_to(net):
        """Whether the net's own hooks, notify and training step are as here (a subclass may change them)."""
        kind = type(net)
        return type(net.history_) is History and kind.notify is ConvNetClassifier.notify and \
            all(getattr(kind, hook) is getattr(NeuralNet, hook) for hook in _NET_HOOKS) and all(
                getattr(kind, name) is getattr(NeuralNet, name)
                for name in ("get_train_step_accumulator", "_step_optimizer", "_zero_grad_optimizer"))

    def in_mode(self, net, training):
        """Whether every module is in this mode already (so ``_set_training`` would change nothing)."""
        return self.plain_train and all(module.training == training for module in self.all_modules) and \
            self._top_modules(net) == self.top_modules

    def record(self, row, key, loss):
        """``row[key] = loss.item()``, deferred when the loss is a floating-point scalar tensor."""
        if not (self.defer and isinstance(loss, torch.Tensor) and loss.ndim == 0 and loss.is_floating_point()):
            row[key] = loss.item()
            return
        row[key] = loss = loss.detach()
        self.pending.append((row, key, loss))
        if len(self.pending) >= _MAX_PENDING:
            self.resolve()

    def resolve(self):
        """Read every pending loss (one host sync per device and dtype), then run the deferred scorings."""
        groups = {}
        for entry in self.pending:
            groups.setdefault((entry[2].device, entry[2].dtype), []).append(entry)
        self.pending = []
        for entries in groups.values():
            for (row, key, _), value in zip(entries, torch.stack([e[2] for e in entries]).tolist()):
                row[key] = value
        deferred, self.deferred = self.deferred, []
        for callback, row in deferred:
            callback.on_epoch_end(_OneEpoch(row))

    def notify(self, net, method_name, kwargs):
        """``net.notify`` for ``on_epoch_begin`` / ``on_epoch_end``: losses read only where a hook may need them."""
        history = net.history_
        if method_name == "on_epoch_begin":
            history.append({"batches": []})  # skorch's net.on_epoch_begin (without History.record's copy)
            list.__getitem__(history, -1)["epoch"] = len(history)
            for hook, reads in self.epoch_begin:
                if reads:
                    self.resolve()
                hook(net, **kwargs)
            return
        row = list.__getitem__(history, -1)
        for callback, role in self.epoch_end:
            if role is PrintLog:
                if callback.sink is print and not net.verbose:
                    # what its on_epoch_end leaves when it prints nothing, without formatting the table
                    callback.first_iteration_ = False
                    sys.stdout.flush()
                    continue
                self.resolve()
            elif role is PassthroughScoring:  # reads the batch values of its name only
                name = callback.name
                if not any(name in batch for batch in row["batches"]):
                    continue  # it would find none and return (the validation loss without validation data)
                if self.pending and any(isinstance(batch.get(name), torch.Tensor) for batch in row["batches"]):
                    row[name] = None  # placeholders keep the keys in skorch's order
                    if callback.lower_is_better is not None:
                        row[name + "_best"] = None
                    self.deferred.append((callback, row))
                    continue
            elif role is EpochScoring:
                if kwargs.get("dataset_train" if callback.on_train else "dataset_valid") is None:
                    continue  # it would find no data to score and return
                self.resolve()
            elif role == "reader":
                self.resolve()
            callback.on_epoch_end(net, **kwargs)


class ConvNetClassifier(NeuralNetClassifier):
    """A skorch classifier set up for networks trained on distilled (or real) images.

    A :class:`skorch.NeuralNetClassifier` whose defaults follow the evaluation
    protocol of the dataset-distillation literature: :class:`~ddcal_sklearn.ConvNet`,
    cross-entropy on logits, SGD with momentum 0.9 and weight decay 5e-4, learning
    rate divided by 10 at half of ``max_epochs``, and no internal validation split
    (a distilled set may hold 10 images). Beyond skorch it adds:

    - scikit-learn input handling: ``(n_samples, channels, height, width)`` images
      (float64, pandas and read-only arrays accepted, cast to float32), any class
      labels (strings too: ``classes_`` holds them and ``predict`` returns them),
      clear errors for wrong ranks, shapes, NaN or a single class;
    - soft labels: ``y`` of shape ``(n_samples, n_classes)``, one row of class
      probabilities per sample, trained with the soft cross-entropy (see Notes);
    - ``decision_function`` returning logits, which
      :class:`~ddcal_sklearn.MaskedTemperatureCalibrator` scales;
    - ``device="auto"`` (CUDA when available) and data kept on the device during
      training (:class:`DeviceBatchIterator`), so small sets are not dominated by
      per-batch Python overhead; the batch losses stay on the device until a callback
      or the end of the fit reads them (skorch waits for the device at every batch),
      and the history ends as skorch's would (``dur`` then times the host's work);
    - ``random_state``: module initialisation, shuffling and mixup come from it, never
      from torch's global generator (reproducible on CPU);
    - augmentation while training (``augment="dsa"`` or ``"dc"``), the evaluation
      protocol of the distillation literature: a fresh draw for every training batch,
      never at inference;
    - training-time calibration baselines as plain parameters, so ``GridSearchCV`` can
      tune them: ``mixup_alpha``, ``label_smoothing`` and ``focal_gamma``;
    - resumable training (``checkpoint_dir``), inference in batches that keeps the
      inputs on the host, and out-of-memory errors that say what to lower.

    The module class gets ``in_channels``, ``image_size``, ``n_features`` and
    ``n_classes`` from the data at fit time when its constructor takes them and they
    were not given as ``module__*`` parameters. Every other knob is reachable as in
    skorch (``module__width``, ``optimizer__momentum``, ``callbacks__lr_scheduler__fraction``),
    hence from ``GridSearchCV``.

    Parameters
    ----------
    module : str, torch.nn.Module class or instance, default=ConvNet
        Must map a batch of inputs to logits. A name of :data:`~ddcal_sklearn.nn.NETWORKS`
        (``"convnet"``, ``"convnet_bn"``, ``"lenet"``, ``"alexnet"``, ``"vgg11"``,
        ``"resnet18"``, ...) is that class with the literature's presets (``module__*``
        parameters override them). Use :class:`~ddcal_sklearn.MLP` for flat
        2-D features.
    criterion : torch criterion class, default=torch.nn.CrossEntropyLoss
    optimizer : torch optimizer class, default=torch.optim.SGD
    lr : float, default=0.01
    max_epochs : int, default=300
        The literature trains for 1000 epochs on distilled sets; 300 is a cheaper default.
    batch_size : int, default=256
    train_split : callable or None, default=None
        skorch's internal validation split; None trains on all of X.
    device : {"auto", "cpu", "cuda", "cuda:N"} or torch.device, default="auto"
    random_state : None, int or numpy Generator, default=None
    verbose : int, default=0
        1 prints skorch's per-epoch table.
    augment : {"dsa", "dc"}, augmentation object or None, default=None
        Augment every training batch afresh, on the device, as the literature trains its
        evaluation networks: ``"dsa"`` is the differentiable Siamese augmentation of
        the distillers (:class:`~ddcal_sklearn.SiameseAugment` with the reference's
        defaults, one transformation per batch with its own parameters per image),
        ``"dc"`` the reference's crop/scale/rotate/noise for DC
        (:class:`~ddcal_sklearn.DCAugment`, one transformation per image). An object
        with ``sample(n, generator, device=)`` and ``apply(x, params)`` is used as it
        is. The draws come from a generator seeded from ``random_state``; prediction
        never augments. Applied before mixup.
    mixup_alpha : float, default=0.0
        mixup (Zhang et al., ICLR 2018) when > 0: every training batch is replaced by
        ``lam * X + (1 - lam) * X[perm]`` with ``lam ~ Beta(mixup_alpha, mixup_alpha)``
        and ``perm`` a random permutation of the batch, and the loss is
        ``lam * loss(y) + (1 - lam) * loss(y[perm])``. Training only; prediction sees
        the images as they are. Typical values: 0.1 to 0.4. Must be >= 0.
    label_smoothing : float, default=0.0
        Passed to the criterion's own ``label_smoothing`` argument (that of
        :class:`torch.nn.CrossEntropyLoss` or :class:`~ddcal_sklearn.FocalLoss`); a
        criterion without one is an error. In [0, 1].
    focal_gamma : float, default=0.0
        When > 0, train with :class:`~ddcal_sklearn.FocalLoss` ``(gamma=focal_gamma)``
        instead of cross-entropy (Mukhoti et al., NeurIPS 2020, use 3). Needs the
        default ``criterion``. Must be >= 0.
    checkpoint_dir : str, path-like or None, default=None
        Directory for the checkpoints of ``fit`` (one file per run,
        ``classifier-<digest>.pt``). When set, ``fit`` writes the whole training state
        there every ``checkpoint_every`` epochs and after the last one, and a later
        ``fit`` with the same data and parameters resumes from it, giving the network
        an uninterrupted fit would have given (see Notes). Fits with other data or
        parameters (the candidates and folds of a ``GridSearchCV``) may share the
        directory: each has its own file, never resumed by nor overwritten by another.
    checkpoint_every : int, default=10
        Epochs between checkpoints. Must be >= 1.
    **kwargs
        Any other :class:`skorch.NeuralNetClassifier` parameter or prefixed
        parameter. Defaults added here: ``optimizer__momentum=0.9``,
        ``optimizer__weight_decay=5e-4``, ``iterator_train__shuffle=True``.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels, in the order of the logits' columns: the sorted labels of
        ``classes`` when given, else those of ``y`` seen in fit (sorted), or for
        soft labels ``np.arange(n_classes)``. After
        :meth:`initialize` without a fit: ``classes`` (sorted) when given, else
        ``np.arange(module__n_classes)``, the column indices.
    input_shape_ : tuple
        Shape of one input sample seen in fit (after :meth:`initialize` without a
        fit: ``(module__in_channels, *module__image_size)`` for a ConvNet; unset for
        other modules, whose first batch is not checked).
    n_features_in_ : int
        Size of the second axis of X (channels for images).
    module_ : torch.nn.Module
        The trained network.
    history_ : skorch.History

    Notes
    -----
    **Checkpoints.** The file holds the module, criterion and optimizer
    ``state_dict()``, the state of LR-scheduler callbacks, the epoch count, the
    history, and the states of every random stream of the fit (``random_state``'s
    generator, the shuffling and mixup generators). It is written atomically (a
    temporary file in the same directory, then :func:`os.replace`), by
    :func:`torch.save` of tensors and plain values, and read with
    ``torch.load(weights_only=True)``: loading never runs pickled code. A run is
    identified by a fingerprint of the data (a SHA-256 digest), of every parameter but
    ``verbose``, ``checkpoint_dir`` and ``checkpoint_every``, and of the device type,
    stored in the file and naming it: ``classifier-<digest>.pt``, the first 16 hex
    digits of the SHA-256 of the fingerprint. So runs with other data or parameters
    never overwrite each other, and each ``GridSearchCV`` candidate (each fold) resumes
    its own checkpoint. A ``classifier.pt`` written before this naming is still resumed
    when its fingerprint matches (it is never written again). ``fit`` raises
    ``ValueError`` naming the file when this run's file is damaged, of a newer format,
    or holds another run's fingerprint (renamed by hand); delete it to start over.
    With the same ``random_state`` a resumed fit ends with the same weights as an
    uninterrupted one (bit for bit on CPU). Only ``fit`` from scratch checkpoints and
    resumes: ``partial_fit`` and ``warm_start`` continuations neither read nor write.
    Callbacks other than LR schedulers restart from the restored history (an
    ``EarlyStopping`` patience count restarts at 0).

    A ``fit`` holds an advisory lock of its run (``classifier-<digest>.lock``, via the
    ``filelock`` package; released by the operating system when the process dies) from
    start to end: a second ``fit`` of the same run while the first is alive, in this
    process or another (in a parallel ``GridSearchCV``, candidates that differ only in
    a calibrator's parameters train the same network on each fold), waits for the
    first to end and then resumes from the checkpoint it left (a finished run is read,
    not retrained), and the temporary files of interrupted writes are removed only by a
    later ``fit`` of their own run, under its lock.

    **Inference** (``predict_proba``, ``decision_function``, ``predict``) keeps the
    inputs on the host and moves one batch of ``batch_size`` (or
    ``iterator_valid__batch_size``) images to the device at a time, so it needs
    device memory for one batch, whatever the number of images. Training keeps its
    data on the device (it is a distilled set, or small).

    **Out of memory.** A device out-of-memory error in ``fit`` or in inference is
    re-raised as :class:`torch.OutOfMemoryError` whose message names the parameters
    to lower (``batch_size``, and ``module__width`` or ``module__hidden_sizes``), with
    the original error as its ``__cause__``.

    **Without data.** skorch's ``net.initialize(); net.load_params(f_params=...)``
    works when the sizes that ``fit`` would read from the data are parameters:
    the classes (``classes=[...]`` or ``module__n_classes``) and the module's input
    size (``module__in_channels`` and ``module__image_size`` for ConvNet,
    ``module__n_features`` for MLP); see :meth:`initialize`.

    **Torch datasets.** As in skorch, ``fit(dataset, None)`` takes a
    :class:`torch.utils.data.Dataset` of ``(x, y)`` pairs: the classes come from its
    targets (read without loading the inputs from a skorch ``Dataset``, a
    ``TensorDataset``, a ``Subset`` of them, or a dataset with a ``targets``
    attribute; otherwise by one pass over the items, unless ``classes`` is given),
    and the input shape from its first item. A ``TensorDataset`` is sliced like an
    array; any other dataset is read item by item. Items whose ``y`` is a vector are
    soft labels (below): all of them are read and checked before training, also when
    ``classes`` is given.

    **Soft labels.** A 2-D ``y`` of shape ``(n_samples, n_classes)`` holds one row of
    class probabilities per sample (label-smoothed, mixed, an ensemble's or a teacher's
    probabilities, labels learned by a distillation method). Each row must be finite,
    non-negative and sum to 1 within 1e-4; anything else is a ``ValueError`` naming
    the row (rows are never renormalised silently), as is a width other than the
    number of ``classes``. The network is trained with the soft cross-entropy
    ``-sum_k y_k log p_k`` (:class:`torch.nn.CrossEntropyLoss` takes probabilities);
    ``label_smoothing`` smooths the rows as torch does (``(1 - eps) y + eps / K``),
    ``focal_gamma`` weighs each term by ``(1 - p_k) ** gamma``, and ``mixup_alpha``
    mixes the losses of the two rows, which equals the loss of the mixed rows (both
    losses are linear in the target). One-hot rows give the network the class
    indices give (to float32 rounding). The columns of ``y`` follow ``classes`` *in
    the order given* when it is set (``classes_`` is still sorted: the columns are
    reordered to match), else ``classes_`` of the fit being continued, else they are
    the classes ``0 .. k-1`` (``classes_ = np.arange(k)``). ``predict`` returns labels
    from ``classes_``. A single column ``(n_samples, 1)`` is a column of class labels,
    raveled with scikit-learn's ``DataConversionWarning``. The checkpoint fingerprint
    digests the rows themselves, so other probabilities are another run.

    **Pickles** of a net fitted on a GPU load on a CPU-only machine: every tensor,
    including those that callbacks hold (skorch pickles an LR scheduler's optimizer
    with the callbacks), goes through torch's ``map_location``, and ``device="auto"``
    resolves to the CPU there.

    Examples
    --------
    >>> from ddcal_sklearn import ConvNetClassifier, load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> clf = ConvNetClassifier(max_epochs=5, module__width=16, random_state=0)
    >>> clf.fit(X[:200], y[:200]).predict(X[200:205]).shape
    (5,)
    >>> clf.decision_function(X[200:205]).shape  # logits
    (5, 10)

    skorch's save/initialize/load round trip needs no data when the sizes are given:

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "params.pt")
    >>> clf.save_params(f_params=path)
    >>> loaded = ConvNetClassifier(module__width=16, module__in_channels=1, module__image_size=8,
    ...                            module__n_classes=10).initialize()
    >>> loaded.load_params(f_params=path)
    >>> bool((loaded.predict(X[200:205]) == clf.predict(X[200:205])).all())
    True

    Calibration baselines are parameters like any other:

    >>> smooth = ConvNetClassifier(max_epochs=5, module__width=16, label_smoothing=0.1,
    ...                            mixup_alpha=0.2, random_state=0).fit(X[:200], y[:200])
    >>> smooth.predict_proba(X[200:205]).shape
    (5, 10)

    Soft labels, one row of class probabilities per image, train the same network:

    >>> import numpy as np
    >>> rows = np.full((200, 10), 0.01)
    >>> rows[np.arange(200), y[:200]] = 0.91
    >>> soft = ConvNetClassifier(max_epochs=5, module__width=16, random_state=0).fit(X[:200], rows)
    >>> soft.classes_.tolist() == list(range(10)), soft.predict(X[200:205]).shape
    (True, (5,))
    """

    device = _RequestedDevice()
    #: False: skorch's own per-batch loop (a .item() host sync per batch), as the reference in tests
    _fast_loop = True

    # Validated at the start of fit, scikit-learn style (skorch's own _validate_params
    # checks prefixed names, so sklearn's is called under another name).
    _parameter_constraints = {
        "augment": [None, StrOptions({"dsa", "dc"}), HasMethods(["sample", "apply"])],
        "mixup_alpha": [Interval(numbers.Real, 0, None, closed="left")],
        "label_smoothing": [Interval(numbers.Real, 0, 1, closed="both")],
        "focal_gamma": [Interval(numbers.Real, 0, None, closed="left")],
        "checkpoint_dir": [str, os.PathLike, None],
        "checkpoint_every": [Interval(numbers.Integral, 1, None, closed="left")],
        "callbacks": [list, StrOptions({"disable"}), None],
    }

    def __init__(self, module=ConvNet, *, criterion=torch.nn.CrossEntropyLoss,
                 optimizer=torch.optim.SGD, lr=0.01, max_epochs=300, batch_size=256,
                 train_split=None, iterator_train=DeviceBatchIterator,
                 iterator_valid=DeviceBatchIterator, device="auto", random_state=None,
                 verbose=0, augment=None, mixup_alpha=0.0, label_smoothing=0.0, focal_gamma=0.0,
                 checkpoint_dir=None, checkpoint_every=10, **kwargs):
        kwargs.setdefault("optimizer__momentum", 0.9)
        kwargs.setdefault("optimizer__weight_decay", 5e-4)
        kwargs.setdefault("iterator_train__shuffle", True)
        super().__init__(
            module, criterion=criterion, optimizer=optimizer, lr=lr, max_epochs=max_epochs,
            batch_size=batch_size, train_split=train_split, iterator_train=iterator_train,
            iterator_valid=iterator_valid, device=device, verbose=verbose, **kwargs,
        )
        self.random_state = random_state
        self.augment = augment
        self.mixup_alpha = mixup_alpha
        self.label_smoothing = label_smoothing
        self.focal_gamma = focal_gamma
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every

    @property
    def _default_callbacks(self):
        return [
            ("epoch_timer", EpochTimer()),
            ("train_loss", PassthroughScoring(name="train_loss", on_train=True)),
            ("valid_loss", PassthroughScoring(name="valid_loss")),
            ("valid_acc", EpochScoring(_index_accuracy, name="valid_acc", lower_is_better=False)),
            ("lr_scheduler", LRStepAtFraction()),
            ("print_log", PrintLog()),
        ]

    # --- scikit-learn plumbing -------------------------------------------------

    def _get_param_names(self):
        # skorch lists every attribute without a trailing underscore; private state is not a parameter.
        return [name for name in super()._get_param_names() if not name.startswith("_")]

    def get_params(self, deep=True, **kwargs):
        params = super().get_params(deep=deep, **kwargs)
        params["device"] = self.__dict__.get("device", "auto")  # as requested, not resolved
        return params

    def set_params(self, **kwargs):
        # skorch rebuilds callbacks_ from the *previous* callbacks list before it stores a new
        # one, so a bad value (callbacks=-inf) is stored silently and then breaks every later
        # set_params, even set_params(callbacks=None). Before initialisation nothing needs
        # callbacks_ unless a callbacks__<name> key is set: store the list, and let fit check it
        # (the "callbacks" constraint) and build the callbacks, as scikit-learn recommends.
        if "callbacks" in kwargs and not self.initialized_ \
                and not any(key.startswith("callbacks__") for key in kwargs):
            callbacks = kwargs.pop("callbacks")
            if kwargs:
                super().set_params(**kwargs)
            vars(self)["callbacks"] = callbacks
            return self
        return super().set_params(**kwargs)

    def __getstate__(self):
        # skorch sends module_/criterion_/optimizer_ through torch's map_location-aware loader,
        # but an LR scheduler in callbacks_ holds the optimizer too, which plain pickle would
        # write with its CUDA momentum buffers: a GPU-fitted net would not load without CUDA
        # (skorch issue #1096). Sending callbacks_ the same way also keeps the scheduler's
        # optimizer the same object as optimizer_ after loading.
        dependent = self.__dict__.get("cuda_dependent_attributes_")
        self.cuda_dependent_attributes_ = [*self.cuda_dependent_attributes_, "callbacks_"]
        try:
            state = super().__getstate__()
        finally:
            if dependent is None:
                del self.__dict__["cuda_dependent_attributes_"]
            else:
                self.cuda_dependent_attributes_ = dependent
        if dependent is None:
            state.pop("cuda_dependent_attributes_", None)
        else:
            state["cuda_dependent_attributes_"] = dependent
        for name in _TRANSIENT:
            state.pop(name, None)
        # skorch maps tensors with the concrete device; the request ("auto") comes back in __setstate__.
        state["device_requested_"] = state.get("device", "auto")
        state["device"] = self.device
        return state

    def __setstate__(self, state):
        requested = state.pop("device_requested_", state["device"])
        with warnings.catch_warnings():
            if requested == "auto":  # "auto" on a CPU-only machine is not a fallback worth a warning
                warnings.filterwarnings("ignore", message="Setting self.device")
                warnings.filterwarnings("ignore", message="Requested to load data to CUDA")
            super().__setstate__(state)
        if requested == "auto":
            self.__dict__["device"] = "auto"

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.non_deterministic = self.random_state is None
        return tags

    def _validate_inputs(self, X, y=None, *, reset, **y_params):
        """Validate X (and y) the scikit-learn way; images stay images.

        ``y_params`` go to ``validate_data`` (``multi_output=True`` for soft labels).
        """
        with naming_the_input(X, y, dtype=np.float32, allow_nd=True):
            if y is None:
                X = validate_data(self, X, reset=reset, dtype=np.float32, allow_nd=True)
            else:
                X, y = validate_data(self, X, y, reset=reset, dtype=np.float32, allow_nd=True, **y_params)
        X = np.require(X, requirements=["C", "W"])  # read-only and strided inputs become plain arrays
        if reset:
            self.input_shape_ = tuple(X.shape[1:])
            self._check_module_input(X.shape)
        elif "input_shape_" in self.__dict__ and tuple(X.shape[1:]) != self.input_shape_:
            raise ValueError(
                f"X has samples of shape {tuple(X.shape[1:])}, but {type(self).__name__} "
                f"was fitted on samples of shape {self.input_shape_}."
            )
        return X if y is None else (X, y)

    def _check_module_input(self, shape, what="X has shape"):
        accepts = self._module_init_args()
        if "image_size" in accepts and len(shape) != 4:
            raise ValueError(
                f"{what} {tuple(shape)}, but module={getattr(self.module, '__name__', self.module)!r} "
                "needs images of shape (n_samples, channels, height, width). Reshape X "
                "(for 8x8 digits: X.reshape(-1, 1, 8, 8)) or use module=MLP for flat features."
            )

    def _module_class(self):
        """``module`` as a class (a name resolved through ``nn.NETWORKS``), or the instance as given."""
        return resolve_network(self.module, param="module")[0]

    def _module_init_args(self):
        module = self._module_class()
        if not inspect.isclass(module):
            return set()
        return set(inspect.signature(getattr(module, "func", module)).parameters)

    def _encode_targets(self, y):
        with naming_the_input(None, y, culprit="y"):
            check_classification_targets(y)
        encoder = LabelEncoder().fit(y if self.classes is None else np.asarray(self.classes))
        unknown = np.setdiff1d(np.unique(y), encoder.classes_)
        if unknown.size:
            raise ValueError(f"y contains labels {unknown.tolist()} that are not in classes={self.classes!r}.")
        if len(encoder.classes_) < 2:
            raise ValueError(
                f"y has only one class ({encoder.classes_[0]!r}); a classifier needs at least 2 classes."
            )
        self._label_encoder = encoder
        return encoder.transform(y).astype(np.int64)

    # --- skorch hooks ------------------------------------------------------------

    @property
    def classes_(self):
        # The labels in the order of the encoding that training used (skorch returns the
        # ``classes`` parameter as given, which disagrees with the encoding when it is unsorted).
        encoder = self.__dict__.get("_label_encoder")
        if encoder is not None:
            return encoder.classes_
        return super().classes_

    def get_params_for(self, prefix):
        params = super().get_params_for(prefix)
        if prefix == "module":
            params = resolve_network(self.module, params, param="module")[1]  # a name's presets
            encoder = self.__dict__.get("_label_encoder")
            n_classes = None if encoder is None else len(encoder.classes_)
            shape = self.__dict__.get("input_shape_")
            if shape is not None and n_classes is not None:
                params = network_kwargs(self._module_class(), shape, n_classes, params)
            elif n_classes is not None and "n_classes" in self._module_init_args():
                params.setdefault("n_classes", n_classes)
        return params

    def initialize(self):
        """Initialise the module, criterion, optimizer, callbacks and history (skorch).

        ``fit`` calls it with the sizes its data determines. Called directly (skorch's
        ``net.initialize(); net.load_params(f_params=...)``), it takes them from the
        parameters instead, where the data of an earlier fit (if any) does not give them:

        - the classes: ``classes`` (``classes_`` is then its sorted labels) or, without
          it, ``module__n_classes`` (``classes_`` is then ``np.arange(module__n_classes)``,
          the logits' column indices);
        - the input size, for a module class whose constructor takes it:
          ``module__in_channels`` and ``module__image_size`` for ConvNet (they also set
          ``input_shape_`` and ``n_features_in_``, against which ``predict`` checks
          its inputs), ``module__n_features`` for MLP.

        Weights are drawn from ``random_state`` exactly as ``fit`` draws them.

        Returns
        -------
        self : ConvNetClassifier

        Raises
        ------
        ValueError
            If a size the module needs is neither a parameter nor known from an earlier fit.
        """
        if not self.__dict__.get("_sized_by_data"):  # called by the user, not by fit
            validate_parameter_constraints(
                self._parameter_constraints, self.get_params(deep=False), caller_name=type(self).__name__
            )
            self._rng = check_generator(self.random_state)
            self._sizes_from_parameters()
        return super().initialize()

    @contextlib.contextmanager
    def _sizing_by_data(self):
        """While fit initialises: sizes come from the data that ``_prepare_fit`` validated."""
        self._sized_by_data = True
        try:
            yield
        finally:
            self.__dict__.pop("_sized_by_data", None)

    def _sizes_from_parameters(self):
        """Classes and input shape for :meth:`initialize` without data (see its docstring)."""
        module_params = NeuralNetClassifier.get_params_for(self, "module")
        accepts = self._module_init_args()
        name = type(self).__name__
        if "in_channels" in module_params and "image_size" in module_params:
            shape = (int(module_params["in_channels"]), *_side_pair(module_params["image_size"]))
            for attribute in ("input_shape_", "n_features_in_", "feature_names_in_"):
                self.__dict__.pop(attribute, None)
            self.input_shape_ = shape
            self.n_features_in_ = shape[0]
        missing = [f"module__{size}" for size in ("in_channels", "image_size", "n_features")
                   if size in accepts and size not in module_params and "input_shape_" not in self.__dict__]
        encoder = self.__dict__.get("_label_encoder")
        n_classes = module_params.get("n_classes")
        if self.classes is not None and len(self.classes):
            check_label_types(list(self.classes), param="classes")
            labels = np.unique(np.asarray(self.classes))
            if len(labels) < 2:
                raise ValueError(f"classes={self.classes!r} holds fewer than 2 labels; a classifier needs at least 2.")
            if n_classes is not None and int(n_classes) != len(labels):
                raise ValueError(
                    f"classes={self.classes!r} has {len(labels)} labels but module__n_classes={n_classes!r}: "
                    "give one of them, or make them agree.")
            encoder = LabelEncoder().fit(labels)
        elif n_classes is not None and (encoder is None or len(encoder.classes_) != int(n_classes)):
            encoder = LabelEncoder().fit(np.arange(int(n_classes)))
        if encoder is None and "n_classes" in accepts:
            missing.append("classes (or module__n_classes)")
        if missing:
            digits = {"in_channels": 1, "image_size": 8, "n_features": 64, "n_classes": 10}
            example = ", ".join(f"module__{size}={value}" for size, value in digits.items() if size in accepts)
            raise ValueError(
                f"{name}.initialize() was called before fit, so the sizes that fit reads from the data "
                f"must be parameters, but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set. "
                f"Pass them (for 8x8 digits: {name}({example or 'classes=range(10)'})), or call fit instead."
            )
        if encoder is not None:
            self._label_encoder = encoder
            self.classes_inferred_ = encoder.classes_

    def initialize_module(self):
        # Initialise weights from random_state inside a forked RNG: torch's global stream is untouched.
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(draw_seed(self._rng))
            if not isinstance(self.module, str):
                return super().initialize_module()
            self.module_ = self.initialized_instance(self._module_class(), self.get_params_for("module"))
            return self

    def get_dataset(self, X, y=None):
        if is_dataset(X):
            return X
        device = self.device
        X = torch.as_tensor(X, device=device)
        y = None if y is None else torch.as_tensor(y, device=device)
        return DeviceTensorDataset(X, y)

    def initialize_criterion(self):
        criterion, kwargs = self._criterion_and_kwargs()
        self.criterion_ = self.initialized_instance(criterion, kwargs)
        return self

    def _criterion_and_kwargs(self):
        """The criterion class and arguments that focal_gamma and label_smoothing ask for."""
        criterion, kwargs = self.criterion, self.get_params_for("criterion")
        name = getattr(criterion, "__name__", type(criterion).__name__)
        if self.focal_gamma > 0:
            base = criterion if inspect.isclass(criterion) else type(criterion)
            if base not in (torch.nn.CrossEntropyLoss, FocalLoss):
                raise ValueError(
                    f"focal_gamma={self.focal_gamma!r} trains with FocalLoss, which replaces the "
                    f"criterion, but criterion={name} was given: keep the default criterion "
                    "(torch.nn.CrossEntropyLoss) or set focal_gamma=0."
                )
            unknown = sorted(set(kwargs) - {"label_smoothing", "reduction"})
            if unknown:
                raise ValueError(
                    f"focal_gamma={self.focal_gamma!r} trains with FocalLoss, which does not take "
                    f"{', '.join('criterion__' + key for key in unknown)}; it takes "
                    "criterion__reduction (label smoothing: the label_smoothing parameter)."
                )
            criterion, kwargs = FocalLoss, {**kwargs, "gamma": self.focal_gamma}
        if self.label_smoothing > 0:
            if "label_smoothing" in kwargs:
                raise ValueError(
                    f"label_smoothing={self.label_smoothing!r} and criterion__label_smoothing="
                    f"{kwargs['label_smoothing']!r} were both given: set only label_smoothing."
                )
            if not _accepts_argument(criterion, "label_smoothing"):
                raise ValueError(
                    f"label_smoothing={self.label_smoothing!r} is passed to the criterion's "
                    f"label_smoothing argument, but criterion={name} takes none: use "
                    "torch.nn.CrossEntropyLoss (the default) or FocalLoss, or set label_smoothing=0."
                )
            kwargs = {**kwargs, "label_smoothing": self.label_smoothing}
        return criterion, kwargs

    def _get_predict_nonlinearity(self):
        # skorch's "auto" applies softmax only for CrossEntropyLoss; FocalLoss also takes logits.
        if self.predict_nonlinearity == "auto" and isinstance(getattr(self, "criterion_", None), FocalLoss):
            return functools.partial(torch.softmax, dim=-1)
        return super()._get_predict_nonlinearity()

    def _augmented(self, Xi):
        """A training batch with this batch's own augmentation draw (the batch as it is without one)."""
        augment = self.__dict__.get("_augment")
        if augment is None:
            return Xi
        if isinstance(Xi, Mapping):
            raise TypeError(f"augment={self.augment!r} transforms image tensors; got a dict of inputs.")
        Xi = to_tensor(Xi, device=self.device)
        return augment.apply(Xi, augment.sample(len(Xi), self._augment_generator, device=Xi.device))

    def train_step_single(self, batch, **fit_params):
        if not self.mixup_alpha > 0:
            if self.__dict__.get("_augment") is None:
                return super().train_step_single(batch, **fit_params)
            self._set_training(True)  # skorch's step, on the augmented batch
            Xi, yi = unpack_data(batch)
            Xi = self._augmented(Xi)
            y_pred = self.infer(Xi, **fit_params)
            loss = self.get_loss(y_pred, yi, X=Xi, training=True)
            loss.backward()
            return {"loss": loss, "y_pred": y_pred}
        self._set_training(True)
        Xi, yi = unpack_data(batch)
        if isinstance(Xi, Mapping):
            raise TypeError(f"mixup_alpha={self.mixup_alpha!r} mixes tensor inputs; got a dict of inputs.")
        Xi, yi = self._augmented(to_tensor(Xi, device=self.device)), to_tensor(yi, device=self.device)
        # lam is one scalar per batch drawn on the host from the fit's own numpy generator:
        # it reaches the kernels as an argument, so nothing waits for the device (torch's
        # Beta sampler takes no generator, i.e. would use the global stream). The
        # permutation is drawn on the device from the fit's device generator.
        lam = float(self._mixup_rng.beta(self.mixup_alpha, self.mixup_alpha))
        perm = torch.randperm(len(Xi), generator=self._mixup_generator, device=Xi.device)
        X_mixed = Xi * lam + Xi[perm] * (1.0 - lam)
        y_pred = self.infer(X_mixed, **fit_params)
        loss = (lam * self.get_loss(y_pred, yi, X=X_mixed, training=True)
                + (1.0 - lam) * self.get_loss(y_pred, yi[perm], X=X_mixed, training=True))
        loss.backward()
        return {"loss": loss, "y_pred": y_pred}

    def get_iterator(self, dataset, training=False):
        if not training:
            return super().get_iterator(dataset, training=False)
        # Called once per fit loop: the fit's random streams start here, in a fixed order
        # (shuffling, mixup, augmentation), so turning mixup or augmentation on leaves
        # initialisation and shuffling as they were.
        iterator = self.iterator_train
        self._shuffle_generator = None
        if iterator in (DeviceBatchIterator, torch.utils.data.DataLoader) \
                and "iterator_train__generator" not in self.__dict__:
            # Shuffling from random_state, on the data's device, without a host sync.
            generator = torch.Generator(device=self.device if iterator is DeviceBatchIterator else "cpu")
            generator.manual_seed(draw_seed(self._rng))
            kwargs = self.get_params_for("iterator_train")
            kwargs.setdefault("batch_size", self.batch_size)
            kwargs["generator"] = generator
            self._shuffle_generator = generator
            result = iterator(dataset, **kwargs)
        else:
            result = super().get_iterator(dataset, training=True)
        self._mixup_rng = self._mixup_generator = None
        if self.mixup_alpha > 0:
            self._mixup_rng = np.random.default_rng(draw_seed(self._rng))
            self._mixup_generator = torch.Generator(device=self.device)
            self._mixup_generator.manual_seed(draw_seed(self._rng))
        self._augment = resolve_augment(self.augment)
        self._augment_generator = None
        if self._augment is not None:
            # a CPU generator: an augmentation's discrete choices reach the host without a device sync
            self._augment_generator = torch.Generator().manual_seed(draw_seed(self._rng))
        self._restore_random_streams()
        return result

    def forward_iter(self, X, training=False, device="cpu"):
        # Inference keeps X on the host: DeviceBatchIterator yields host views, and infer()
        # moves one batch at a time to the device, so predicting 50,000 CIFAR-10 images
        # needs device memory for one batch, not for the whole set. (fit keeps its data
        # on the device and passes it here as a dataset, which is used as it is.)
        dataset = X if is_dataset(X) else DeviceTensorDataset(torch.as_tensor(X))
        iterator = self.get_iterator(dataset, training=training)
        n_rows = n_bad = 0  # n_bad: a device tensor summed over batches, read once at the end
        with self._out_of_memory_advice("inference"):
            for batch in iterator:
                output = self.evaluation_step(batch, training=training)
                first = output[0] if isinstance(output, tuple) else output
                if torch.is_tensor(first) and first.is_floating_point() and first.ndim:
                    n_rows += len(first)
                    n_bad = n_bad + (~torch.isfinite(first.reshape(len(first), -1))).any(dim=1).sum()
                yield to_device(output, device=device)
        if int(n_bad):  # one host sync per call, after the last batch
            raise self._non_finite_outputs_error(X, int(n_bad), n_rows)

    def fit_loop(self, X, y=None, epochs=None, **fit_params):
        run = self.__dict__.get("_checkpoint_run")
        if epochs is None and run is not None and run.state is not None:
            epochs = max(self.max_epochs - run.state["epoch"], 0)  # only what the checkpoint lacks
        loop = _TrainingLoop(self) if self._fast_loop and _TrainingLoop.applies_to(self) else None
        self._training_loop = loop
        failed = True
        try:
            super().fit_loop(X, y, epochs=epochs, **fit_params)
            failed = False
        finally:
            self.__dict__.pop("_training_loop", None)
            if loop is not None:
                try:  # the history holds floats whatever happens
                    loop.resolve()
                except Exception:
                    if not failed:
                        raise  # else the error that stopped the fit is the one to see
        return self

    def run_single_epoch(self, iterator, training, prefix, step_fn, **fit_params):
        loop = self.__dict__.get("_training_loop")
        if loop is None or iterator is None:
            return super().run_single_epoch(iterator, training, prefix, step_fn, **fit_params)
        # skorch's loop (net.notify per batch, history.record_batch of loss.item()), calling
        # only the batch hooks that do something and recording the loss without a host sync
        begin, end = loop.batch_hooks[training]
        loss_key, size_key = prefix + "_loss", prefix + "_batch_size"
        batch_count = 0
        for batch in iterator:
            list.__getitem__(self.history_, -1)["batches"].append({})  # skorch's net.on_batch_begin
            for hook in begin:
                hook(self, batch=batch, training=training)
            step = step_fn(batch, **fit_params)
            row = list.__getitem__(self.history_, -1)["batches"][-1]
            loop.record(row, loss_key, step["loss"])
            Xi = batch[0] if isinstance(batch, (tuple, list)) else batch
            row[size_key] = len(Xi) if isinstance(Xi, torch.Tensor) else get_len(Xi)
            for hook in end:
                hook(self, batch=batch, training=training, **step)
            batch_count += 1
        list.__getitem__(self.history_, -1)[prefix + "_batch_count"] = batch_count  # history.record

    def train_step(self, batch, **fit_params):
        loop = self.__dict__.get("_training_loop")
        if loop is None or not loop.plain_step:
            return super().train_step(batch, **fit_params)
        # skorch's step without its closure and step accumulator: these optimizers run the
        # closure first, so the work and its order are the same
        self._zero_grad_optimizer()
        with torch.enable_grad():  # as the optimizer runs skorch's closure
            step = self.train_step_single(batch, **fit_params)
            if loop.grad_hooks:
                self.notify("on_grad_computed", named_parameters=TeeGenerator(self.get_all_learnable_params()),
                            batch=batch, training=True)
        self._step_optimizer(None)
        return step

    def _set_training(self, training=True):
        loop = self.__dict__.get("_training_loop")
        if loop is not None and loop.in_mode(self, training):
            return  # train(training) would change nothing
        super()._set_training(training)

    def _read_losses(self):
        """Turn the batch losses still on the device into floats (a checkpoint is about to read the history)."""
        loop = self.__dict__.get("_training_loop")
        if loop is not None:
            loop.resolve()

    def notify(self, method_name, **cb_kwargs):
        loop = self.__dict__.get("_training_loop")
        if loop is not None and method_name in ("on_epoch_begin", "on_epoch_end"):
            loop.notify(self, method_name, cb_kwargs)
        else:
            super().notify(method_name, **cb_kwargs)
        run = self.__dict__.get("_checkpoint_run")
        if run is None:
            return
        if method_name == "on_train_begin" and run.state is not None:
            # after the callbacks' own on_train_begin, which builds the LR schedulers afresh
            self._restore_callbacks(run.state["callbacks"])
        elif method_name == "on_epoch_end":
            epoch = len(self.history)
            if epoch % self.checkpoint_every == 0 or epoch >= self.max_epochs:
                self._save_checkpoint(run.path, run.fingerprint)

    # --- reliability helpers ------------------------------------------------------

    def _non_finite_outputs_error(self, X, n_bad, n_rows):
        """The ValueError for NaN or infinite network outputs: names the scale of X, or the weights.

        Finite but huge inputs (1e20 where the network was trained on standardised ones) overflow
        float32 inside the network (an instance norm squares them), so its logits come out NaN or
        infinite. No later step can recover the answer (rescaling X would change what a network with
        biases computes), so inference refuses rather than returning NaN probabilities, or class
        ``classes_[0]`` from an argmax over NaN.
        """
        what = (f"{type(self).__name__}'s network returned NaN or infinite outputs for {n_bad} of "
                f"{n_rows} rows of X")
        weights = getattr(self, "module_", None)
        if weights is not None and not all(bool(torch.isfinite(p).all()) for p in weights.parameters()):
            return ValueError(f"{what}: the network's weights are not finite (a diverged or damaged "
                              "network). Fit it again (with a lower lr) or load sound parameters.")
        values = X.X if isinstance(X, DeviceTensorDataset) else X
        if isinstance(values, (np.ndarray, torch.Tensor)) and len(values) \
                and torch.as_tensor(values).is_floating_point():
            values = torch.as_tensor(values)
            scale = float(torch.maximum(values.max().abs(), values.min().abs()))
            return ValueError(
                f"{what}: the network's outputs are not finite for inputs of magnitude up to {scale:.3g}: "
                "X looks unnormalised (float32 overflows inside the network). Scale X as the training "
                "data were scaled (e.g. standardised, as ddcal_sklearn.datasets does); no probabilities "
                "are returned rather than NaN ones.")
        return ValueError(f"{what}: its inputs are probably far larger than the training data (X looks "
                          "unnormalised). Scale them as the training data were scaled.")

    @contextlib.contextmanager
    def _out_of_memory_advice(self, during):
        """Re-raise a device out-of-memory error with the parameters that would avoid it."""
        try:
            yield
        except _OutOfMemoryAdvice:
            raise
        except torch.OutOfMemoryError as err:
            knobs = [f"batch_size (now {self.batch_size})"]
            if during == "inference" and "iterator_valid__batch_size" in self.__dict__:
                knobs = [f"iterator_valid__batch_size (now {self.iterator_valid__batch_size})"]
            accepted = self._module_init_args()
            for size in ("width", "hidden_sizes"):
                if size in accepted:
                    default = inspect.signature(self._module_class()).parameters[size].default
                    knobs.append(f"module__{size} (now {self.__dict__.get('module__' + size, default)!r})")
                    break
            raise _OutOfMemoryAdvice(
                f"{type(self).__name__} ran out of memory on device {self.device} during {during}: "
                f"lower {' or '.join(knobs)}. {str(err).splitlines()[0] if str(err) else ''}".rstrip()
            ) from err

    def _fingerprint(self, X, y_encoded):
        """Everything that determines the trained network, as JSON-normalised data."""
        return run_fingerprint(self.get_params(deep=False), X, y_encoded, self._label_encoder.classes_,
                               resolve_device(self.__dict__.get("device", "auto")),
                               format_version=CHECKPOINT_FORMAT_VERSION)

    def _read_checkpoint(self, files):
        """This run's checkpoint (``files``: its locked :class:`RunCheckpoint`); None when there is none."""
        return files.read(
            kind=_CHECKPOINT_KIND, format_version=CHECKPOINT_FORMAT_VERSION, expected=_CHECKPOINT_KEYS,
            check=lambda state: [] if 0 <= state["epoch"] <= self.max_epochs else ["epoch"])

    def _save_checkpoint(self, path, fingerprint):
        self._read_losses()
        generators = {name: generator.get_state() for name, generator in
                      (("shuffle", getattr(self, "_shuffle_generator", None)),
                       ("mixup", getattr(self, "_mixup_generator", None)),
                       ("augment", getattr(self, "_augment_generator", None))) if generator is not None}
        state = {
            "fingerprint": json.dumps(fingerprint, sort_keys=True),
            "epoch": len(self.history),
            "modules": {name: getattr(self, name + "_").state_dict() for name in self._modules},
            "criteria": {name: getattr(self, name + "_").state_dict() for name in self._criteria},
            "optimizers": {name: getattr(self, name + "_").state_dict() for name in self._optimizers},
            "callbacks": self._callback_states(),
            "history": dumps_with_arrays(list(self.history)),
            "random_state": _rng_state(self._rng),
            "mixup_random_state": _rng_state(getattr(self, "_mixup_rng", None)),
            "generators": generators,
        }
        save_checkpoint(path, state, kind=_CHECKPOINT_KIND, format_version=CHECKPOINT_FORMAT_VERSION)

    def _callback_states(self):
        """The plain part of each LR scheduler's state_dict (the rest is rebuilt from parameters)."""
        states = {}
        for name, callback in self.callbacks_:
            scheduler = getattr(callback, "lr_scheduler_", None)
            if hasattr(scheduler, "state_dict"):
                state = {key: _plain(value) for key, value in scheduler.state_dict().items()}
                states[name] = {key: value for key, value in state.items() if value is not _NOT_PLAIN}
        return states

    def _restore_callbacks(self, states):
        for name, callback in self.callbacks_:
            scheduler = getattr(callback, "lr_scheduler_", None)
            if name in states and hasattr(scheduler, "load_state_dict"):
                scheduler.load_state_dict({**scheduler.state_dict(), **states[name]})

    def _restore_training_state(self, state):
        """Weights, optimizer and history from a checkpoint (the random streams come later)."""
        for group, names in (("modules", self._modules), ("criteria", self._criteria),
                             ("optimizers", self._optimizers)):
            for name in names:
                getattr(self, name + "_").load_state_dict(state[group][name])
        self.history_ = History(loads_with_arrays(state["history"]))  # read as written: dumps_with_arrays

    def _restore_random_streams(self):
        run = self.__dict__.get("_checkpoint_run")
        if run is None or run.state is None or run.streams_restored:
            return
        run.streams_restored = True
        saved = run.state["generators"]
        for name, generator in (("shuffle", self._shuffle_generator), ("mixup", self._mixup_generator),
                                ("augment", self._augment_generator)):
            if generator is not None:
                generator.set_state(saved[name].cpu())
        if self._mixup_rng is not None:
            self._mixup_rng.bit_generator.state = loads_with_arrays(run.state["mixup_random_state"])
        # last: the streams above were seeded from _rng, as in the interrupted fit
        self._rng.bit_generator.state = loads_with_arrays(run.state["random_state"])

    # --- public API ----------------------------------------------------------------

    def fit(self, X, y, **fit_params):
        """Train the network from scratch (or continue when ``warm_start=True``).

        With ``checkpoint_dir`` set, a fit from scratch resumes from the checkpoint of
        an earlier, interrupted fit with the same data and parameters, and writes its
        own every ``checkpoint_every`` epochs (see the class Notes).

        Parameters
        ----------
        X : array-like of shape (n_samples, channels, height, width) or torch Dataset
            Images (or (n_samples, n_features) with ``module=MLP``), or, as in skorch,
            a :class:`torch.utils.data.Dataset` whose items are ``(x, y)`` pairs (then
            ``y=None``; see the class Notes).
        y : array-like of shape (n_samples,) or (n_samples, n_classes), or None
            Class labels of any type, or soft labels (one row of class probabilities
            per sample; see the class Notes); None when ``X`` is a dataset.
        **fit_params
            Passed to skorch (module ``forward`` keyword arguments).

        Returns
        -------
        self : ConvNetClassifier
        """
        keep = self.warm_start and self.initialized_
        if self.checkpoint_dir is not None and not keep and is_dataset(X):
            raise ValueError(
                f"checkpoint_dir={str(self.checkpoint_dir)!r} fingerprints the training arrays, but X is a "
                f"torch Dataset ({type(X).__name__}): pass arrays X, y, or set checkpoint_dir=None.")
        X, y_encoded = self._prepare_fit(X, y, reset=not keep)
        run = None
        with contextlib.ExitStack() as held:  # the run's checkpoint lock, held until training ends
            if self.checkpoint_dir is not None and not keep:
                # this run's own file and lock (a live fit of the same run is waited for); its dead fits'
                # temporary files are removed
                files = held.enter_context(RunCheckpoint(self.checkpoint_dir, _CHECKPOINT_NAME,
                                                         self._fingerprint(X, y_encoded),
                                                         owner=type(self).__name__, verbose=self.verbose))
                run = _CheckpointRun(files, self._read_checkpoint(files))
            with self._out_of_memory_advice("fit"):
                if not keep:
                    with self._sizing_by_data():
                        self.initialize()
                try:
                    self._checkpoint_run = run
                    if run is not None and run.state is not None:
                        self._restore_training_state(run.state)
                    NeuralNetClassifier.partial_fit(self, X, y_encoded, **fit_params)
                finally:
                    self._checkpoint_run = None
        self._check_converged(X)
        return self

    def _check_converged(self, X=None):
        """Refuse a diverged fit: its NaN weights would give NaN probabilities without a word.

        Inputs far beyond a normalised scale are named first: they, not ``lr``, are then the cause.
        """
        losses = self.history[:, "train_loss"] if len(self.history) else []
        if len(losses) and not np.isfinite(losses[-1]):
            if isinstance(X, np.ndarray):
                check_input_scale(X, owner=type(self).__name__)
            raise ValueError(
                f"Training diverged: the training loss of the last epoch is {losses[-1]} with lr={self.lr!r}. "
                "Lower lr (or mixup_alpha / focal_gamma if set), then fit again.")

    def partial_fit(self, X, y=None, classes=None, **fit_params):
        """Train for ``max_epochs`` more epochs without re-initialising the network.

        Parameters
        ----------
        X : array-like of shape (n_samples, channels, height, width) or torch Dataset
        y : array-like of shape (n_samples,) or (n_samples, n_classes), or None
            Class labels or soft labels, as in :meth:`fit`; None when ``X`` is a
            dataset of ``(x, y)`` pairs.
        classes : ignored
            Pass ``classes`` at construction to fix the label set.
        **fit_params
            Passed to skorch.

        Returns
        -------
        self : ConvNetClassifier
        """
        X, y_encoded = self._prepare_fit(X, y, reset=not self.initialized_)
        with self._out_of_memory_advice("fit"):
            if not self.initialized_:
                with self._sizing_by_data():
                    self.initialize()
            return super().partial_fit(X, y_encoded, **fit_params)

    def _prepare_fit(self, X, y, *, reset):
        dataset = is_dataset(X)
        if y is None and not dataset:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None "
                "(only a torch Dataset of (x, y) pairs as X carries its own targets)."
            )
        if dataset and y is not None:
            raise ValueError(
                f"X is a torch Dataset ({type(X).__name__}), whose items carry the targets, but y was "
                f"also given (of type {type(y).__name__}): pass y=None."
            )
        resolve_device(self.__dict__.get("device", "auto"))  # fail before any work
        validate_parameter_constraints(
            self._parameter_constraints, self.get_params(deep=False), caller_name=type(self).__name__
        )
        self._criterion_and_kwargs()  # label_smoothing / focal_gamma against the criterion
        if dataset:
            return self._prepare_dataset_fit(X, reset=reset)
        if is_soft_labels(y):
            return self._prepare_soft_fit(X, y, reset=reset)
        check_label_types(y)  # before NumPy turns [0, "a"] into strings
        if reset:
            self._rng = check_generator(self.random_state)
            X, y = self._validate_inputs(X, y, reset=True)
            y_encoded = self._encode_targets(y)
        else:
            # after initialize() without data, the first data sets what the parameters did not
            X, y = self._validate_inputs(X, y, reset="input_shape_" not in self.__dict__)
            with naming_the_input(None, y, culprit="y"):
                check_classification_targets(y)
            y_encoded = self._encode_more_targets(y)
        self.classes_inferred_ = self._label_encoder.classes_
        return X, y_encoded

    def _prepare_soft_fit(self, X, y, *, reset):
        """``fit(X, y)`` with soft labels ``y`` of shape (n_samples, n_classes): checked, X validated, encoded."""
        y, labels = self._check_soft_targets(y, reset=reset)
        if reset:
            self._rng = check_generator(self.random_state)
        X, _ = self._validate_inputs(X, y, reset=reset or "input_shape_" not in self.__dict__, multi_output=True)
        y_encoded = self._encode_soft_targets(y, labels, reset=reset)
        self.classes_inferred_ = self._label_encoder.classes_
        return X, y_encoded

    def _check_soft_targets(self, y, *, reset):
        """Soft labels checked against the classes their columns follow; and those classes, in column order.

        The columns follow ``classes`` as given when it is set, else ``classes_`` of an
        earlier fit that this one continues, else they are the classes ``0 .. k-1``.
        """
        if self.classes is not None and len(self.classes):
            check_label_types(list(self.classes), param="classes")
            labels = np.asarray(self.classes)
            if len(np.unique(labels)) != len(labels):
                raise ValueError(
                    f"classes={self.classes!r} repeats a label; with soft labels y, classes names the columns "
                    "of y in order, one distinct label per column.")
            return check_soft_labels(y, len(labels), classes_source=f"classes={self.classes!r}"), labels
        if reset or "_label_encoder" not in self.__dict__:
            y = check_soft_labels(y)
            return y, np.arange(y.shape[1])
        labels = self._label_encoder.classes_
        return check_soft_labels(y, len(labels), classes_source=f"classes_={labels.tolist()!r}"), labels

    def _encode_soft_targets(self, y, labels, *, reset):
        """float32 soft labels with their columns in the order of ``classes_`` (which ``labels`` name)."""
        if reset or "_label_encoder" not in self.__dict__:
            self._label_encoder = LabelEncoder().fit(labels)
        elif not np.array_equal(np.sort(labels), self.classes_):
            raise ValueError(
                f"classes={self.classes!r} differs from classes_={self.classes_.tolist()!r} of the first fit, "
                "which this one continues: fit from scratch.")
        columns = self._label_encoder.transform(labels)
        if np.array_equal(columns, np.arange(len(columns))):
            return np.ascontiguousarray(y, dtype=np.float32)
        encoded = np.empty(y.shape, dtype=np.float32)
        encoded[:, columns] = y
        return encoded

    def _encode_more_targets(self, y):
        """Targets of a continued fit, encoded as in the first one (or as ``_encode_targets``)."""
        if "_label_encoder" not in self.__dict__:  # initialize() without classes
            return self._encode_targets(y)
        unknown = np.setdiff1d(np.unique(y), self.classes_)
        if unknown.size:
            raise ValueError(
                f"y contains labels {unknown.tolist()} unseen in the first fit (classes_="
                f"{self.classes_.tolist()!r}): fit from scratch, or pass every label as classes=.")
        return self._label_encoder.transform(y).astype(np.int64)

    def _prepare_dataset_fit(self, dataset, *, reset):
        """``fit(dataset, None)``: input shape from the first item, classes from the targets."""
        name = type(dataset).__name__
        if len(dataset) == 0:
            raise ValueError(f"X is an empty torch Dataset ({name}); it needs at least one (x, y) pair.")
        item = dataset[0]
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ValueError(
                f"X is a torch Dataset ({name}) whose items must be (x, y) pairs, but item 0 is "
                f"a {type(item).__name__}{f' of length {len(item)}' if isinstance(item, (tuple, list)) else ''}.")
        shape = tuple(np.shape(item[0]))
        if len(shape) == 0:
            raise ValueError(f"X is a torch Dataset ({name}) whose inputs are scalars; each x must be an array.")
        if reset or "input_shape_" not in self.__dict__:
            self._check_module_input((len(dataset), *shape),
                                     what=f"The inputs of the dataset {name}, stacked, have shape")
            for attribute in ("n_features_in_", "feature_names_in_"):
                self.__dict__.pop(attribute, None)
            self.input_shape_ = shape
            self.n_features_in_ = shape[0]
        elif shape != self.input_shape_:
            raise ValueError(
                f"The items of the dataset {name} have x of shape {shape}, but {type(self).__name__} "
                f"was fitted on samples of shape {self.input_shape_}.")
        if np.ndim(item[1]) == 1 and len(item[1]) > 1:  # a vector of class probabilities: soft labels
            return self._prepare_soft_dataset_fit(dataset, reset=reset)
        y = None if self.classes is not None and len(self.classes) else self._dataset_targets(dataset)
        if y is not None:
            check_label_types(y)
            with naming_the_input(None, y, culprit="y"):
                check_classification_targets(y)
        if reset:
            self._rng = check_generator(self.random_state)
            if y is None:  # classes given: the labels are checked as the items are read
                self._encode_targets(np.asarray(self.classes))
            else:
                self._encode_targets(y)
        elif y is not None:
            self._encode_more_targets(y)
        self.classes_inferred_ = classes = self._label_encoder.classes_
        first = item[1]
        index_labels = (
            np.issubdtype(classes.dtype, np.integer) and np.array_equal(classes, np.arange(len(classes)))
            and torch.is_tensor(first) and first.dtype == torch.int64
        )
        # targets that are class indices already go as they are (a TensorDataset stays sliceable)
        return (dataset if index_labels else _EncodedTargets(dataset, classes)), None

    def _prepare_soft_dataset_fit(self, dataset, *, reset):
        """``fit(dataset, None)`` with soft labels: all of them read (one pass over a general dataset) and checked."""
        y, labels = self._check_soft_targets(self._dataset_targets(dataset, soft=True), reset=reset)
        if reset:
            self._rng = check_generator(self.random_state)
        self._encode_soft_targets(y, labels, reset=reset)
        self.classes_inferred_ = self._label_encoder.classes_
        columns = self._label_encoder.transform(labels)
        first = dataset[0][1]
        as_is = (np.array_equal(columns, np.arange(len(columns))) and torch.is_tensor(first)
                 and first.dtype == torch.float32)
        # float32 targets in the columns of classes_ go as they are (a TensorDataset stays sliceable)
        return (dataset if as_is else _SoftTargets(dataset, columns)), None

    @staticmethod
    def _dataset_targets(dataset, *, soft=False):
        """The labels of a dataset of (x, y) pairs, read without the inputs where it can.

        ``soft``: the targets are rows of class probabilities (returned 2-D, checked by the caller).
        """
        try:
            _, y = data_from_dataset(dataset)
        except AttributeError:
            y = None
        if y is None:
            y = getattr(dataset, "targets", None)
            if y is None or isinstance(y, (str, bytes)) or len(y) != len(dataset):
                y = [dataset[i][1] for i in range(len(dataset))]  # one pass over the items
                y = [label.item() if isinstance(label, (torch.Tensor, np.ndarray)) and label.ndim == 0
                     else label for label in y]
                if soft:
                    y = [to_numpy(label) if torch.is_tensor(label) else label for label in y]
        if soft:  # np.asarray of ragged rows is check_soft_labels' to report
            return to_numpy(y) if torch.is_tensor(y) else y
        y = to_numpy(y) if torch.is_tensor(y) else np.asarray(y)
        if y.ndim != 1:
            raise ValueError(
                f"The targets of the dataset {type(dataset).__name__} have shape {y.shape}; "
                "a classifier needs one class label per item (not one-hot vectors).")
        return y

    def check_data(self, X, y):
        # classes_inferred_ holds the user's labels (set in _prepare_fit), not the encoded ones.
        pass

    def decision_function(self, X):
        """Logits, one column per class of ``classes_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, channels, height, width)

        Returns
        -------
        logits : ndarray of shape (n_samples, n_classes), float32
            For two classes, scikit-learn's binary convention: the margin
            ``logit_1 - logit_0`` of shape (n_samples,), whose sigmoid is ``predict_proba[:, 1]``.

        Raises
        ------
        ValueError
            If the network's outputs are NaN or infinite for some row (finite inputs far
            larger than the training data overflow float32 inside the network): the message
            names the largest magnitude in X. ``predict_proba`` and ``predict`` refuse the
            same inputs, so no NaN probability or argmax over NaN is ever returned.
        """
        check_is_fitted(self, "module_")
        if not is_dataset(X):
            X = self._validate_inputs(X, reset=False)
        logits = to_numpy(self.forward(X))
        if logits.shape[1] == 2:  # scikit-learn's binary convention: one margin, > 0 means classes_[1]
            return logits[:, 1] - logits[:, 0]
        return logits

    def predict_proba(self, X):
        """Softmax of the logits.

        Parameters
        ----------
        X : array-like of shape (n_samples, channels, height, width)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes), float32

        Raises
        ------
        ValueError
            If the network's outputs (or the ``predict_nonlinearity`` of finite ones) are NaN
            or infinite for some row; see :meth:`decision_function`.
        """
        check_is_fitted(self, "module_")
        if not is_dataset(X):
            X = self._validate_inputs(X, reset=False)
        proba = super().predict_proba(X)  # forward_iter refuses non-finite logits
        if proba.dtype.kind == "f" and not np.isfinite(proba).all():  # a custom predict_nonlinearity
            rows = int((~np.isfinite(proba.reshape(len(proba), -1))).any(axis=1).sum())
            raise ValueError(
                f"predict_nonlinearity={self.predict_nonlinearity!r} turned the network's finite outputs "
                f"into NaN or infinite probabilities in {rows} of {len(proba)} rows of X; use a "
                "numerically stable one (e.g. torch.softmax, which subtracts the row maximum).")
        return proba

    def predict(self, X):
        """Most probable class label for each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, channels, height, width)

        Returns
        -------
        y_pred : ndarray of shape (n_samples,), labels from ``classes_``
        """
        indices = self.predict_proba(X).argmax(axis=1)  # checks fitted before classes_ is read
        return self.classes_[indices]


_STACKABLE_OPTIMIZER_ARGS = {"momentum", "weight_decay", "dampening", "nesterov"}


def _batching_obstacle(net, X, fit_params):
    """Why ``net`` cannot join a batched fit (a sentence), or None when it can."""
    reasons = []
    if is_dataset(X):
        reasons.append("X is a torch Dataset (pass arrays)")
    if fit_params:
        reasons.append(f"fit parameters {sorted(fit_params)} are given")
    if net.optimizer is not torch.optim.SGD or set(net.get_params_for("optimizer")) - _STACKABLE_OPTIMIZER_ARGS:
        reasons.append("the optimizer is not plain torch.optim.SGD (lr, momentum, weight decay, dampening, nesterov)")
    criterion_args = set(net.get_params_for("criterion"))
    if net.criterion is not torch.nn.CrossEntropyLoss or criterion_args - {"label_smoothing"} \
            or net.focal_gamma > 0:
        reasons.append("the criterion is not torch.nn.CrossEntropyLoss")
    if net.mixup_alpha > 0:
        reasons.append(f"mixup_alpha={net.mixup_alpha!r}")
    iterator_args = net.get_params_for("iterator_train")
    if net.iterator_train is not DeviceBatchIterator or set(iterator_args) - {"shuffle", "batch_size"} \
            or not iterator_args.get("shuffle", False):
        reasons.append("the training iterator is not DeviceBatchIterator with shuffle=True")
    if net.train_split is not None:
        reasons.append("train_split is set")
    if net.callbacks not in (None, "disable") or set(net.get_params_for("callbacks")) - {
            "lr_scheduler__fraction", "lr_scheduler__gamma", "lr_scheduler__milestone",
            "lr_scheduler__reset_momentum"}:
        reasons.append("callbacks other than the learning-rate step are set")
    if net.checkpoint_dir is not None:
        reasons.append("checkpoint_dir is set (each fit checkpoints its own file)")
    if net.warm_start:
        reasons.append("warm_start=True")
    return "; ".join(reasons) or None


def fit_networks(estimator, X, y, *, random_states, batched="auto", **fit_params):
    """Fit one clone of ``estimator`` per random state, in one batched computation where possible.

    The literature evaluates a distilled set with 5 to 20 independently initialised
    networks. Rather than one after another, the clones are trained together: their
    parameters are stacked and one batched forward and backward pass serves all of them
    (:func:`~ddcal_sklearn.nn.train_stacked`), while each keeps its own initialisation,
    shuffling and augmentation streams, drawn from its ``random_state`` exactly as its own
    ``fit`` would draw them. So clone ``i`` ends with the network that
    ``clone(estimator).set_params(random_state=random_states[i]).fit(X, y)`` gives (to float
    tolerance), and each returned clone is a fitted :class:`ConvNetClassifier` like any
    other (``history_`` holds its epochs and training losses).

    Batching needs what the stacked loop implements: SGD, cross-entropy (with
    ``label_smoothing``), the :class:`~ddcal_sklearn.nn.LRStepAtFraction` schedule,
    ``augment``, no mixup or focal loss, no checkpoints or other callbacks, array inputs
    and a network without buffers (no batch norm). Anything else is fitted one clone
    after another.

    Parameters
    ----------
    estimator : ConvNetClassifier
        The unfitted template (it is cloned, never fitted itself).
    X : array-like of shape (n_samples, channels, height, width)
    y : array-like of shape (n_samples,) or (n_samples, n_classes)
    random_states : sequence of int
        One seed per network: ``len(random_states)`` networks are fitted.
    batched : {"auto", True, False}, default="auto"
        ``"auto"`` batches on a CUDA device when the estimator allows it (on a CPU the
        batched convolutions of small networks measured slower than one fit after
        another: ``benchmarks/bench_networks.py``); ``True`` batches on any device and
        raises a ``ValueError`` saying why when the estimator does not allow it;
        ``False`` fits one after another.
    **fit_params
        Passed to each ``fit`` (these prevent batching).

    Returns
    -------
    networks : list of ConvNetClassifier
        Fitted clones, in the order of ``random_states``.

    Examples
    --------
    >>> from ddcal_sklearn import ConvNetClassifier, fit_networks, load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> template = ConvNetClassifier(max_epochs=3, module__width=8, module__depth=1, device="cpu")
    >>> nets = fit_networks(template, X[:100], y[:100], random_states=[0, 1, 2], batched=True)
    >>> [len(net.history_) for net in nets]
    [3, 3, 3]
    """
    if not isinstance(estimator, ConvNetClassifier):
        raise TypeError(f"fit_networks trains ConvNetClassifier clones; got estimator of type "
                        f"{type(estimator).__name__}.")
    if batched not in ("auto", True, False):
        raise ValueError(f"batched must be 'auto', True or False; got {batched!r}.")
    seeds = list(random_states)
    if not seeds:
        raise ValueError("random_states is empty: give one seed per network to fit.")
    nets = [clone(estimator).set_params(random_state=seed) for seed in seeds]
    if batched == "auto" and torch.device(nets[0].device).type != "cuda":
        batched = False
    obstacle = None if batched is False else _batching_obstacle(nets[0], X, fit_params)
    if batched is True and obstacle:
        raise ValueError(f"fit_networks(batched=True) cannot batch these fits: {obstacle}. "
                         "Use batched='auto' to fit them one after another.")
    if batched is False or obstacle:
        return [net.fit(X, y, **fit_params) for net in nets]
    streams = []
    for net in nets:  # everything fit does before its first epoch, in fit's order of random draws
        X_valid, y_encoded = net._prepare_fit(X, y, reset=True)
        with net._sizing_by_data():
            net.initialize()
        if streams:
            dataset = streams[0][0]  # the same data: one device copy serves every network
        else:
            dataset = net.get_dataset(X_valid, y_encoded)
        net.get_iterator(dataset, training=True)
        streams.append((dataset, net._shuffle_generator, net._augment_generator))
    if any(module_buffers(net.module_) for net in nets):
        if batched is True:
            raise ValueError("fit_networks(batched=True) cannot batch networks with buffers (batch norm's "
                             "running statistics); use batched='auto'.")
        return [clone(estimator).set_params(random_state=seed).fit(X, y) for seed in seeds]
    template = nets[0]
    scheduler = dict(template.callbacks_).get("lr_scheduler")
    optimizer_args = template.get_params_for("optimizer")
    dataset = streams[0][0]
    milestone = None if scheduler is None else scheduler.milestone_for(template.max_epochs)
    start = time.perf_counter()
    with template._out_of_memory_advice("fit"):
        losses, buffers = train_stacked(
            [net.module_ for net in nets], dataset.X, dataset.y, epochs=template.max_epochs,
            batch_size=template.get_params_for("iterator_train").get("batch_size", template.batch_size),
            lr=template.lr, **{name: optimizer_args[name] for name in optimizer_args},
            milestone=milestone,
            gamma=1.0 if scheduler is None else scheduler.gamma,
            reset_momentum=False if scheduler is None else scheduler.reset_momentum,
            shuffle_generators=[s[1] for s in streams], augment=template._augment,
            augment_generators=[s[2] for s in streams],
            label_smoothing=float(template._criterion_and_kwargs()[1].get("label_smoothing", 0.0)),
        )
        losses = losses.cpu().numpy()  # the one host read of the training
    duration = (time.perf_counter() - start) / max(template.max_epochs, 1)
    for i, net in enumerate(nets):
        for epoch in range(template.max_epochs):
            cut = milestone is not None and epoch >= milestone
            net.history.new_epoch()
            net.history.record("epoch", epoch + 1)
            net.history.record("train_loss", float(losses[epoch, i]))
            net.history.record("dur", duration)
            net.history.record("event_lr", template.lr * (scheduler.gamma if cut else 1.0))
        if buffers is not None:  # a warm_start continuation resumes with this network's momentum
            parameters = dict(net.module_.named_parameters())
            for name, buffer in buffers[i].items():
                net.optimizer_.state[parameters[name]]["momentum_buffer"] = buffer
        for name in _TRANSIENT:
            net.__dict__.pop(name, None)
        net._check_converged(np.asarray(X) if isinstance(X, np.ndarray) else None)
    return nets

"""``ConvNetClassifier``: a skorch ``NeuralNetClassifier`` with the distillation literature's protocol."""

import inspect
import warnings

import numpy as np
import torch
from skorch import NeuralNetClassifier
from skorch.callbacks import EpochScoring, EpochTimer, LRScheduler, PassthroughScoring, PrintLog
from skorch.utils import is_dataset, to_numpy
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ._utils import check_generator, draw_seed, resolve_device
from .nets import ConvNet, network_kwargs


class DeviceTensorDataset(torch.utils.data.Dataset):
    """Inputs and targets held as tensors on the training device.

    Parameters
    ----------
    X : torch.Tensor of shape (n_samples, ...)
    y : torch.Tensor of shape (n_samples,) or None

    Examples
    --------
    >>> import torch
    >>> from ddcal_sklearn.classifier import DeviceTensorDataset
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


def _dataset_tensors(dataset):
    """The (X, y) tensors behind a DeviceTensorDataset or a skorch/torch Subset of one."""
    if isinstance(dataset, DeviceTensorDataset):
        return dataset.X, dataset.y
    if isinstance(dataset, torch.utils.data.Subset):
        X, y = _dataset_tensors(dataset.dataset)
        index = torch.as_tensor(dataset.indices, device=X.device)
        return X[index], (y[index] if y is not None else None)
    raise TypeError(
        f"DeviceBatchIterator needs a DeviceTensorDataset (or a Subset of one), got "
        f"{type(dataset).__name__}; for other datasets pass "
        "iterator_train=torch.utils.data.DataLoader."
    )


class DeviceBatchIterator:
    """Mini-batches sliced from tensors that already live on the device.

    A drop-in for ``torch.utils.data.DataLoader`` in skorch's ``iterator_train`` /
    ``iterator_valid``: no per-sample ``__getitem__``, no collation and no host copy,
    so an epoch over a distilled set of a few hundred images costs a handful of
    kernel launches rather than thousands of Python calls.

    Parameters
    ----------
    dataset : DeviceTensorDataset or torch.utils.data.Subset of one
    batch_size : int, default=128
    shuffle : bool, default=False
        Draw a fresh permutation (on the device) at every pass.
    generator : torch.Generator or None, default=None
        Generator on the data's device used for the permutation.
    drop_last : bool, default=False

    Examples
    --------
    >>> import torch
    >>> from ddcal_sklearn.classifier import DeviceBatchIterator, DeviceTensorDataset
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

    def __iter__(self):
        X, y = _dataset_tensors(self.dataset)
        n = len(X)
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator, device=X.device)
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
    gamma : float, default=0.1

    Examples
    --------
    >>> from ddcal_sklearn import ConvNetClassifier
    >>> from ddcal_sklearn.classifier import LRStepAtFraction
    >>> net = ConvNetClassifier(callbacks__lr_scheduler__fraction=0.8)
    """

    def __init__(self, fraction=0.5, gamma=0.1, event_name="event_lr"):
        super().__init__(policy=torch.optim.lr_scheduler.MultiStepLR, event_name=event_name)
        self.fraction = fraction
        self.gamma = gamma

    def _get_scheduler(self, net, policy, **scheduler_kwargs):
        milestone = max(1, int(round(self.fraction * net.max_epochs)))
        return policy(net.optimizer_, milestones=[milestone], gamma=self.gamma)

    @property
    def kwargs(self):
        return {}


def _index_accuracy(net, X, y):
    """Validation accuracy on the encoded targets that skorch sees during fit."""
    return float(np.mean(net.predict_proba(X).argmax(axis=1) == to_numpy(y)))


class _RequestedDevice:
    """``device`` as given (``"auto"`` kept for ``get_params``/``clone``), resolved where skorch reads it."""

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self
        requested = obj.__dict__.get("device", "auto")
        try:
            return None if requested is None else str(resolve_device(requested))
        except ValueError:  # reported by fit, before any work; set_params and repr must not raise
            return requested

    def __set__(self, obj, value):
        obj.__dict__["device"] = value


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
    - ``decision_function`` returning logits, which
      :class:`~ddcal_sklearn.MaskedTemperatureCalibrator` scales;
    - ``device="auto"`` (CUDA when available) and data kept on the device during
      training (:class:`DeviceBatchIterator`), so small sets are not dominated by
      per-batch Python overhead;
    - ``random_state``: module initialisation and shuffling come from it, never from
      torch's global generator (reproducible on CPU).

    The module class gets ``in_channels``, ``image_size``, ``n_features`` and
    ``n_classes`` from the data at fit time when its constructor takes them and they
    were not given as ``module__*`` parameters. Every other knob is reachable as in
    skorch (``module__width``, ``optimizer__momentum``, ``callbacks__lr_scheduler__fraction``),
    hence from ``GridSearchCV``.

    Parameters
    ----------
    module : torch.nn.Module class or instance, default=ConvNet
        Must map a batch of inputs to logits. Use :class:`~ddcal_sklearn.MLP` for flat
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
    **kwargs
        Any other :class:`skorch.NeuralNetClassifier` parameter or prefixed
        parameter. Defaults added here: ``optimizer__momentum=0.9``,
        ``optimizer__weight_decay=5e-4``, ``iterator_train__shuffle=True``.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels, in the order of the logits' columns.
    input_shape_ : tuple
        Shape of one input sample seen in fit.
    n_features_in_ : int
        Size of the second axis of X (channels for images).
    module_ : torch.nn.Module
        The trained network.
    history_ : skorch.History

    Examples
    --------
    >>> from ddcal_sklearn import ConvNetClassifier, load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> clf = ConvNetClassifier(max_epochs=5, module__width=16, random_state=0)
    >>> clf.fit(X[:200], y[:200]).predict(X[200:205]).shape
    (5,)
    >>> clf.decision_function(X[200:205]).shape  # logits
    (5, 10)
    """

    device = _RequestedDevice()

    def __init__(self, module=ConvNet, *, criterion=torch.nn.CrossEntropyLoss,
                 optimizer=torch.optim.SGD, lr=0.01, max_epochs=300, batch_size=256,
                 train_split=None, iterator_train=DeviceBatchIterator,
                 iterator_valid=DeviceBatchIterator, device="auto", random_state=None,
                 verbose=0, **kwargs):
        kwargs.setdefault("optimizer__momentum", 0.9)
        kwargs.setdefault("optimizer__weight_decay", 5e-4)
        kwargs.setdefault("iterator_train__shuffle", True)
        super().__init__(
            module, criterion=criterion, optimizer=optimizer, lr=lr, max_epochs=max_epochs,
            batch_size=batch_size, train_split=train_split, iterator_train=iterator_train,
            iterator_valid=iterator_valid, device=device, verbose=verbose, **kwargs,
        )
        self.random_state = random_state

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

    def __getstate__(self):
        state = super().__getstate__()
        # skorch maps tensors with the concrete device; the request ("auto") comes back in __setstate__.
        state["device_requested_"] = state.get("device", "auto")
        state["device"] = self.device
        return state

    def __setstate__(self, state):
        requested = state.pop("device_requested_", state["device"])
        with warnings.catch_warnings():
            if requested == "auto":  # "auto" on a CPU-only machine is not a fallback worth a warning
                warnings.filterwarnings("ignore", message="Setting self.device")
            super().__setstate__(state)
        if requested == "auto":
            self.__dict__["device"] = "auto"

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.non_deterministic = self.random_state is None
        return tags

    def _validate_inputs(self, X, y=None, *, reset):
        """Validate X (and y) the scikit-learn way; images stay images."""
        if y is None:
            X = validate_data(self, X, reset=reset, dtype=np.float32, allow_nd=True)
        else:
            X, y = validate_data(self, X, y, reset=reset, dtype=np.float32, allow_nd=True)
        X = np.ascontiguousarray(X)  # read-only and strided inputs become plain arrays
        if reset:
            self.input_shape_ = tuple(X.shape[1:])
            self._check_module_input(X)
        elif tuple(X.shape[1:]) != self.input_shape_:
            raise ValueError(
                f"X has samples of shape {tuple(X.shape[1:])}, but {type(self).__name__} "
                f"was fitted on samples of shape {self.input_shape_}."
            )
        return X if y is None else (X, y)

    def _check_module_input(self, X):
        accepts = self._module_init_args()
        if "image_size" in accepts and X.ndim != 4:
            raise ValueError(
                f"X has shape {X.shape}, but module={getattr(self.module, '__name__', self.module)!r} "
                "needs images of shape (n_samples, channels, height, width). Reshape X "
                "(for 8x8 digits: X.reshape(-1, 1, 8, 8)) or use module=MLP for flat features."
            )

    def _module_init_args(self):
        if not inspect.isclass(self.module):
            return set()
        return set(inspect.signature(self.module).parameters)

    def _encode_targets(self, y):
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

    def get_params_for(self, prefix):
        params = super().get_params_for(prefix)
        if prefix == "module":
            params = network_kwargs(self.module, self.input_shape_, len(self.classes_), params)
        return params

    def initialize_module(self):
        # Initialise weights from random_state inside a forked RNG: torch's global stream is untouched.
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(draw_seed(self._rng))
            return super().initialize_module()

    def get_dataset(self, X, y=None):
        if is_dataset(X):
            return X
        device = self.device
        X = torch.as_tensor(X, device=device)
        y = None if y is None else torch.as_tensor(y, device=device)
        return DeviceTensorDataset(X, y)

    def get_iterator(self, dataset, training=False):
        iterator = self.iterator_train if training else self.iterator_valid
        if training and iterator in (DeviceBatchIterator, torch.utils.data.DataLoader) \
                and "iterator_train__generator" not in self.__dict__:
            # Shuffling from random_state, on the data's device, without a host sync.
            generator = torch.Generator(device=self.device if iterator is DeviceBatchIterator else "cpu")
            generator.manual_seed(draw_seed(self._rng))
            kwargs = self.get_params_for("iterator_train")
            kwargs.setdefault("batch_size", self.batch_size)
            kwargs["generator"] = generator
            return iterator(dataset, **kwargs)
        return super().get_iterator(dataset, training=training)

    # --- public API ----------------------------------------------------------------

    def fit(self, X, y, **fit_params):
        """Train the network from scratch (or continue when ``warm_start=True``).

        Parameters
        ----------
        X : array-like of shape (n_samples, channels, height, width)
            Images (or (n_samples, n_features) with ``module=MLP``).
        y : array-like of shape (n_samples,)
            Class labels of any type.
        **fit_params
            Passed to skorch (module ``forward`` keyword arguments).

        Returns
        -------
        self : ConvNetClassifier
        """
        keep = self.warm_start and self.initialized_
        X, y_encoded = self._prepare_fit(X, y, reset=not keep)
        if not keep:
            self.initialize()
        NeuralNetClassifier.partial_fit(self, X, y_encoded, **fit_params)
        return self

    def partial_fit(self, X, y=None, classes=None, **fit_params):
        """Train for ``max_epochs`` more epochs without re-initialising the network.

        Parameters
        ----------
        X : array-like of shape (n_samples, channels, height, width)
        y : array-like of shape (n_samples,)
        classes : ignored
            Pass ``classes`` at construction to fix the label set.
        **fit_params
            Passed to skorch.

        Returns
        -------
        self : ConvNetClassifier
        """
        X, y_encoded = self._prepare_fit(X, y, reset=not self.initialized_)
        return super().partial_fit(X, y_encoded, **fit_params)

    def _prepare_fit(self, X, y, *, reset):
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None."
            )
        resolve_device(self.__dict__.get("device", "auto"))  # fail before any work
        if reset:
            self._rng = check_generator(self.random_state)
            X, y = self._validate_inputs(X, y, reset=True)
            y_encoded = self._encode_targets(y)
        else:
            X, y = self._validate_inputs(X, y, reset=False)
            check_classification_targets(y)
            unknown = np.setdiff1d(np.unique(y), self.classes_)
            if unknown.size:
                raise ValueError(f"y contains labels {unknown.tolist()} unseen in the first fit.")
            y_encoded = self._label_encoder.transform(y).astype(np.int64)
        self.classes_inferred_ = self._label_encoder.classes_
        return X, y_encoded

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
        """
        check_is_fitted(self, "module_")
        if not is_dataset(X):
            X = self._validate_inputs(X, reset=False)
        return super().predict_proba(X)

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

"""Property-based fuzzing of the public entry points (issue 16).

Loaders (``load_synthetic_set``, ``load_calibration``, ``ExpertTrajectories.load``) get random
bytes, truncated, bit-flipped and structurally mutated valid files, FIFOs and folders; the
metrics, ``mask_elements``, ``fit_temperature``, and ``fit`` / ``predict_proba`` of
``ConvNetClassifier`` (a tiny MLP) and ``MaskedTemperatureCalibrator`` (around a frozen
``LogisticRegression``) get random shapes, dtypes, magnitudes, label sets, NaN and infinity.

The property, for every call: it returns a finite output of the right shape, or raises
``ValueError`` / ``TypeError`` (``FileNotFoundError`` for a missing file) whose message names
the parameter at fault (or, for a file, its path). Never NaN, never a hang (every call runs
under an alarm), never an error from inside NumPy, SciPy or torch (``RuntimeError``,
``IndexError``, ``AttributeError``, ``MemoryError``, ``RecursionError``, ... all fail the test).
Inputs that are valid by construction must succeed.

Examples are derandomised, so CI sees the same ones on every run, and sized so that the whole
file runs in about a minute on 2 CPU cores.
"""

import contextlib
import io
import json
import os
import re
import signal
import warnings
import zipfile

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, log_loss

from ddcal_sklearn import (
    MLP,
    ConvNetClassifier,
    ExpertTrajectories,
    MaskedTemperatureCalibrator,
    fit_temperature,
    load_calibration,
    load_synthetic_set,
    mask_elements,
    save_synthetic_set,
)
from ddcal_sklearn import metrics as metrics_module

FUZZ = dict(deadline=None, derandomize=True, database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                   HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture])
ALLOWED = (ValueError, TypeError)


# --- the property ----------------------------------------------------------------------------


class _Hang(BaseException):
    """Raised by the alarm; a BaseException so that no ``except Exception`` inside a call swallows it."""


@contextlib.contextmanager
def _no_hang(seconds):
    if not hasattr(signal, "setitimer"):  # Windows: no alarm, so no hang detection
        yield
        return

    def alarm(signum, frame):
        raise _Hang(f"the call did not return within {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _names_one_of(message, names):
    return any(re.search(rf"(?<![\w.]){re.escape(str(name))}(?!\w)", message) for name in names)


def _call(fn, names, *, allowed=ALLOWED, seconds=30, label="call"):
    """``(result, None)``, or ``(None, error)`` for an allowed error whose message names one of ``names``.

    Anything else (another exception type, an allowed one that names none of ``names``, a
    call that does not return) fails the test.
    """
    try:
        with _no_hang(seconds), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = fn()
    except _Hang as hang:  # out of the library now: a plain failure, so that hypothesis reports the example
        raise AssertionError(str(hang)) from None
    except allowed as exc:
        message = str(exc)
        assert _names_one_of(message, names), f"{type(exc).__name__} names none of {list(names)}: {message}"
        event(f"{label}: {type(exc).__name__}" + (f" {message[:90]}" if os.environ.get("FUZZ_DEBUG") else ""))
        return None, exc
    event(f"{label}: returned")
    return result, None


def _assert_finite(array, shape=None):
    array = np.asarray(array)
    assert array.dtype.kind in "biuf", array.dtype
    if shape is not None:
        assert array.shape == shape, (array.shape, shape)
    assert np.isfinite(array).all(), array


# --- inputs ------------------------------------------------------------------------------------

LABEL_KINDS = ("int", "str", "float", "bool", "bad")


@st.composite
def label_lists(draw, n, kind=None, n_distinct=None):
    """``n`` labels of one kind: ints, strings, floats, booleans, or a bad mix (None, NaN, both types)."""
    kind = kind or draw(st.sampled_from(LABEL_KINDS))
    pools = {
        "int": [0, 1, 2, 3, 7, -1],
        "str": ["cat", "dog", "emu", "fox", "gnu"],
        "float": [0.0, 1.0, 2.5, -3.0, 1e300],
        "bool": [False, True],
    }
    if kind == "bad":
        element = st.one_of(st.integers(0, 3), st.sampled_from(["a", "b"]), st.none(), st.just(float("nan")),
                            st.just(float("inf")))
        return kind, draw(st.lists(element, min_size=n, max_size=n))
    pool = pools[kind][: n_distinct or None] if n_distinct else pools[kind]
    return kind, draw(st.lists(st.sampled_from(pool), min_size=n, max_size=n))


FLOAT_DTYPES = (np.float16, np.float32, np.float64)
ODD_DTYPES = (np.int8, np.int64, np.uint8, np.bool_, np.complex64, np.dtype("U3"), np.dtype(object))


@st.composite
def numeric_arrays(draw, shape, *, magnitude=True, nan=True, odd=True):
    """An array of ``shape``: floats of a random dtype and magnitude (NaN and inf sometimes), or odd dtypes."""
    if odd and draw(st.integers(0, 9)) == 0:
        dtype = np.dtype(draw(st.sampled_from(ODD_DTYPES)))
        if dtype == object:
            return np.array(draw(st.lists(st.one_of(st.integers(-3, 3), st.text(max_size=2), st.none()),
                                          min_size=int(np.prod(shape)), max_size=int(np.prod(shape)))),
                            dtype=object).reshape(shape)
        return draw(arrays(dtype, shape))
    dtype = np.dtype(draw(st.sampled_from(FLOAT_DTYPES)))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    exponent = draw(st.sampled_from([0, 0, 0, -30, -5, 5, 20, 30, 38, 300])) if magnitude else 0
    with np.errstate(over="ignore"):
        values = np.asarray(rng.standard_normal(shape) * 10.0**exponent).astype(dtype)
    if nan and draw(st.integers(0, 7)) == 0 and values.size:
        flat = values.reshape(-1)
        flat[draw(st.integers(0, flat.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    return values


# --- metrics -----------------------------------------------------------------------------------

SCALAR_METRICS = [
    metrics_module.expected_calibration_error,
    metrics_module.maximum_calibration_error,
    metrics_module.adaptive_calibration_error,
    metrics_module.classwise_calibration_error,
    metrics_module.overconfidence_error,
    metrics_module.underconfidence_error,
]
METRIC_PARAMS = ("y_true", "y_prob", "labels", "n_bins", "strategy", "return_edges")


@st.composite
def metric_inputs(draw):
    """``(y_true, y_prob, kwargs, strategy, valid)``: half valid by construction (``valid``), half fuzzed."""
    fuzzed = draw(st.integers(0, 1)) == 1  # 0, the value hypothesis tries first, is the clean case
    n = draw(st.integers(1 if not fuzzed else 0, 25))
    k = draw(st.integers(2 if not fuzzed else 1, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if fuzzed:
        kind, y_true = draw(label_lists(n, n_distinct=k))
    else:  # every one of k classes present, ints or strings, in any order
        kind = draw(st.sampled_from(["int", "str"]))
        pool = {"int": [3, 0, 7, 1, -1], "str": ["emu", "cat", "gnu", "dog", "fox"]}[kind][:k]
        y_true = [pool[i] for i in rng.permutation(np.arange(max(n, k)) % k)]
        n = len(y_true)
    mode = "valid" if not fuzzed else draw(st.sampled_from(["valid", "random", "shape"]))
    if mode == "valid":
        y_prob = rng.dirichlet(np.full(k, draw(st.sampled_from([0.05, 1.0, 20.0]))), size=n)
        if draw(st.booleans()):
            y_prob[: n // 2] = np.eye(k)[rng.integers(0, k, n // 2)]  # confident rows, ties at 1.0
        y_prob = y_prob.astype(draw(st.sampled_from(FLOAT_DTYPES)))
        if k == 2 and draw(st.booleans()):
            y_prob = y_prob[:, 1]
    elif mode == "random":
        y_prob = draw(numeric_arrays((n, k)))
    else:
        shape = draw(st.sampled_from([(n,), (n, k, 1), (n + 1, k), (max(n - 1, 0), k), (), (n, 0)]))
        y_prob = draw(numeric_arrays(shape))
    labels = None
    label_mode = draw(st.sampled_from(["none", "own"] + (["duplicate", "2d"] if fuzzed else [])))
    if label_mode == "own":  # the labels of y_true (as in the columns, or a guess), plus others to make k
        labels = list(dict.fromkeys(y_true)) if fuzzed else sorted(set(y_true))
        labels += [x for x in draw(label_lists(k, kind=kind if kind != "bad" else "int"))[1] if x not in labels]
        labels = labels[: max(k, 1)]
    elif label_mode == "duplicate":
        labels = [y_true[0], y_true[0]] if y_true else [0, 0]
    elif label_mode == "2d":
        labels = [[0, 1], [2, 3]]
    if draw(st.booleans()) and kind != "bad":
        y_true = np.asarray(y_true)
    if not fuzzed or draw(st.booleans()):
        n_bins = draw(st.integers(1, 20))
    else:
        n_bins = draw(st.sampled_from([0, -1, 2.5, "10", None, True, np.True_, 10**6, 10**12, np.int64(7)]))
    strategy = draw(st.sampled_from(["uniform", "quantile"] + (["median"] if fuzzed else [])))
    return y_true, y_prob, dict(n_bins=n_bins, labels=labels), strategy, not fuzzed


class _Predictor:
    """A fitted-looking estimator whose predict_proba returns the fuzzed probabilities (for the scorers)."""

    def __init__(self, y_prob, classes):
        self.y_prob, self.classes_ = y_prob, classes

    def predict_proba(self, X):
        return self.y_prob


@settings(max_examples=1000, **FUZZ)
@given(metric_inputs())
def test_every_metric_returns_finite_numbers_or_names_the_bad_argument(inputs):
    y_true, y_prob, kwargs, strategy, valid = inputs
    n = len(y_true)
    for metric in SCALAR_METRICS:
        extra = {"strategy": strategy} if "strategy" in metric.__code__.co_varnames else {}
        value, error = _call(lambda: metric(y_true, y_prob, **kwargs, **extra), METRIC_PARAMS, label="metric")
        if error is None:
            assert isinstance(value, float) and 0.0 <= value <= 1.0, (metric.__name__, value)
        else:
            assert not valid, (metric.__name__, error)
    report, error = _call(lambda: metrics_module.calibration_report(y_true, y_prob, **kwargs), METRIC_PARAMS)
    if error is None:
        _assert_finite(list(report.values()))
        assert 0 <= report["brier"] <= 2 and report["nll"] >= 0
    else:
        assert not valid, error
    curve, error = _call(lambda: metrics_module.calibration_curve_top_label(
        y_true, y_prob, strategy=strategy, return_edges=True, **kwargs), METRIC_PARAMS)
    if error is None:
        accuracy, confidence, counts, lower, upper = curve
        for part in curve:
            _assert_finite(part, accuracy.shape)
        assert counts.sum() == n and (lower <= upper).all()
    else:
        assert not valid, error
    if kwargs["labels"] is None and valid:  # the scorers pass the estimator's classes as labels
        classes = np.unique(np.asarray(y_true))
        if y_prob.ndim == 1:  # an estimator's predict_proba has a column per class
            y_prob = np.column_stack([1 - y_prob, y_prob])
        for name, scorer in metrics_module.calibration_scorers.items():
            if callable(scorer):
                score, error = _call(lambda: scorer(_Predictor(y_prob, classes), None, y_true),
                                     METRIC_PARAMS + ("y_proba", "y_pred"))
                assert error is None and np.isfinite(score), (name, error)


def test_the_report_agrees_with_scikit_learn_on_a_valid_example():
    """An anchor for the property test: its valid branch computes the right numbers."""
    y = np.array([0, 1, 2, 1, 0, 2, 2])
    p = np.random.default_rng(0).dirichlet(np.ones(3), size=7)
    report = metrics_module.calibration_report(y, p)
    assert report["nll"] == pytest.approx(log_loss(y, p))
    assert report["brier"] == pytest.approx(brier_score_loss(y, p, scale_by_half=False))


# --- mask_elements -----------------------------------------------------------------------------


@st.composite
def mask_inputs(draw):
    form = draw(st.sampled_from(["array", "array", "array", "tensor", "ragged", "scalar", "list"]))
    shape = draw(array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4))
    if form == "array":
        X = draw(numeric_arrays(shape))
    elif form == "tensor":
        with np.errstate(over="ignore"):  # float64 values beyond float32 become inf: tensors may hold them
            X = torch.from_numpy(draw(numeric_arrays(shape, odd=False, nan=False)).astype(np.float32))
    elif form == "ragged":
        X = [[1.0, 2.0], [3.0]]
    elif form == "list":
        X = draw(st.lists(st.lists(st.floats(allow_nan=True, width=32), min_size=2, max_size=2), max_size=4))
    else:
        X = draw(st.sampled_from([3.0, "abc", None, b"\x00"]))
    mask_ratio = draw(st.one_of(
        st.floats(0, 0.99), st.floats(allow_nan=True, allow_infinity=True), st.integers(-2, 2),
        st.booleans(), st.sampled_from(["0.5", None, np.float32(0.25), np.float64(0.5), [0.5]])))
    random_state = draw(st.one_of(
        st.none(), st.integers(-5, 2**70), st.sampled_from(["seed", 1.5, -1, 2**128]),
        st.integers(0, 2**32 - 1).map(np.random.default_rng),
        st.integers(0, 2**32 - 1).map(lambda s: torch.Generator().manual_seed(s))))
    return X, mask_ratio, random_state


@settings(max_examples=1000, **FUZZ)
@given(mask_inputs())
@example((np.ones((2, 3)), 0.5, -1))  # a negative seed: numpy's "expected non-negative integer" named nothing
def test_mask_elements_keeps_shape_dtype_and_finiteness_or_names_the_bad_argument(inputs):
    X, mask_ratio, random_state = inputs
    out, error = _call(lambda: mask_elements(X, mask_ratio, random_state=random_state),
                       ("X", "mask_ratio", "random_state"), label="mask_elements")
    if error is not None:
        return
    if isinstance(X, torch.Tensor):
        assert isinstance(out, torch.Tensor) and out.shape == X.shape and out.dtype == X.dtype
        assert bool(torch.isfinite(out)[torch.isfinite(X)].all())  # tensors are not checked (no device sync)
        return
    X = np.asarray(X)
    assert isinstance(out, np.ndarray) and out.shape == X.shape and out.dtype == X.dtype
    assert ((out == 0) | (out == X)).all()
    if out.dtype.kind == "f":
        _assert_finite(out)


# --- fit_temperature ---------------------------------------------------------------------------


@st.composite
def temperature_inputs(draw):
    """``(logits, y, sample_weight, valid)``: half valid by construction (any finite magnitude), half fuzzed."""
    fuzzed = draw(st.integers(0, 1)) == 1
    n, k = draw(st.integers(0 if fuzzed else 1, 12)), draw(st.integers(0 if fuzzed else 1, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if not fuzzed:
        exponent = draw(st.sampled_from([0, 0, 0, 1, -30, 30, 300, 307]))
        logits = rng.standard_normal((n, k)) * 10.0**exponent
        logits = logits.astype(np.float32) if exponent < 30 and draw(st.booleans()) else logits
        y = rng.integers(0, k, n)
        weight_form = draw(st.sampled_from([None, None, "random", "some zeros"]))
        sample_weight = None if weight_form is None else rng.random(n) + 0.1
        if weight_form == "some zeros":
            sample_weight[1:] *= sample_weight[1:] > 0.5
        return logits, y, sample_weight, True
    shape = draw(st.sampled_from([(n, k), (n, k), (n, k), (n,), (n, k, 1)]))
    logits = draw(numeric_arrays(shape))
    y_form = draw(st.sampled_from(["index", "index", "float", "out", "text", "shape"]))
    if y_form == "index":
        y = draw(st.lists(st.integers(0, max(k - 1, 0)), min_size=n, max_size=n))
    elif y_form == "float":
        y = draw(st.lists(st.sampled_from([0.0, 1.0, 0.5, float("nan")]), min_size=n, max_size=n))
    elif y_form == "out":
        y = draw(st.lists(st.integers(-2, k + 2), min_size=n, max_size=n))
    elif y_form == "text":
        y = ["a"] * n
    else:
        y = np.zeros((n + 1,), dtype=int)
    weight_form = draw(st.sampled_from(["none", "valid", "random", "zeros", "shape"]))
    sample_weight = {
        "none": None,
        "valid": rng.random(n) + 0.1,
        "random": draw(numeric_arrays((n,))),
        "zeros": np.zeros(n),
        "shape": np.ones(n + 2),
    }[weight_form]
    return logits, y, sample_weight, False


@settings(max_examples=1000, **FUZZ)
@given(temperature_inputs())
def test_fit_temperature_returns_a_finite_positive_temperature_or_names_the_bad_argument(inputs):
    logits, y, sample_weight, valid = inputs
    temperature, error = _call(lambda: fit_temperature(logits, y, sample_weight=sample_weight),
                               ("logits", "y", "sample_weight"), label="fit_temperature")
    if error is None:
        assert isinstance(temperature, float) and np.isfinite(temperature) and temperature > 0
    else:
        assert not valid, error


# --- ConvNetClassifier -------------------------------------------------------------------------


def _tiny_mlp():
    return ConvNetClassifier(module=MLP, module__hidden_sizes=(4,), max_epochs=2, batch_size=4, lr=0.05,
                             device="cpu", random_state=0)


@st.composite
def new_inputs(draw, n, d):
    """Inputs to predict on: (n, d) floats of any magnitude (1e30: issue 16, item 2) half the time, else fuzzed."""
    if draw(st.booleans()):
        exponent = draw(st.sampled_from([0, 0, 5, 20, 30, 300]))
        dtype = np.float64 if exponent > 38 else draw(st.sampled_from([np.float32, np.float64]))
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        return (rng.standard_normal((n, d)) * 10.0**exponent).astype(dtype)
    return draw(numeric_arrays(draw(st.sampled_from([(n, d), (n, d), (n, d + 1), (n,)]))))


@st.composite
def classifier_inputs(draw):
    """Half clean (to reach predict_proba), half fuzzed: shapes, dtypes, magnitudes, labels."""
    d = draw(st.integers(1, 4))
    if draw(st.integers(0, 2)):
        n = draw(st.integers(2, 10))
        X = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).standard_normal((n, d)).astype(
            draw(st.sampled_from([np.float32, np.float64])))
        labels = draw(st.sampled_from([[0, 1], [0, 1, 2], ["cat", "dog"], ["b", "a", "c"], [2.5, -1.0]]))
        y = draw(st.permutations([labels[i % len(labels)] for i in range(n)]))
    else:
        n, d = draw(st.integers(0, 10)), draw(st.sampled_from([d, d, 0]))
        X = draw(numeric_arrays(draw(st.sampled_from([(n, d), (n, d), (n, d), (n,), (n, d, 1)]))))
        y = draw(label_lists(n, n_distinct=draw(st.integers(1, 4))))[1]
        if draw(st.integers(0, 9)) == 0:
            y = y + [y[0] if y else 0]  # one label too many
    n2 = draw(st.integers(0, 5))
    X2 = draw(new_inputs(n2, d))
    return X, y, X2


@settings(max_examples=150, **FUZZ)
@given(classifier_inputs())
@example(([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5], [1.0, 1.0]], [0, 1, 0, 1],
          np.full((3, 2), 1e30, dtype=np.float32)))  # issue 16, item 2: huge finite inputs
def test_convnet_classifier_fit_and_predict_proba_are_finite_or_name_the_bad_argument(inputs):
    X, y, X2 = inputs
    net = _tiny_mlp()
    fitted, error = _call(lambda: net.fit(X, y), ("X", "y", "lr"), label="fit")
    if error is not None:
        return
    n_classes = len(fitted.classes_)
    proba, error = _call(lambda: fitted.predict_proba(X2), ("X",), label="predict_proba")
    if error is None:
        _assert_finite(proba, (len(X2), n_classes))
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-4)
        labels, error = _call(lambda: fitted.predict(X2), ("X",))
        assert error is None and len(labels) == len(X2)


# --- MaskedTemperatureCalibrator ---------------------------------------------------------------


_SEPARABLE_X = np.random.default_rng(0).standard_normal((30, 3))


@st.composite
def calibrator_inputs(draw):
    """Half clean (to reach predict_proba), half fuzzed: shapes, dtypes, magnitudes, labels, mask ratios."""
    kind = draw(st.sampled_from(["int", "str"]))
    classes = {"int": [0, 1, 2], "str": ["cat", "dog", "emu"]}[kind][: draw(st.integers(2, 3))]
    if draw(st.booleans()):
        n = draw(st.integers(4, 12))
        X = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).standard_normal((n, 3))
        X *= 10.0 ** draw(st.sampled_from([0, 0, 1, 3]))
        y = draw(st.lists(st.sampled_from(classes), min_size=n, max_size=n))
        mask_ratio = draw(st.sampled_from([0.0, 0.3, 0.5, [0.0, 0.5], [0.1, 0.2, 0.4]]))
        sample_weight = draw(st.sampled_from([None, None, "ones", "random"]))
        if sample_weight is not None:
            sample_weight = np.ones(n) if sample_weight == "ones" else np.random.default_rng(n).random(n) + 0.1
    else:
        n, d = draw(st.integers(0, 12)), draw(st.sampled_from([3, 3, 3, 2, 0]))
        X = draw(numeric_arrays(draw(st.sampled_from([(n, d), (n, d), (n, d), (n,), (n, d, 1)]))))
        if draw(st.booleans()):
            y = draw(st.lists(st.sampled_from(classes), min_size=n, max_size=n))
        else:
            y = draw(label_lists(n))[1]
        mask_ratio = draw(st.one_of(st.sampled_from([0.0, 0.3, 0.5]), st.floats(allow_nan=True),
                                    st.lists(st.sampled_from([0.0, 0.2, 0.5]), min_size=0, max_size=3)))
        sample_weight = draw(st.one_of(st.none(), numeric_arrays((n,), magnitude=False)))
    X2 = draw(new_inputs(draw(st.integers(0, 5)), 3))
    return classes, X, y, mask_ratio, sample_weight, X2


@settings(max_examples=250, **FUZZ)
@given(calibrator_inputs())
@example(([0, 1], _SEPARABLE_X, (_SEPARABLE_X[:, 0] > 0).astype(int).tolist(), 0.0, None,
          np.full((2, 3), 1e306)))  # finite logits of 1e306 divided by a temperature below 1 gave NaN
def test_masked_temperature_calibrator_fit_and_predict_proba_are_finite_or_name_the_bad_argument(inputs):
    classes, X, y, mask_ratio, sample_weight, X2 = inputs
    rng = np.random.default_rng(0)
    X_base = rng.standard_normal((30, 3))
    base = LogisticRegression().fit(X_base, np.array(classes)[np.arange(30) % len(classes)])
    calibrator = MaskedTemperatureCalibrator(FrozenEstimator(base), mask_ratio=mask_ratio, random_state=0)
    fitted, error = _call(lambda: calibrator.fit(X, y, sample_weight=sample_weight),
                          ("X", "y", "mask_ratio", "sample_weight"), label="fit")
    if error is not None:
        return
    assert np.isfinite(fitted.temperatures_).all() and (np.asarray(fitted.temperatures_) > 0).all()
    proba, error = _call(lambda: fitted.predict_proba(X2), ("X",), label="predict_proba")
    if error is None:
        _assert_finite(proba, (len(X2), len(classes)))
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
        labels, error = _call(lambda: fitted.predict(X2), ("X",))
        assert error is None and set(labels) <= set(classes)
    scores, error = _call(lambda: fitted.decision_function(X2), ("X",), label="decision_function")
    if error is None:
        _assert_finite(scores, (len(X2),) if len(classes) == 2 else (len(X2), len(classes)))


# --- loaders -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def valid_files(tmp_path_factory, digits_images):
    """One valid file of each kind, and what it takes to load it."""
    folder = tmp_path_factory.mktemp("fuzz_valid")
    X, y = digits_images
    synthetic = save_synthetic_set(folder / "set.npz", X[:10], y[:10], ipc=1, method="dm")
    base = LogisticRegression(max_iter=200).fit(X[:200].reshape(200, -1), y[:200])
    calibrator = MaskedTemperatureCalibrator(FrozenEstimator(base), mask_ratio=[0.0, 0.2], random_state=0)
    calibrator.fit(X[200:300].reshape(100, -1), y[200:300])
    calibration = folder / "calibration.json"
    calibrator.save_calibration(calibration)
    experts = ExpertTrajectories(n_experts=1, n_epochs=1, batch_size=64, augment=None,
                                 net_params={"width": 8, "depth": 1}, device="cpu", random_state=0)
    experts.fit(X[:100], y[:100])
    trajectories = experts.save(folder / "experts.npz")
    return _Files(synthetic=synthetic, calibration=calibration, experts=trajectories, estimator=base,
                  X_check=X[300:305].reshape(5, -1))


class _Files(dict):
    """The valid files; a short repr, so that a failing example's report stays readable."""

    def __repr__(self):
        return "valid_files"


def _check_loaded(kind, loaded, files):
    if kind == "synthetic":
        _assert_finite(loaded.data)
        assert loaded.data.ndim >= 2 and loaded.target.shape[:1] == (len(loaded.data),)
        if loaded.target.ndim == 2:  # soft labels: rows of probabilities
            _assert_finite(loaded.target)
            assert (loaded.target >= 0).all() and np.allclose(loaded.target.sum(axis=1), 1, rtol=0, atol=1e-4)
        else:
            assert loaded.target.ndim == 1
        assert isinstance(loaded.metadata, dict)
    elif kind == "calibration":
        proba = loaded.predict_proba(files["X_check"])
        _assert_finite(proba, (5, len(loaded.classes_)))
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    else:
        for trajectory in loaded.trajectories_:
            _assert_finite(trajectory)


def _load(kind, path, files):
    if kind == "synthetic":
        return load_synthetic_set(path)
    if kind == "calibration":
        return load_calibration(path, files["estimator"])
    return ExpertTrajectories.load(path)


def _rezip(original, member_bytes):
    """The .npz ``original`` with the members of ``member_bytes`` replaced (or added)."""
    with zipfile.ZipFile(io.BytesIO(original)) as archive:
        contents = {name: archive.read(name) for name in archive.namelist()}
    contents.update(member_bytes)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in contents.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _npy(array, *, allow_pickle=False):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


@st.composite
def npz_members(draw, names):
    """A replacement for one member of an .npz: an array of another dtype or shape, or lying bytes."""
    name = draw(st.sampled_from(names))
    form = draw(st.sampled_from(["array", "array", "object", "header", "bytes", "metadata"]))
    if form == "array":
        shape = draw(array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3))
        content = _npy(draw(numeric_arrays(shape, odd=False)))  # object arrays: the "object" form below
    elif form == "object":
        content = _npy(np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    elif form == "header":  # a small .npy header that declares a huge array
        size = draw(st.sampled_from([10**6, 10**12, 2**62]))
        header = f"{{'descr': '<f8', 'fortran_order': False, 'shape': ({size},), }}".encode()
        header += b" " * (-(len(header) + 11) % 64) + b"\n"
        content = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + b"\x00" * 64
    elif form == "bytes":
        content = draw(st.binary(max_size=200))
    else:  # metadata: valid .npy text holding JSON that lies, or is not JSON
        name = "metadata"
        text = draw(st.one_of(
            st.just('{"format_version": 99}'), st.just("[1, 2]"), st.just("{" * 100_000),
            st.just('{"format_version": 1, "kind": "ExpertTrajectories", "params": {"checkpoint_dir": "../x"}}'),
            st.text(max_size=50)))
        content = _npy(np.array(text))
    return {f"{name}.npy": content}


@st.composite
def json_mutations(draw):
    """A function that mutates a calibration file's JSON object: a value replaced, a key dropped, deep nesting."""
    leaf = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**30), st.text(max_size=5),
                     st.sampled_from([5e-324, 1e308, -1.0, 0.0, float("nan"), float("inf")]))
    value = draw(st.recursive(leaf, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                             st.dictionaries(st.text(max_size=3), inner,
                                                                             max_size=3)), max_leaves=8))
    form = draw(st.sampled_from(["replace", "replace", "drop", "huge_list", "nest"]))
    pick = draw(st.integers(0, 10**6))

    def mutate(obj):
        keys = sorted(obj)
        key = keys[pick % len(keys)]
        if form == "replace":
            obj[key] = value
        elif form == "drop":
            del obj[key]
        elif form == "huge_list":
            obj[key] = [1.0] * 50_000
        else:
            return "[" * 100_000 + "]" * 100_000
        return json.dumps(obj)

    return mutate


@st.composite
def loader_cases(draw):
    kind = draw(st.sampled_from(["synthetic", "calibration", "experts"]))
    form = draw(st.sampled_from(["random", "truncate", "flip", "member", "member", "json", "special"]))
    if form == "json" and kind != "calibration":
        form = "member"
    if form == "random":
        change = ("bytes", draw(st.binary(max_size=300)))
    elif form == "truncate":
        change = ("truncate", draw(st.floats(0, 1, exclude_max=True)))
    elif form == "flip":
        change = ("flip", draw(st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
                                        min_size=1, max_size=8)))
    elif form == "member" and kind != "calibration":
        names = ["data", "target", "metadata"] if kind == "synthetic" else [
            "trajectories", "train_loss", "classes", "metadata"]
        change = ("member", draw(npz_members(names)))
    elif form in ("member", "json"):
        change = ("json", draw(json_mutations()))
    else:
        change = ("special", draw(st.sampled_from(["missing", "folder", "fifo", "empty"])))
    return kind, change


def _write_case(path, original, change):
    what, arg = change
    if what == "bytes":
        path.write_bytes(arg)
    elif what == "truncate":
        path.write_bytes(original[: int(arg * len(original))])
    elif what == "flip":
        content = bytearray(original)
        for where, bits in arg:
            content[int(where * len(content))] ^= bits
        path.write_bytes(bytes(content))
    elif what == "member":
        path.write_bytes(_rezip(original, arg))
    elif what == "json":
        path.write_text(arg(json.loads(original)))
    elif arg == "folder":
        path.mkdir()
    elif arg == "fifo":
        os.mkfifo(path)
    elif arg == "empty":
        path.write_bytes(b"")


@settings(max_examples=1000, **FUZZ)
@given(case=loader_cases())
def test_every_loader_returns_a_sound_object_or_a_value_error_naming_the_file(case, valid_files, tmp_path_factory):
    kind, change = case
    original = valid_files[kind].read_bytes()
    path = tmp_path_factory.mktemp("fuzz_case") / valid_files[kind].name
    _write_case(path, original, change)
    allowed = (ValueError, TypeError, FileNotFoundError) if change == ("special", "missing") else ALLOWED
    loaded, error = _call(lambda: _load(kind, path, valid_files), (str(path),), allowed=allowed, seconds=20,
                          label=f"{kind} {change[0]}")
    if error is None:
        _check_loaded(kind, loaded, valid_files)

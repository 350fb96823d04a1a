"""Validation matrix: every public entry point against every kind of awkward input.

Each row is ``<entry point>-<case>`` (e.g. ``calibrator.fit-nan``) and declares its
expectation: either a correct output (finite, right shape, probabilities summing
to 1) or an exception of a given type whose message names the offending parameter.
Nothing may fail with an unrelated error deep inside torch, nor return NaN.

Fitted estimators come from one module-scope fixture; every fit here is tiny (one
epoch, two distillation iterations, 200 digits), so the whole matrix runs in seconds.
"""

import dataclasses
import warnings
from collections.abc import Callable
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression

from ddcal_sklearn import (
    MLP,
    ConvNetClassifier,
    DatasetDistiller,
    DistilledClassifier,
    MaskedTemperatureCalibrator,
    adaptive_calibration_error,
    calibration_curve_top_label,
    calibration_report,
    classwise_calibration_error,
    expected_calibration_error,
    fit_temperature,
    load_synthetic_set,
    mask_elements,
    maximum_calibration_error,
    overconfidence_error,
    save_synthetic_set,
    underconfidence_error,
)

N_SAMPLES = 200
N_CLASSES = 10
TINY_DISTILLER = dict(ipc=1, n_iterations=2, batch_real=8, net_params={"width": 8, "depth": 1},
                      device="cpu", random_state=0)
TINY_FLAT = dict(augment=None, net_params={"hidden_sizes": (16,)})  # an MLP for flat features
TINY_NET = dict(max_epochs=1, module__width=8, module__depth=1, batch_size=64, device="cpu",
                random_state=0)
TINY_MLP = dict(module=MLP, max_epochs=1, module__hidden_sizes=(16,), batch_size=64, device="cpu",
                random_state=0)


# --- fitted objects shared by every row --------------------------------------------


@pytest.fixture(scope="module")
def ctx(digits_images, tmp_path_factory):
    X, y = digits_images
    X, y = X[:N_SAMPLES], y[:N_SAMPLES]
    net = ConvNetClassifier(**TINY_NET).fit(X, y)
    flat = X.reshape(len(X), -1)
    mlp = ConvNetClassifier(**TINY_MLP).fit(flat, y)
    return SimpleNamespace(
        X=X, y=y, flat=flat,
        proba=net.predict_proba(X).astype(np.float64),
        net=net,
        mlp=mlp,
        calibrator=MaskedTemperatureCalibrator(FrozenEstimator(net), random_state=0).fit(X, y),
        calibrator_lr=MaskedTemperatureCalibrator(LogisticRegression(max_iter=1000), cv=2,
                                                  random_state=0).fit(flat, y),
        distilled=DistilledClassifier(
            DatasetDistiller(**TINY_DISTILLER), ConvNetClassifier(**TINY_NET),
            calibrator=MaskedTemperatureCalibrator(random_state=0)).fit(X, y),
        tmp=tmp_path_factory.mktemp("matrix"),
    )


# --- output checks -------------------------------------------------------------------


def _check_proba(proba, n_samples, n_classes=N_CLASSES):
    proba = np.asarray(proba)
    assert proba.shape == (n_samples, n_classes)
    assert np.all(np.isfinite(proba)) and proba.min() >= 0
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)


def _check_distiller(ctx, distiller, X, y):
    n_classes = len(np.unique(np.asarray(y)))
    X_syn = distiller.X_synthetic_
    assert X_syn.shape == (n_classes * distiller.ipc, *np.shape(X)[1:])
    assert np.all(np.isfinite(X_syn))
    assert len(distiller.y_synthetic_) == len(X_syn)


def _check_fitted_classifier(ctx, clf, X, y):
    n_classes = len(np.unique(np.asarray(y)))
    _check_proba(clf.predict_proba(X), len(X), n_classes)


def _check_labels(ctx, y_pred, X, y):
    assert y_pred.shape == (len(X),)
    assert np.isin(y_pred, ctx.y).all()


def _check_metric(ctx, value, X, y):
    assert np.isfinite(value) and 0.0 <= value <= 1.0


def _check_curve(ctx, curve, X, y):
    accuracy, confidence, counts = curve
    assert counts.sum() == len(X)
    assert np.all(np.isfinite(accuracy)) and np.all(np.isfinite(confidence))


def _check_report(ctx, report, X, y):
    assert all(np.isfinite(v) for v in report.values())


def _check_masked(ctx, masked, X, y):
    X = np.asarray(X)
    assert isinstance(masked, np.ndarray)
    assert masked.shape == X.shape and masked.dtype == X.dtype
    assert np.all(np.isfinite(masked.astype(np.float64)))
    assert np.all((masked == 0) | (masked == X))


def _check_round_trip(ctx, loaded, X, y):
    np.testing.assert_array_equal(loaded.data, np.asarray(X))
    assert loaded.data.dtype == np.asarray(X).dtype
    np.testing.assert_array_equal(loaded.target, np.asarray(y))


# --- entry points ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Entry:
    """A public entry point: what data it takes, how to call it, how to check its output."""

    data: str  # "images", "flat", "proba" (X is y_prob, y is y_true) or "logits" (y: column indices)
    call: Callable  # (ctx, X, y, params) -> output
    check: Callable  # (ctx, output, X, y) -> None


def _distiller_fit(ctx, X, y, params):
    return DatasetDistiller(**{**TINY_DISTILLER, **params}).fit(X, y)


def _distiller_fit_resample(ctx, X, y, params):
    distiller = DatasetDistiller(**{**TINY_DISTILLER, **params})
    X_syn, y_syn = distiller.fit_resample(X, y)
    assert X_syn is distiller.X_synthetic_ and y_syn is distiller.y_synthetic_
    return distiller


def _distilled_fit(ctx, X, y, params):
    model = DistilledClassifier(DatasetDistiller(**TINY_DISTILLER), ConvNetClassifier(**TINY_NET),
                                calibrator=MaskedTemperatureCalibrator(random_state=0))
    return model.set_params(**params).fit(X, y)


def _metric(func):
    return lambda ctx, y_prob, y_true, params: func(y_true, y_prob, **params)


def _save_and_load(ctx, X, y, params):
    path = save_synthetic_set(ctx.tmp / "set.npz", X, y, **params)
    return load_synthetic_set(path)


ENTRIES = {
    "distiller.fit": Entry("images", _distiller_fit, _check_distiller),
    "distiller.fit_resample": Entry("images", _distiller_fit_resample, _check_distiller),
    "flat_distiller.fit": Entry(
        "flat", lambda ctx, X, y, p: DatasetDistiller(**{**TINY_DISTILLER, **TINY_FLAT, **p}).fit(X, y),
        _check_distiller),
    "classifier.fit": Entry(
        "images", lambda ctx, X, y, p: ConvNetClassifier(**{**TINY_NET, **p}).fit(X, y),
        _check_fitted_classifier),
    "classifier.predict_proba": Entry(
        "images", lambda ctx, X, y, p: ctx.net.predict_proba(X),
        lambda ctx, out, X, y: _check_proba(out, len(X))),
    "mlp_classifier.fit": Entry(
        "flat", lambda ctx, X, y, p: ConvNetClassifier(**{**TINY_MLP, **p}).fit(X, y),
        _check_fitted_classifier),
    "mlp_classifier.predict_proba": Entry(
        "flat", lambda ctx, X, y, p: ctx.mlp.predict_proba(X),
        lambda ctx, out, X, y: _check_proba(out, len(X))),
    "calibrator.fit": Entry(
        "images",
        lambda ctx, X, y, p: MaskedTemperatureCalibrator(
            FrozenEstimator(ctx.net), **{"random_state": 0, **p}).fit(X, y),
        lambda ctx, cal, X, y: (_check_proba(cal.predict_proba(X), len(X)),
                                np.testing.assert_array_less(0, cal.temperatures_))),
    "calibrator.predict_proba": Entry(
        "images", lambda ctx, X, y, p: ctx.calibrator.predict_proba(X),
        lambda ctx, out, X, y: _check_proba(out, len(X))),
    "lr_calibrator.fit": Entry(
        "flat",
        lambda ctx, X, y, p: MaskedTemperatureCalibrator(
            LogisticRegression(max_iter=1000), **{"cv": 2, "random_state": 0, **p}).fit(X, y),
        _check_fitted_classifier),
    "lr_calibrator.predict_proba": Entry(
        "flat", lambda ctx, X, y, p: ctx.calibrator_lr.predict_proba(X),
        lambda ctx, out, X, y: _check_proba(out, len(X))),
    "distilled_classifier.fit": Entry("images", _distilled_fit, _check_fitted_classifier),
    "distilled_classifier.predict": Entry(
        "images", lambda ctx, X, y, p: ctx.distilled.predict(X), _check_labels),
    "expected_calibration_error": Entry("proba", _metric(expected_calibration_error), _check_metric),
    "maximum_calibration_error": Entry("proba", _metric(maximum_calibration_error), _check_metric),
    "adaptive_calibration_error": Entry("proba", _metric(adaptive_calibration_error), _check_metric),
    "classwise_calibration_error": Entry("proba", _metric(classwise_calibration_error), _check_metric),
    "overconfidence_error": Entry("proba", _metric(overconfidence_error), _check_metric),
    "underconfidence_error": Entry("proba", _metric(underconfidence_error), _check_metric),
    "calibration_curve_top_label": Entry("proba", _metric(calibration_curve_top_label), _check_curve),
    "calibration_report": Entry("proba", _metric(calibration_report), _check_report),
    "fit_temperature": Entry(
        "logits", lambda ctx, logits, y, p: fit_temperature(logits, y),
        lambda ctx, t, X, y: (isinstance(t, float) and np.isfinite(t) and t > 0) or pytest.fail(f"T={t!r}")),
    "mask_elements": Entry(
        "images", lambda ctx, X, y, p: mask_elements(X, **{"mask_ratio": 0.5, "random_state": 0, **p}),
        _check_masked),
    "save_synthetic_set": Entry("images", _save_and_load, _check_round_trip),
}
METRICS = [name for name, entry in ENTRIES.items() if entry.data == "proba"]
BINNED = [m for m in METRICS if m not in ("adaptive_calibration_error", "classwise_calibration_error",
                                          "calibration_report")]
FITS = ["distiller.fit", "distiller.fit_resample", "flat_distiller.fit", "classifier.fit", "mlp_classifier.fit",
        "calibrator.fit", "lr_calibrator.fit", "distilled_classifier.fit"]
PREDICTS = ["classifier.predict_proba", "mlp_classifier.predict_proba", "calibrator.predict_proba",
            "lr_calibrator.predict_proba", "distilled_classifier.predict"]
ESTIMATORS = FITS + PREDICTS
ALL = list(ENTRIES)


# --- cases: how each one changes the inputs ------------------------------------------


def _base(ctx, entry):
    if entry.data == "proba":
        return ctx.proba.copy(), ctx.y.copy()
    if entry.data == "logits":
        return np.log(ctx.proba), ctx.y.copy()
    if entry.data == "flat":
        return ctx.flat.copy(), ctx.y.copy()
    return ctx.X.copy(), ctx.y.copy()


def _poke(value):
    def change(X, y):
        X = X.copy()
        X.reshape(-1)[7] = value
        return X, y, {}
    return change


def _with_params(**params):
    return lambda X, y: (X, y, params)


def _keep_one_of_class_9(X, y):
    keep = (y != 9) | (np.cumsum(y == 9) == 1)
    return X[keep], y[keep], {}


def _read_only(X, y):
    X, y = X.copy(), y.copy()
    X.setflags(write=False)
    y.setflags(write=False)
    return X, y, {}


def _dataframe(X, y):
    return pd.DataFrame(X, columns=[f"pixel_{i}" for i in range(X.shape[1])]), pd.Series(y), {}


def _more_channels(X, y):
    return np.repeat(X, 3, axis=1) if X.ndim == 4 else X[:, :-1], y, {}


def _to_dtype(dtype):
    def change(X, y):
        if np.issubdtype(dtype, np.integer):
            # images: non-negative grey levels; probabilities: one-hot predictions
            X = (X == X.max(axis=1, keepdims=True)) if X.ndim == 2 and X.shape[1] == N_CLASSES \
                and np.allclose(X.sum(1), 1) else np.clip(X * 4 + 8, 0, 16)
        return X.astype(dtype), y, {}
    return change


CASES = {
    "nan": _poke(np.nan),
    "inf": _poke(np.inf),
    "empty": lambda X, y: (X[:0], y[:0], {}),
    "wrong-rank": lambda X, y: (X.reshape(len(X), -1, X.shape[-1]) if X.ndim == 4 else X[..., None], y, {}),
    "wrong-rank-1d": lambda X, y: (X.reshape(-1)[: len(y)], y, {}),
    "y-wrong-rank": lambda X, y: (X, np.column_stack([y, y]), {}),
    "length-mismatch": lambda X, y: (X, y[:-1], {}),
    "channels-mismatch": _more_channels,
    "float16": _to_dtype(np.float16),
    "int64": _to_dtype(np.int64),
    "uint8": _to_dtype(np.uint8),
    "mixed-labels-list": lambda X, y: (X, [("nine" if label == 9 else int(label)) for label in y], {}),
    "mixed-labels-object": lambda X, y: (X, np.where(y == 9, "nine", y.astype(object)).astype(object), {}),
    "nan-label": lambda X, y: (X, np.where(y == 9, np.nan, y.astype(np.float64)), {}),
    "string-labels": lambda X, y: (X, np.array([f"digit {k}" for k in y]), {}),
    "one-sample-class": _keep_one_of_class_9,
    "unseen-label": lambda X, y: (X, np.where(np.arange(len(y)) == 3, N_CLASSES, y), {}),
    "huge-ipc": _with_params(ipc=10**9),
    "negative-ratio": _with_params(mask_ratio=-0.1),
    "ratio-one": _with_params(mask_ratio=1.0),
    "ratio-nan": _with_params(mask_ratio=float("nan")),
    "ratio-list-out-of-range": _with_params(mask_ratio=[0.2, 1.5]),
    "ratio-string": _with_params(mask_ratio="0.5"),
    "negative-mdt-ratio": _with_params(mdt_mask_ratio=-0.1),
    "mdt-ratio-string": _with_params(mdt_mask_ratio="0.5"),
    "mdt-ratio-one": _with_params(mdt_mask_ratio=1.0),
    "unknown-method": _with_params(method="kip"),
    "unknown-selection-loss": _with_params(selection_loss="brier"),
    "unknown-strategy": _with_params(strategy="equal"),
    "unknown-device": _with_params(device="banana"),
    "missing-cuda-device": _with_params(device="cuda:99"),
    "negative-stride": lambda X, y: (X[::-1], y[::-1], {}),
    "fortran-order": lambda X, y: (np.asfortranarray(X), y, {}),
    "read-only": _read_only,
    "dataframe": _dataframe,
}


# --- expectations ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Raises:
    exception: type
    param: str  # regex naming the parameter (or what is wrong)


OK = None


def raises(param, exception=ValueError):
    return Raises(exception, param)


def _nested(entry, params):
    """DistilledClassifier reaches its distiller's parameters with a prefix."""
    if entry.startswith("distilled_classifier"):
        return {f"distiller__{k}": v for k, v in params.items()}
    return params


X_ = r"\bX\b"
# scikit-learn's own wording, kept for every estimator (estimator checks rely on it)
EMPTY = r"0 sample\(s\)"
ONE_D = r"Expected 2D array, got 1D array"
EXPECT = {
    "nan": {**{e: raises(X_) for e in ESTIMATORS}, **{m: raises("y_prob") for m in METRICS},
            "mask_elements": raises(X_), "save_synthetic_set": raises(X_)},
    "inf": {**{e: raises(X_) for e in ESTIMATORS}, **{m: raises("y_prob") for m in METRICS},
            "mask_elements": raises(X_), "save_synthetic_set": raises(X_)},
    "empty": {**{e: raises(EMPTY) for e in ESTIMATORS}, **{m: raises("y_true and y_prob") for m in METRICS},
              "mask_elements": OK, "save_synthetic_set": raises(X_)},
    "wrong-rank": {**{e: raises(X_) for e in ESTIMATORS}, **{m: raises("y_prob") for m in METRICS},
                   # an MLP flattens whatever follows the sample axis
                   "mlp_classifier.fit": OK,
                   # the wrapped LogisticRegression's own check: 3-D is an image, it takes a table
                   "lr_calibrator.fit": raises("dim 3"), "lr_calibrator.predict_proba": raises("dim 3"),
                   "mask_elements": OK, "save_synthetic_set": OK},
    "wrong-rank-1d": {**{e: raises(ONE_D) for e in ESTIMATORS}, "mask_elements": OK,
                      "save_synthetic_set": raises(X_)},
    "y-wrong-rank": {**{e: raises(r"\by\b") for e in FITS}, **{m: raises("y_true") for m in METRICS},
                     "save_synthetic_set": raises(r"\by\b")},
    "length-mismatch": {**{e: raises("inconsistent numbers of samples") for e in FITS},
                        **{m: raises("y_true and y_prob") for m in METRICS},
                        "save_synthetic_set": raises(r"\by\b")},
    "channels-mismatch": {**{e: raises(X_) for e in PREDICTS}, **{m: raises("y_prob") for m in METRICS}},
    "float16": {**{e: OK for e in ALL}},
    "int64": {**{e: OK for e in ALL}},
    "uint8": {**{e: OK for e in ALL}},
    "mixed-labels-list": {**{e: raises(r"\by\b") for e in FITS}, **{m: raises("y_true") for m in METRICS},
                          "save_synthetic_set": raises(r"\by\b")},
    "mixed-labels-object": {**{e: raises(r"\by\b") for e in FITS}, **{m: raises("y_true") for m in METRICS},
                            "save_synthetic_set": raises(r"\by\b")},
    "nan-label": {**{e: raises(r"\by\b") for e in FITS}, **{m: raises("y_true") for m in METRICS},
                  "save_synthetic_set": raises(r"\by\b")},
    "string-labels": {**{e: OK for e in FITS if e != "calibrator.fit"}, **{m: OK for m in METRICS},
                      "calibrator.fit": raises(r"\by\b"),  # the frozen network knows 0..9 only
                      "save_synthetic_set": OK},
    "one-sample-class": {**{e: OK for e in FITS}, **{m: OK for m in METRICS},
                         "lr_calibrator.fit": raises(r"\bcv\b"), "save_synthetic_set": OK},
    "unseen-label": {**{m: raises("labels") for m in METRICS}, "calibrator.fit": raises(r"\by\b"),
                     "classifier.fit": OK},  # a new class is just one more class at fit
    "huge-ipc": {"distiller.fit": raises("ipc"), "distiller.fit_resample": raises("ipc"),
                 "distilled_classifier.fit": raises("ipc")},
    "negative-ratio": {"calibrator.fit": raises("mask_ratio"), "lr_calibrator.fit": raises("mask_ratio"),
                       "mask_elements": raises("mask_ratio")},
    "ratio-one": {"calibrator.fit": raises("mask_ratio"), "lr_calibrator.fit": raises("mask_ratio"),
                  "mask_elements": raises("mask_ratio")},
    "ratio-nan": {"calibrator.fit": raises("mask_ratio"), "mask_elements": raises("mask_ratio")},
    "ratio-list-out-of-range": {"calibrator.fit": raises("mask_ratio"),
                                "lr_calibrator.fit": raises("mask_ratio")},
    "ratio-string": {"calibrator.fit": raises("mask_ratio", TypeError),
                     "lr_calibrator.fit": raises("mask_ratio", TypeError),
                     "mask_elements": raises("mask_ratio", TypeError)},
    "mdt-ratio-string": {"distiller.fit": raises("mdt_mask_ratio", TypeError),
                         "distilled_classifier.fit": raises("mdt_mask_ratio", TypeError)},
    "negative-mdt-ratio": {"distiller.fit": raises("mdt_mask_ratio"),
                           "distilled_classifier.fit": raises("mdt_mask_ratio")},
    "mdt-ratio-one": {"distiller.fit": raises("mdt_mask_ratio"),
                      "distilled_classifier.fit": raises("mdt_mask_ratio")},
    "unknown-method": {"distiller.fit": raises("method"), "distilled_classifier.fit": raises("method")},
    "unknown-selection-loss": {"calibrator.fit": raises("selection_loss")},
    "unknown-strategy": {m: raises("strategy") for m in BINNED},
    "unknown-device": {"distiller.fit": raises("device"), "classifier.fit": raises("device"),
                       "distilled_classifier.fit": raises("device")},
    "missing-cuda-device": {"distiller.fit": raises("device"), "classifier.fit": raises("device")},
    "negative-stride": {e: OK for e in ALL},
    "fortran-order": {e: OK for e in ALL},
    "read-only": {e: OK for e in ALL},
    "dataframe": {**{e: OK for e, entry in ENTRIES.items() if entry.data in ("flat", "proba")},
                  "mask_elements": OK},
}


# fit_temperature: logits and column indices, the core of every calibrator
_T = "fit_temperature"
for _case, _expectation in {
    "nan": raises("logits"), "inf": raises("logits"), "empty": raises(EMPTY),
    "wrong-rank": raises("dim 3"), "wrong-rank-1d": raises(ONE_D), "y-wrong-rank": raises(r"\by\b"),
    "length-mismatch": raises(r"\by\b"), "float16": OK, "int64": OK, "uint8": OK,
    "mixed-labels-list": raises(r"\by\b"), "mixed-labels-object": raises(r"\by\b"),
    "nan-label": raises(r"\by\b"), "string-labels": raises(r"\by\b"), "one-sample-class": OK,
    "unseen-label": raises(r"\by\b"), "negative-stride": OK, "fortran-order": OK, "read-only": OK,
    "dataframe": OK,
}.items():
    EXPECT[_case][_T] = _expectation


def _rows():
    for case, per_entry in EXPECT.items():
        for entry, expectation in per_entry.items():
            yield pytest.param(entry, case, expectation, id=f"{entry}-{case}")


ROWS = list(_rows())


@pytest.mark.parametrize("entry_name, case, expectation", ROWS)
def test_validation_matrix(ctx, entry_name, case, expectation):
    entry = ENTRIES[entry_name]
    X, y = _base(ctx, entry)
    if case == "dataframe" and entry.data == "images":
        X = X.reshape(len(X), -1)  # flat features for the DataFrame
    X, y, params = CASES[case](X, y)
    params = _nested(entry_name, params)
    if case == "missing-cuda-device":
        import torch

        if torch.cuda.device_count() > 99:
            pytest.skip("this machine has 100 GPUs")
    with warnings.catch_warnings():
        # no silent overflow or invalid-value arithmetic on any row
        warnings.simplefilter("error", RuntimeWarning)
        # the shared fixtures were fitted on arrays: scikit-learn rightly notes the new names
        warnings.filterwarnings("ignore", "X has feature names", UserWarning)
        if expectation is OK:
            output = entry.call(ctx, X, y, params)
            entry.check(ctx, output, X, y)
        else:
            with pytest.raises(expectation.exception, match=expectation.param) as info:
                entry.call(ctx, X, y, params)
            # the error comes from our validation or scikit-learn's, never from deep in torch
            assert "/torch/" not in str(info.traceback[-1].path)


def test_matrix_size():
    """The number of rows (reported in the issue); every case and entry is exercised."""
    assert set(EXPECT) == set(CASES)
    used = {entry for per_entry in EXPECT.values() for entry in per_entry}
    assert used == set(ENTRIES)
    assert len(ROWS) >= 300


"""JSON persistence of a fitted :class:`~ddcal_sklearn.MaskedTemperatureCalibrator`'s calibration.

The calibrator's ``save_calibration`` writes the file through :func:`write_calibration_state`;
``load_calibration`` (beside the class, which it builds) reads it through
:func:`read_calibration_state`. Only temperatures, classes, input size and parameters
are stored: never an estimator, never pickle.
"""

import json
import math
import numbers

import numpy as np
from sklearn.frozen import FrozenEstimator
from sklearn.utils import Bunch
from sklearn.utils.validation import check_is_fitted

from ..masking import check_mask_ratio
from ..utils import (
    __version__,
    atomic_write,
    check_format_version,
    is_jsonable,
    open_regular_file,
    parse_json,
    to_jsonable,
)
from ._temperature import LOG_BETA_BOUNDS

__all__ = ["CALIBRATION_FORMAT", "CALIBRATION_FORMAT_VERSION", "MAX_SAVED_TEMPERATURES", "read_calibration_state",
           "saved_temperatures", "write_calibration_state"]

# The JSON files of MaskedTemperatureCalibrator.save_calibration / load_calibration.
CALIBRATION_FORMAT = "ddcal_sklearn.MaskedTemperatureCalibrator"
# 2: a binary decision_function margin d is scaled as the logits (-d, d) (scikit-learn's
# convention) instead of (0, d); version-1 temperatures of such estimators are doubled on load.
CALIBRATION_FORMAT_VERSION = 2

# The temperatures fit_temperature can produce, T = exp(-log_beta) with log_beta in LOG_BETA_BOUNDS,
# widened by a relative 1e-9 for the rounding of exp: a file holding anything else (5e-324 gives
# NaN probabilities) was not written by a fit.
_TEMPERATURE_RANGE = (math.exp(-LOG_BETA_BOUNDS[1]) * (1 - 1e-9), math.exp(-LOG_BETA_BOUNDS[0]) * (1 + 1e-9))
#: The most temperatures a calibration file holds: a fit keeps one per cross-validation fold
#: (``ensemble=True``), and ``predict_proba`` evaluates the estimator once per temperature. Over 1000
#: folds is leave-one-out on more than 1000 samples, each temperature fitted on one sample, at
#: 1000 evaluations per prediction; no useful calibration needs it, and a file claiming tens of
#: thousands would make every prediction take that many passes.
MAX_SAVED_TEMPERATURES = 1000


def _real_numbers(values, name):
    """``values`` as a float64 array if it is a list of JSON numbers (not booleans, not strings)."""
    if not isinstance(values, list) or not all(
            isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values):
        raise ValueError(f"{name} must be a list of numbers, got {_short_repr(values)}")
    return np.asarray(values, dtype=np.float64)


def _short_repr(value, width=80):
    text = repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."


def _refuse_constant(name):
    raise ValueError(f"{name} is not a JSON number (save_calibration writes only finite numbers)")


def _check_temperatures(values):
    """The temperatures as a float64 array if a fit can have produced them; the rule of writer and reader.

    One to :data:`MAX_SAVED_TEMPERATURES` finite real numbers (not booleans, not strings)
    within the bounds of :func:`~ddcal_sklearn.fit_temperature` (``exp(-10)`` to
    ``exp(10)``); ValueError otherwise.
    """
    temperatures = _real_numbers(values, "temperatures")
    low, high = _TEMPERATURE_RANGE
    if not 1 <= temperatures.size <= MAX_SAVED_TEMPERATURES:
        raise ValueError(f"temperatures must hold 1 to {MAX_SAVED_TEMPERATURES} values (one per cross-validation "
                         f"fold), got {temperatures.size}")
    outside = temperatures[~((temperatures >= low) & (temperatures <= high))]  # NaN fails both
    if outside.size:
        raise ValueError(f"temperatures must be finite numbers in [exp(-10), exp(10)] = [{low:.6g}, {high:.6g}] "
                         f"(the range of fit_temperature), got {outside[:5].tolist()}")
    return temperatures


def write_calibration_state(calibrator, path):
    """Write the calibration of a fitted calibrator of a ``FrozenEstimator`` to ``path`` (JSON, atomic)."""
    check_is_fitted(calibrator)
    frozen = calibrator.estimator
    if not isinstance(frozen, FrozenEstimator) or any(
            pair.estimator is not frozen for pair in calibrator.calibrated_classifiers_):
        raise ValueError(
            "save_calibration saves temperatures, not estimators, so it needs a calibrator of a "
            f"FrozenEstimator whose estimator you save separately; this one (estimator="
            f"{type(calibrator.estimator).__name__}, cv={calibrator.cv!r}, ensemble={calibrator.ensemble!r}) "
            f"holds {len(calibrator.calibrated_classifiers_)} estimator(s) it fitted itself, which only "
            "pickle or joblib can save: joblib.dump(calibrator, path), and load such files "
            "only from sources you trust."
        )
    if len(calibrator.temperatures_) > MAX_SAVED_TEMPERATURES:
        raise ValueError(
            f"save_calibration writes at most {MAX_SAVED_TEMPERATURES} temperatures (one per cross-validation "
            f"fold), and this calibrator holds {len(calibrator.temperatures_)}: fit it with fewer folds or "
            "ensemble=False, or save it with joblib.dump."
        )
    _check_temperatures([float(t) for t in calibrator.temperatures_])
    params, unsaved = {}, []
    for name, value in calibrator.get_params(deep=False).items():
        if name == "estimator":
            continue
        if is_jsonable(value):
            params[name] = to_jsonable(value)
        else:
            params[name] = None
            unsaved.append(name)
    losses = calibrator.mask_ratio_losses_
    inner = frozen.estimator
    state = {
        "format": CALIBRATION_FORMAT,
        "format_version": CALIBRATION_FORMAT_VERSION,
        "ddcal_sklearn_version": __version__,
        "estimator_class": f"{type(inner).__module__}.{type(inner).__qualname__}",
        "params": params,
        "unsaved_params": unsaved,
        "classes": np.asarray(calibrator.classes_).tolist(),
        "n_features_in": int(calibrator.n_features_in_),
        "feature_names_in": (np.asarray(calibrator.feature_names_in_).tolist()
                             if hasattr(calibrator, "feature_names_in_") else None),
        "temperatures": [float(t) for t in calibrator.temperatures_],
        "mask_ratio": float(calibrator.mask_ratio_),
        "mask_ratio_losses": None if losses is None else {
            "mask_ratios": np.asarray(losses.mask_ratios, dtype=np.float64).tolist(),
            "losses": np.asarray(losses.losses, dtype=np.float64).tolist(),
        },
    }
    try:
        text = json.dumps(state, indent=2, allow_nan=False)
    except (TypeError, ValueError) as exc:  # classes of another type, non-finite losses
        raise ValueError(f"The calibration cannot be written as JSON: {exc}") from exc
    return atomic_write(path, lambda file: file.write(text.encode("utf-8")))


def read_calibration_state(path):
    """The validated JSON state of a saved calibration (a Bunch); ValueError for anything else.

    Read with the rules of the writer: only a regular file, temperatures a fit can
    produce (:func:`_check_temperatures`), JSON of any nesting reported as ValueError.
    """
    try:
        with open_regular_file(path, what="calibration file") as file:
            text = file.read().decode("utf-8")
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not a readable calibration file: {exc}") from exc
    try:
        state = parse_json(text, parse_constant=_refuse_constant)  # the writer's allow_nan=False
    except ValueError as exc:  # JSONDecodeError, NaN or Infinity, or nesting too deep
        raise ValueError(f"{path} is not a saved calibration (invalid JSON: {exc}).") from exc
    if not isinstance(state, dict) or state.get("format") != CALIBRATION_FORMAT:
        raise ValueError(
            f"{path} is not a saved calibration: it lacks \"format\": \"{CALIBRATION_FORMAT}\" "
            "(files written by MaskedTemperatureCalibrator.save_calibration have it)."
        )
    check_format_version(state.get("format_version"), CALIBRATION_FORMAT_VERSION, path=path,
                         what="calibration files")
    try:
        classes = state["classes"]
        if not isinstance(classes, list) or len(classes) < 2 or len(set(map(repr, classes))) != len(classes):
            raise ValueError(f"classes must be a list of at least 2 distinct labels, got {classes!r}")
        temperatures = _check_temperatures(state["temperatures"])
        mask_ratio = check_mask_ratio(state["mask_ratio"])
        n_features = state["n_features_in"]
        if isinstance(n_features, bool) or not isinstance(n_features, int) or n_features < 1:
            raise ValueError(f"n_features_in must be a positive integer, got {n_features!r}")
        names = state["feature_names_in"]
        if names is not None and (not isinstance(names, list) or len(names) != n_features
                                  or not all(isinstance(name, str) for name in names)):
            raise ValueError(f"feature_names_in must be null or {n_features} strings, got {names!r}")
        losses = state["mask_ratio_losses"]
        if losses is not None:
            losses = Bunch(mask_ratios=_real_numbers(losses["mask_ratios"], "mask_ratio_losses.mask_ratios"),
                           losses=_real_numbers(losses["losses"], "mask_ratio_losses.losses"))
            if losses.mask_ratios.ndim != 1 or losses.mask_ratios.shape != losses.losses.shape:
                raise ValueError("mask_ratio_losses must hold mask_ratios and losses of equal length")
        params = state["params"]
        if not isinstance(params, dict):
            raise ValueError(f"params must be a JSON object, got {params!r}")
        unsaved = state.get("unsaved_params", [])
        if not isinstance(unsaved, list) or not all(isinstance(name, str) for name in unsaved):
            raise ValueError(f"unsaved_params must be a list of parameter names, got {unsaved!r}")
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path} is a corrupted calibration file: {exc}") from exc
    return Bunch(format_version=state["format_version"], classes=classes, temperatures=temperatures,
                 mask_ratio=mask_ratio, n_features_in=n_features, feature_names_in=names,
                 mask_ratio_losses=losses, params=params, unsaved_params=unsaved)


def saved_temperatures(state, estimator):
    """The temperatures of ``state`` for today's logits of ``estimator`` (the fitted inner estimator).

    Format 1 scaled a binary ``decision_function`` margin ``d`` as the logits ``(0, d)``;
    today's ``(-d, d)`` (scikit-learn's convention) doubles every logit gap, so the same
    probabilities need twice the temperature. scikit-learn's API fixes a binary
    ``decision_function`` to one margin per sample, which this relies on.
    """
    if state.format_version == 1 and len(state.classes) == 2 and hasattr(estimator, "decision_function"):
        return 2.0 * state.temperatures
    return state.temperatures

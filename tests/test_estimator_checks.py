"""scikit-learn's estimator checks over every public estimator, and imbalanced-learn's sampler checks."""

import numpy as np
import pytest
from imblearn.utils import estimator_checks as imblearn_checks
from sklearn.utils.estimator_checks import parametrize_with_checks

from ddcal_sklearn import (
    MLP,
    ConvNetClassifier,
    DatasetDistiller,
    DistilledClassifier,
    ExpertTrajectories,
    MaskedTemperatureCalibrator,
    ZCAWhitening,
)

# scikit-learn's checks feed 2-D tabular data, so every network here is a small MLP (the
# image path, ConvNet on (n, C, H, W), is tested in the estimators' own test files), and
# every loop is a few steps: the point is the API contract, not accuracy.
NET = dict(module=MLP, max_epochs=20, lr=0.05, module__hidden_sizes=(32,), random_state=0)
DISTILLER = dict(method="dm", augment=None, ipc=1, n_iterations=2, batch_real=8,
                 net_params={"hidden_sizes": (8,)}, random_state=0)

ESTIMATORS = [
    ConvNetClassifier(**NET),
    MaskedTemperatureCalibrator(cv=3, random_state=0),
    MaskedTemperatureCalibrator(mask_ratio=0.0, cv=3, random_state=0),  # temperature scaling: weights exact
    MaskedTemperatureCalibrator(mask_ratio=[0.0, 0.3], cv=3, random_state=0),
    DatasetDistiller(**DISTILLER),
    ExpertTrajectories(n_experts=1, n_epochs=1, augment=None, batch_size=16,
                       net_params={"hidden_sizes": (8,)}, random_state=0),
    DistilledClassifier(DatasetDistiller(**DISTILLER), ConvNetClassifier(**NET)),
    DistilledClassifier(DatasetDistiller(**DISTILLER), ConvNetClassifier(**NET),
                        calibrator=MaskedTemperatureCalibrator(random_state=0)),
    ZCAWhitening(),
    ZCAWhitening(eps=1e-3, compute_inv=False, unbiased=False),  # no inverse_transform, covariance / n
]

# skorch sets bookkeeping attributes (history_, initialized_, virtual_params_) and stores
# prefixed parameters (optimizer__momentum, module__*) as attributes in __init__; that is
# how skorch exposes every sub-component to set_params/GridSearchCV, so this check cannot
# pass for any skorch net.
SKORCH_EXPECTED_FAILURES = {
    "check_no_attributes_set_in_init": (
        "skorch's NeuralNet.__init__ sets history_, initialized_, virtual_params_ and stores "
        "prefixed parameters (optimizer__momentum, ...) as attributes by design"
    ),
}


# The network computes in float32, and a batch of 1 row and a batch of 20 go through different
# BLAS kernels (matrix-vector against matrix-matrix products), whose float32 results differ in
# the last bit (2.4e-7 on this check's data). A float32 output is compared at float32 tolerance
# (rtol=1e-4) and passes; the calibrator returns logits / T as float64, which scikit-learn then
# compares at float64 tolerance (rtol=1e-7, atol=1e-7): float32 rounding, not a dependence of a
# prediction on the rest of its batch (ConvNet and MLP have no batch statistics).
FLOAT32_THROUGH_FLOAT64_FAILURES = {
    "check_methods_subset_invariance": (
        "float32 network outputs (1-row and 20-row BLAS kernels differ in the last float32 bit) "
        "returned as float64 by the calibrator and compared at float64 tolerance"
    ),
}


# Masked temperature scaling draws one fresh mask per row: a row repeated 3 times is seen under
# 3 masks, the same row with weight 3 under one, so weights and repetitions give different
# temperatures by design. With mask_ratio=0 nothing is random and the check runs (and passes);
# with a list of ratios it passes when the selection picks 0 (it does on this data: an XPASS).
MASKED_WEIGHT_FAILURES = {
    f"check_sample_weight_equivalence_on_{kind}_data": (
        "one random mask per row: a repeated row is seen under several masks, a weighted row under one"
    ) for kind in ("dense", "sparse")
}


def _expected_failed_checks(estimator):
    if isinstance(estimator, ConvNetClassifier):
        return SKORCH_EXPECTED_FAILURES
    if isinstance(estimator, MaskedTemperatureCalibrator) and np.ndim(estimator.mask_ratio) == 0 \
            and estimator.mask_ratio > 0:  # (a list of ratios here selects 0.0 on the check's data: it passes)
        return MASKED_WEIGHT_FAILURES
    if isinstance(estimator, DistilledClassifier) and estimator.calibrator is not None:
        return FLOAT32_THROUGH_FLOAT64_FAILURES
    return {}


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failed_checks)
def test_scikit_learn_compatible(estimator, check):
    check(estimator)


# DatasetDistiller is a sampler (fit_resample), which scikit-learn's checks do not know.
# imbalanced-learn's own generator needs imbalanced-learn's tag classes, so its sampler checks
# are called one by one. Left out, because they test imbalanced-learn's base class rather than
# the protocol: check_samplers_fit (asserts a sampling_strategy_ attribute; the distiller has
# ipc instead), check_samplers_multiclass_ova (one-hot y: the distiller takes class labels
# only, and says so), check_samplers_sparse / _pandas_sparse / _string / _nan (the input tags
# declare none of these), check_samplers_sample_indices (synthetic samples have no indices),
# check_sampler_get_feature_names_out* (the distiller is not a transformer).
SAMPLER_CHECKS = [
    imblearn_checks.check_target_type,
    imblearn_checks.check_samplers_one_label,
    imblearn_checks.check_samplers_fit_resample,
    imblearn_checks.check_samplers_preserve_dtype,
    imblearn_checks.check_samplers_2d_target,
    # the container given comes back: a list for lists, a DataFrame/Series with the same columns/name
    imblearn_checks.check_samplers_list,
    imblearn_checks.check_samplers_pandas,
]


@pytest.mark.filterwarnings("ignore:A column-vector y was passed:sklearn.exceptions.DataConversionWarning")
@pytest.mark.parametrize("check", SAMPLER_CHECKS, ids=lambda check: check.__name__)
def test_distiller_follows_the_sampler_protocol(check):
    check("DatasetDistiller", DatasetDistiller(**DISTILLER))

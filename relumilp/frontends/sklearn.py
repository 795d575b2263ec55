"""The scikit-learn frontend: ``MLPRegressor`` / ``MLPClassifier``, alone or in a ``Pipeline`` with scalers.

An MLP's ``coefs_`` / ``intercepts_`` become affine nodes (scikit-learn stores ``W`` as (in, out), the
IR as (out, in)) with the hidden activation between them: ``relu`` or ``identity`` (``logistic`` and
``tanh`` are not piecewise linear and are refused). The output is the last affine layer *before*
scikit-learn's output function: for a regressor that is the prediction itself (``out_activation_`` is
``identity``); for a classifier it is the logit(s), whose argmax (or sign, for one logistic output) is
the predicted class -- ``predict_proba`` would apply a softmax or logistic function on top.

Scalers before the MLP are folded into the first affine layer, exactly as affine maps compose:
``StandardScaler`` ``x -> (x - mean) / scale`` and ``MinMaxScaler`` ``x -> x * scale_ + min_``. A
target scaler is not part of a scikit-learn ``Pipeline``; wrap the result yourself if you used one.
scikit-learn itself is imported only to recognise the objects, never required by relumilp.
"""

from __future__ import annotations

import numpy as np

from ..errors import UnsupportedOperatorError
from ..ir import Network

#: scikit-learn hidden activations that compile exactly
ACTIVATIONS = {"relu": "relu", "identity": "identity"}
SCALERS = ("StandardScaler", "MinMaxScaler")


def is_sklearn(obj) -> bool:
    """Whether ``obj`` is a scikit-learn estimator (recognised by its module, without importing sklearn)."""
    return type(obj).__module__.startswith("sklearn.")


def _scaler_map(step) -> tuple[np.ndarray, np.ndarray]:
    """``(d, e)`` with ``step.transform(x) == d * x + e`` for a fitted scaler."""
    kind = type(step).__name__
    if kind == "StandardScaler":
        scale = np.ones(step.n_features_in_) if step.scale_ is None else np.asarray(step.scale_, dtype=np.float64)
        mean = np.zeros(step.n_features_in_) if step.mean_ is None else np.asarray(step.mean_, dtype=np.float64)
        return 1.0 / scale, -mean / scale
    if kind == "MinMaxScaler":
        if getattr(step, "clip", False):
            raise UnsupportedOperatorError("MinMaxScaler(clip=True) (a clamp before the network)", SCALERS,
                                           "refit it with clip=False")
        return np.asarray(step.scale_, dtype=np.float64), np.asarray(step.min_, dtype=np.float64)
    raise UnsupportedOperatorError(f"scikit-learn pipeline step {kind}", (*SCALERS, "MLPRegressor", "MLPClassifier"))


def from_sklearn(model, name: str | None = None) -> Network:
    """The IR of a fitted ``MLPRegressor`` / ``MLPClassifier``, or of a ``Pipeline`` of scalers and one."""
    steps = [step for _, step in model.steps] if type(model).__name__ == "Pipeline" else [model]
    steps = [step for step in steps if step not in (None, "passthrough")]
    *scalers, mlp = steps
    kind = type(mlp).__name__
    if kind not in ("MLPRegressor", "MLPClassifier"):
        raise UnsupportedOperatorError(f"scikit-learn estimator {kind}", ("MLPRegressor", "MLPClassifier"),
                                       "the last step of a pipeline must be the MLP")
    if not hasattr(mlp, "coefs_"):
        raise UnsupportedOperatorError(f"unfitted {kind}", ("fitted estimators",), "call fit() first")
    if mlp.activation not in ACTIVATIONS:
        raise UnsupportedOperatorError(f"MLP activation {mlp.activation!r} (not piecewise linear)", ACTIVATIONS)
    layers = [(np.asarray(W, dtype=np.float64).T.copy(), np.asarray(b, dtype=np.float64).copy())
              for W, b in zip(mlp.coefs_, mlp.intercepts_)]
    # fold the scalers into the first layer, last scaler first: W (d x + e) + b = (W d) x + (W e + b)
    for scaler in reversed(scalers):
        d, e = _scaler_map(scaler)
        W, b = layers[0]
        layers[0] = (W * d, W @ e + b)
    return Network.sequential(layers, ACTIVATIONS[mlp.activation], name=name or kind)

"""The scikit-learn frontend: ``MLPRegressor`` / ``MLPClassifier``, alone or in a ``Pipeline`` with scalers.

An MLP's ``coefs_`` / ``intercepts_`` become affine nodes (scikit-learn stores ``W`` as (in, out), the
IR as (out, in)) with the hidden activation between them: ``relu`` and ``identity`` (exact), or
``logistic`` and ``tanh`` (the smooth kinds ``sigmoid`` and ``tanh``: their MILP is an outer relaxation,
see :mod:`relumilp.activations.smooth`). The output is the last affine layer *before*
scikit-learn's output function: for a regressor that is the prediction itself (``out_activation_`` is
``identity``; with ``loss="poisson"`` it is ``exp``, and the network ends with an exp neuron, so that its
output is still ``predict``); for a classifier it is the logit(s), whose argmax (or sign, for one logistic output) is
the predicted class -- ``predict_proba`` would apply a softmax or logistic function on top.

Scalers before the MLP are folded into the first affine layer, exactly as affine maps compose:
``StandardScaler`` ``x -> (x - mean) / scale``, ``MinMaxScaler`` ``x -> x * scale_ + min_``,
``MaxAbsScaler`` ``x -> x / max_abs`` and ``RobustScaler`` ``x -> (x - center) / scale`` (each part only
where the scaler was fitted with it). A
target scaler is not part of a scikit-learn ``Pipeline``; wrap the result yourself if you used one.
scikit-learn itself is imported only to recognise the objects, never required by relumilp.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidNetworkError, UnsupportedOperatorError
from ..ir import ActivationNode, Network
from .. import activations as _activations

#: scikit-learn hidden activations and their IR kinds
ACTIVATIONS = {"relu": "relu", "identity": "identity", "logistic": "sigmoid", "tanh": "tanh"}
SCALERS = ("StandardScaler", "MinMaxScaler", "MaxAbsScaler", "RobustScaler")


def is_sklearn(obj) -> bool:
    """Whether ``obj`` is a scikit-learn estimator (recognised by its module, without importing sklearn)."""
    return type(obj).__module__.startswith("sklearn.")


def _scaler_map(step) -> tuple[np.ndarray, np.ndarray]:
    """``(d, e)`` with ``step.transform(x) == d * x + e`` for a fitted scaler."""
    kind = type(step).__name__
    if kind == "StandardScaler":
        scale = np.ones(step.n_features_in_) if step.scale_ is None else np.asarray(step.scale_, dtype=np.float64)
        # with_mean=False still stores mean_ (a statistic) but transform() does not subtract it
        centred = getattr(step, "with_mean", True) and step.mean_ is not None
        mean = np.asarray(step.mean_, dtype=np.float64) if centred else np.zeros(step.n_features_in_)
        return 1.0 / scale, -mean / scale
    if kind == "MinMaxScaler":
        if getattr(step, "clip", False):
            raise UnsupportedOperatorError("MinMaxScaler(clip=True) (a clamp before the network)", SCALERS,
                                           "refit it with clip=False")
        return np.asarray(step.scale_, dtype=np.float64), np.asarray(step.min_, dtype=np.float64)
    if kind == "MaxAbsScaler":
        return 1.0 / np.asarray(step.scale_, dtype=np.float64), np.zeros(step.n_features_in_)
    if kind == "RobustScaler":
        n = step.n_features_in_
        scale = np.ones(n) if step.scale_ is None else np.asarray(step.scale_, dtype=np.float64)
        center = np.zeros(n) if step.center_ is None else np.asarray(step.center_, dtype=np.float64)
        return 1.0 / scale, -center / scale
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
        raise UnsupportedOperatorError(f"MLP activation {mlp.activation!r}", ACTIVATIONS)
    layers = [(np.asarray(W, dtype=np.float64).T.copy(), np.asarray(b, dtype=np.float64).copy())
              for W, b in zip(mlp.coefs_, mlp.intercepts_)]
    for k, (W, b) in enumerate(layers):
        if not (np.isfinite(W).all() and np.isfinite(b).all()):
            raise InvalidNetworkError(f"layer {k} of the {kind} (coefs_[{k}], intercepts_[{k}]) has NaN or "
                                      "infinite weights; check the training")
    # fold the scalers into the first layer, last scaler first: W (d x + e) + b = (W d) x + (W e + b)
    for scaler in reversed(scalers):
        d, e = _scaler_map(scaler)
        W, b = layers[0]
        layers[0] = (W * d, W @ e + b)
    net = Network.sequential(layers, ACTIVATIONS[mlp.activation], name=name or kind)
    out = getattr(mlp, "out_activation_", "identity")
    if kind == "MLPRegressor" and out != "identity":
        # predict() applies the output function (exp for loss="poisson"): the network's output is the prediction
        if out != "exp":
            raise UnsupportedOperatorError(f"MLPRegressor output activation {out!r}", ["identity", "exp"])
        last = net.order[-1]
        exp = ActivationNode("output_exp", last.size, (last.name,), _activations.get("exp"))
        net = Network([*net.order, exp], exp.name, name=net.name)
    return net

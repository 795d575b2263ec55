r"""A target-driven recipe for networks that are cheap to optimise over, within an accuracy budget.

:class:`MilpFriendlyRecipe` (also ``fit_surrogate(..., milp_friendly=True, max_mse_ratio=r)``):

1. **Reference.** Train the plain network with the given settings; its validation MSE ``m_0`` sets the
   budget ``r * m_0``.
2. **Regularise, warm-started.** For a weight ``λ``, start from the plain network and train for
   ``regularize_epochs`` with a stability loss from symbolic (CROWN-style) bounds over the input box
   (:class:`~relumilp.train.regularizers.ReLUStabilityPenalty` or
   :class:`~relumilp.train.regularizers.UnstableCountPenalty`, optionally with L1 proximal steps), its
   weight ramped from 0 to ``λ`` (:class:`~relumilp.train.fit.LambdaSchedule`). The plain training is
   the warm-up: the network starts from a good fit and is moved towards stability, instead of being
   regularised from a random start.
3. **Prune and fine-tune, phase-preserving.** The neurons that sound bounds
   (:func:`relumilp.compute_bounds`) prove stable or dead over the box -- exactly the ones
   :func:`relumilp.pruning.prune` removes -- get their phase fixed (:func:`stable_phases`); a short
   fine-tune on the data loss alone, with :class:`~relumilp.train.regularizers.PhasePenalty` keeping
   those phases, recovers accuracy. Sound bounds of the fine-tuned network then verify that every fixed
   neuron kept its phase; if one did not, the network before the fine-tune is kept (so pruning what the
   regulariser made stable stays lossless).
4. **Search.** ``λ`` is bisected on a log scale in ``[lambda_min, lambda_max]``: a candidate within the
   budget moves the search to larger weights, one outside it to smaller ones. Candidates are compared by
   a cheap proxy of the MILP's cost (:func:`milp_cost`: binaries, then the sum of big-M coefficients,
   after ``proxy`` bounds -- LP-OBBT by default); the cheapest candidate within the budget wins, and the
   plain network is the fallback, so the result always meets the budget on the validation split.
5. **Confirm** (optional, ``confirm=("max", k)`` or ``("min", k)``): solve the big-M MILP of the chosen
   network (:func:`relumilp.optimize`, ``method="milp"``) and record its time.

The validation MSE is measured in standardised output units on the validation rows fixed by ``seed``
(the same rows for every candidate).
"""

from __future__ import annotations

import math
import sys
import time

import numpy as np
import torch
from torch import nn

from ..choices import SOLVER_BOUND_METHODS
from ..errors import RelumilpError
from .fit import LambdaSchedule, _as_2d, fit_surrogate

__all__ = ["MilpFriendlyRecipe", "stable_phases", "milp_cost", "to_network"]

PENALTIES = ("stability", "unstable")


def to_network(model: nn.Module):
    """The IR network of a trained ``nn.Sequential`` (through the torch frontend)."""
    from ..frontends import load_network

    return load_network(model)


def _bounds(net, lower, upper, method: str, time_limit: float | None = None):
    from ..bounds import compute_bounds

    options = {"workers": 1} if method in SOLVER_BOUND_METHODS else {}
    if time_limit is not None and method in SOLVER_BOUND_METHODS:
        options["time_limit"] = time_limit
    return compute_bounds(net, (lower, upper), method, **options)


def stable_phases(model: nn.Module, lower, upper, method: str = "symbolic") -> list[np.ndarray]:
    """Per hidden layer, ``+1`` for neurons proven stably active over the box, ``-1`` for stably inactive
    (dead) ones, ``0`` for unstable ones, by sound ``method`` bounds (single-kink activations)."""
    from ..bounds.base import phases

    net = to_network(model)
    bounds = _bounds(net, lower, upper, method)
    out = []
    for node in net.activations:
        if len(node.activation.breakpoints) != 1:
            raise RelumilpError(f"stable_phases needs activations with one kink, got {type(node.activation).__name__}")
        ph = phases(node, *bounds.pre_activation(net, node))
        out.append(np.where(ph.stable_active, 1, np.where(ph.stable_inactive, -1, 0)).astype(np.int8))
    return out


def _phases_kept(fixed: list[np.ndarray], now: list[np.ndarray]) -> bool:
    return all(np.all(now_k[f_k != 0] == f_k[f_k != 0]) for f_k, now_k in zip(fixed, now))


def milp_cost(model: nn.Module, lower, upper, method: str = "lp", time_limit: float | None = 30.0) -> dict:
    """The cheap proxy of the big-M MILP's cost: ``binaries``, ``unstable`` neurons, ``big_m_sum`` and
    ``big_m_max`` (:func:`relumilp.bounds.base.big_m_values`) after sound ``method`` bounds over the box;
    ``key`` orders candidates (fewer binaries first, then smaller coefficients)."""
    from ..bounds.base import big_m_values, stability_counts

    net = to_network(model)
    start = time.perf_counter()
    bounds = _bounds(net, lower, upper, method, time_limit)
    rows = stability_counts(net, bounds)
    sizes = np.concatenate([v for v in big_m_values(net, bounds).values()] + [np.zeros(0)])
    neurons = sum(r["size"] for r in rows)
    binaries = sum(r["binaries"] for r in rows)
    unstable = sum(r["unstable"] for r in rows)
    return {"binaries": binaries, "unstable": unstable, "neurons": neurons,
            "stable_pct": 100.0 * (1.0 - unstable / neurons) if neurons else 100.0,
            "big_m_sum": float(sizes.sum()), "big_m_max": float(sizes.max()) if sizes.size else 0.0,
            "bounds": method, "bounds_complete": bool(bounds.complete), "seconds": time.perf_counter() - start,
            "key": (binaries, float(sizes.sum()))}


def _val_mse(model: nn.Module, X: np.ndarray, Y: np.ndarray, split: dict) -> float:
    """Validation MSE in standardised units (per-output MSE over the training split's variance, averaged)."""
    val, train = split["val"], split["train"]
    if len(val) == 0:
        raise RelumilpError("the milp-friendly recipe needs a validation split (val_split > 0)")
    with torch.no_grad():
        pred = model(torch.as_tensor(X[val], dtype=torch.float64)).numpy()
    var = np.maximum(Y[train].var(axis=0), 1e-300)
    return float(np.mean(np.mean((pred - Y[val]) ** 2, axis=0) / var))


class MilpFriendlyRecipe:
    """Search the regularisation weight for the network cheapest to optimise over within an MSE budget.

    Parameters
    ----------
    max_mse_ratio:
        The budget: validation MSE at most this times the plain network's.
    penalty:
        ``"stability"`` (:class:`~relumilp.train.regularizers.ReLUStabilityPenalty`) or ``"unstable"``
        (:class:`~relumilp.train.regularizers.UnstableCountPenalty`); its weight ``λ`` is searched.
    lambda_min, lambda_max, steps:
        Log-scale bisection interval and number of candidates trained.
    bound_method, sub_boxes, layer_weights:
        Bounds the penalty uses (``"symbolic"``: CROWN-style, or ``"interval"``), over the box or its
        ``sub_boxes**d`` grid cells, and per-layer weights (see :mod:`relumilp.train.regularizers`).
    l1:
        L1 weight applied with proximal steps alongside the penalty (scaled by ``λ / lambda_max``, i.e.
        it grows with the search's weight); 0 disables it.
    regularize_epochs, ramp_share, finetune_epochs, finetune_lr:
        Epochs of the regularised phase (default: half the plain epochs), share of them over which the
        weight ramps up, epochs and learning rate (default: a third of the plain one) of the
        phase-preserving fine-tune (0 skips it).
    phase_bounds, proxy, proxy_time_limit:
        Sound bounds that decide which neurons are stable (phase fixing and its verification), and those
        of the cost proxy (``"lp"``: LP-OBBT, limited to ``proxy_time_limit`` s per network).
    confirm, confirm_time_limit:
        ``("max" | "min", output index)`` to solve the chosen network's big-M MILP at the end.
    progress:
        A tqdm bar over the candidates on stderr (off when stderr is not a terminal).
    """

    def __init__(self, max_mse_ratio: float = 1.5, penalty: str = "stability", lambda_min: float = 1e-4,
                 lambda_max: float = 1e-1, steps: int = 5, bound_method: str = "symbolic", sub_boxes=None,
                 layer_weights=None, l1: float = 0.0, regularize_epochs: int | None = None, ramp_share: float = 0.5,
                 finetune_epochs: int | None = None, finetune_lr: float | None = None, phase_bounds: str = "symbolic",
                 proxy: str = "lp", proxy_time_limit: float = 30.0, confirm=None, confirm_time_limit: float = 60.0,
                 progress: bool = True):
        if not (math.isfinite(max_mse_ratio) and max_mse_ratio >= 1.0):
            raise RelumilpError(f"max_mse_ratio must be a finite number >= 1, got {max_mse_ratio}")
        if penalty not in PENALTIES:
            raise RelumilpError(f"penalty must be one of {PENALTIES}, got {penalty!r}")
        if not (0 < lambda_min < lambda_max and math.isfinite(lambda_max)):
            raise RelumilpError(f"need 0 < lambda_min < lambda_max, got {lambda_min} and {lambda_max}")
        if int(steps) < 1:
            raise RelumilpError(f"steps must be >= 1, got {steps}")
        if not (0.0 <= ramp_share <= 1.0):
            raise RelumilpError(f"ramp_share must be in [0, 1], got {ramp_share}")
        if confirm is not None and (len(confirm) != 2 or confirm[0] not in ("max", "min")):
            raise RelumilpError(f"confirm must be ('max' | 'min', output index), got {confirm!r}")
        self.max_mse_ratio, self.penalty = float(max_mse_ratio), penalty
        self.lambda_min, self.lambda_max, self.steps = float(lambda_min), float(lambda_max), int(steps)
        self.bound_method, self.sub_boxes, self.layer_weights, self.l1 = bound_method, sub_boxes, layer_weights, float(l1)
        self.regularize_epochs, self.ramp_share = regularize_epochs, float(ramp_share)
        self.finetune_epochs, self.finetune_lr = finetune_epochs, finetune_lr
        self.phase_bounds, self.proxy, self.proxy_time_limit = phase_bounds, proxy, proxy_time_limit
        self.confirm, self.confirm_time_limit, self.progress = confirm, float(confirm_time_limit), progress

    # -- one candidate -----------------------------------------------------------------------------

    def candidate(self, X, Y, plain: nn.Module, lam: float, base: dict, box) -> tuple[nn.Module, dict]:
        """Regularise from ``plain`` with weight ``lam``, then prune-aware fine-tune; ``(model, info)``."""
        epochs = int(base["epochs"])
        reg_epochs = self.regularize_epochs if self.regularize_epochs is not None else max(1, epochs // 2)
        ft_epochs = self.finetune_epochs if self.finetune_epochs is not None else max(1, epochs // 4)
        schedule = LambdaSchedule(0, int(round(self.ramp_share * reg_epochs)))
        options = dict(base, epochs=reg_epochs, init_model=plain, schedule=schedule, bound_method=self.bound_method,
                       sub_boxes=self.sub_boxes, layer_weights=self.layer_weights, progress=False)
        options[self.penalty] = lam
        if self.l1:
            options["l1"] = self.l1 * lam / self.lambda_max
        regularized, hist = fit_surrogate(X, Y, **options)
        info = {"lambda": lam, "regularize_s": hist["seconds"], "val_regularized": _val_mse(regularized, X, Y, hist["split"])}
        model = regularized
        if ft_epochs > 0:
            fixed = stable_phases(regularized, *box, method=self.phase_bounds)
            lr = self.finetune_lr if self.finetune_lr is not None else float(base["lr"]) / 3.0
            tuned, ft_hist = fit_surrogate(X, Y, **dict(base, epochs=ft_epochs, lr=lr, init_model=regularized,
                                                          phases=fixed, progress=False))
            kept = _phases_kept(fixed, stable_phases(tuned, *box, method=self.phase_bounds))
            info.update(finetune_s=ft_hist["seconds"], fixed=int(sum(int((f != 0).sum()) for f in fixed)),
                        phases_kept=kept, val_finetuned=_val_mse(tuned, X, Y, ft_hist["split"]))
            if kept:
                model = tuned
        info["val_mse"] = _val_mse(model, X, Y, hist["split"])
        info["model"] = model
        return model, info

    # -- the search ----------------------------------------------------------------------------------

    def fit(self, X, y, **base) -> tuple[nn.Sequential, dict]:
        """Run the recipe; ``base`` are :func:`fit_surrogate` settings (architecture, epochs, lr, seed,
        bounds, ...). Returns ``(model, history)`` with ``history["recipe"]``: the plain reference, every
        candidate (λ, validation MSE and ratio, proxy cost, times, its ``model``) and the choice."""
        from tqdm.auto import tqdm

        X, Y = _as_2d(X, "X"), _as_2d(y, "y")
        base = {"epochs": 200, "lr": 1e-3, **base}
        activation = base.get("activation", "relu")
        if activation not in ("relu", "leaky", "clipped"):
            raise RelumilpError(f"the MILP-friendly recipe needs piecewise-linear activations (relu, leaky, "
                                f"clipped), got {activation!r}")
        if activation == "clipped" and self.finetune_epochs != 0:
            raise RelumilpError("the recipe's fine-tune fixes one kink per neuron, and a clipped ReLU has two: "
                                "pass finetune_epochs=0 with activation='clipped'")
        started = time.perf_counter()
        show = self.progress and sys.stderr.isatty()
        bar = tqdm(total=self.steps + 1, desc="milp-friendly", disable=not show, leave=False, file=sys.stderr)
        plain, plain_hist = fit_surrogate(X, Y, **dict(base, progress=False))
        box = plain_hist["input_bounds"]
        ref = _val_mse(plain, X, Y, plain_hist["split"])
        budget = self.max_mse_ratio * ref
        plain_cost = milp_cost(plain, *box, self.proxy, self.proxy_time_limit)
        bar.update(1)
        bar.set_postfix(plain_bin=plain_cost["binaries"])
        candidates = [{"lambda": 0.0, "val_mse": ref, "ratio": 1.0, "within": True, "cost": plain_cost, "model": plain}]
        best_model, best = plain, candidates[0]
        lo, hi = math.log(self.lambda_min), math.log(self.lambda_max)
        for _ in range(self.steps):
            lam = math.exp(0.5 * (lo + hi))
            model, info = self.candidate(X, Y, plain, lam, base, box)
            info["ratio"] = info["val_mse"] / ref if ref > 0 else math.inf
            info["within"] = info["val_mse"] <= budget
            info["cost"] = milp_cost(model, *box, self.proxy, self.proxy_time_limit)
            candidates.append(info)
            if info["within"]:
                lo = math.log(lam)
                if info["cost"]["key"] < best["cost"]["key"]:
                    best_model, best = model, info
            else:
                hi = math.log(lam)
            bar.update(1)
            bar.set_postfix(lam=f"{lam:.2g}", ratio=f"{info['ratio']:.2f}", bin=info["cost"]["binaries"],
                            best_bin=best["cost"]["binaries"])
        bar.close()
        history = dict(plain_hist)
        history["recipe"] = {"max_mse_ratio": self.max_mse_ratio, "plain_val_mse": ref, "budget": budget,
                             "penalty": self.penalty, "bound_method": self.bound_method, "candidates": candidates,
                             "chosen_lambda": best["lambda"], "chosen": best}
        if self.confirm is not None:
            history["recipe"]["confirm"] = self._confirm(best_model, box)
        history["seconds"] = time.perf_counter() - started
        history["val_mse"] = best["val_mse"]
        return best_model, history

    def _confirm(self, model, box) -> dict:
        from ..optimization import optimize

        sense, index = self.confirm
        kwargs = {"maximize" if sense == "max" else "minimize": int(index)}
        result = optimize(to_network(model), box, method="milp", tighten=self.proxy, time_limit=self.confirm_time_limit,
                          threads=1, check="off", **kwargs)
        return {"status": result.status, "objective": result.objective, "seconds": result.times.get("total")}

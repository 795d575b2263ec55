"""Regularizers that make a trained ReLU network cheaper to optimise over.

Each regularizer is a ``torch.nn.Module`` whose ``forward(model, x_batch=None)`` returns a scalar to add
to the training loss (already multiplied by its ``weight``). ``model`` is an ``nn.Sequential`` of
``Linear`` layers and activations (see :func:`sequential_layers`).

Weight sparsity (fewer nonzeros in the MILP, whole neurons removable by :func:`relumilp.pruning.prune`):

* :class:`L1Penalty` -- ``weight * sum |W_ij|`` over the Linear weight matrices;
* :class:`GroupL1Penalty` -- group lasso ``weight * sum over hidden neurons i of ||W[i, :]||_2`` (the
  incoming weight row of each hidden neuron): drives whole rows to zero, which makes the neuron a
  constant (stable, folded away by pruning).

Both have a ``prox`` method that :func:`~relumilp.train.fit.fit_surrogate` applies after each
optimiser step instead of adding the penalty to the loss, which gives exact zeros (a subgradient step
only makes weights oscillate around zero).

Bound-based penalties (fewer binaries, smaller big-M coefficients). They need differentiable
pre-activation bounds ``l <= W h + b <= u`` of every hidden neuron over an input domain, computed by
:func:`relumilp.bounds.symbolic.mlp_bounds` (interval or symbolic/CROWN-style propagation):

* :class:`ReLUStabilityPenalty` -- the ReLU-stability loss of Xiao et al. 2019 ("Training for faster
  adversarial robustness verification via inducing ReLU stability"),
  ``weight * sum over hidden neurons of -tanh(1 + l * u)``: ``l * u < 0`` exactly for unstable neurons
  (``l < 0 < u``), and the loss pushes ``l * u`` up, i.e. the neuron to one side of its kink. Every
  further kink ``b`` (e.g. a clip level) adds ``-tanh(1 + (l - b) (u - b))`` (our extension).
* :class:`BigMPenalty` -- ``weight * sum over hidden neurons of max(|l|, |u|)``, the size of the big-M
  coefficients, or (``variant="area"``) the area ``1/2 relu(u) relu(-l)`` of the LP relaxation
  triangle of each unstable neuron (Ehlers 2017), zero for stable neurons, or (``variant="width"``)
  the bound width ``u - l`` of every neuron;
* :class:`UnstableCountPenalty` -- a smooth count of the unstable neurons,
  ``weight * sum over kinks b of tanh(min(relu(u - b), relu(b - l)) / tau)``: zero exactly for stable
  neurons, about 1 per neuron that straddles a kink by more than ``tau``; ``min(u - b, b - l)`` is the
  smallest shift of the neuron's bias that makes it stable, so the gradient pushes each unstable neuron
  towards its nearer side;
* :class:`PhasePenalty` -- keeps a given set of neurons on a given side of their kink over the domain
  (``weight * sum relu(margin - l)`` for neurons fixed active, ``relu(u + margin)`` for inactive ones):
  the phase-preserving fine-tune after pruning (:mod:`relumilp.train.recipe`).

The domain is the input box ``[lower, upper]`` (surrogate optimisation: the optimiser may go anywhere
in the box) or, with ``epsilon``, the ball ``||x' - x||_inf <= epsilon`` around each sample of the batch
intersected with the box (verification: stability near the data), averaged over the batch, or, with
``sub_boxes=k``, the ``k**d`` cells of a regular grid over the box (:func:`grid_boxes`), bounded as one
batch and averaged: each cell's bounds are tighter than the whole box's, so the loss sees the local
stability that fewer linear regions come from, while ``sub_boxes=None`` penalises the whole-box bounds
the big-M MILP uses. ``layer_weights`` (one factor per hidden layer) weights the per-neuron terms of
each layer, e.g. more on the deep layers whose big-M coefficients grow fastest. All bounds are computed
on the model's device and dtype.
"""

from __future__ import annotations

import math
import torch
from torch import nn

from ..activations import Activation, Clip, ClippedReLU, LeakyReLU, ReLU
from ..errors import RelumilpError, UnsupportedOperatorError

__all__ = [
    "sequential_layers",
    "hidden_linears",
    "L1Penalty",
    "GroupL1Penalty",
    "ReLUStabilityPenalty",
    "BigMPenalty",
    "UnstableCountPenalty",
    "PhasePenalty",
    "grid_boxes",
    "pre_activation_bounds",
]

_SKIPPED = (nn.Dropout, nn.Identity)
_SUPPORTED = ["Linear", "ReLU", "LeakyReLU", "Hardtanh(a, b)", "ReLU6", "ClippedReLU", "Dropout", "Identity", "Sequential"]


def _flat_modules(model: nn.Module) -> list[nn.Module]:
    if isinstance(model, nn.Sequential):
        return [m for child in model for m in _flat_modules(child)]
    return [model]


def _activation_spec(module: nn.Module) -> Activation | None:
    """The activation of a supported activation module, None for a non-activation."""
    if isinstance(module, nn.ReLU):
        return ReLU()
    if isinstance(module, nn.LeakyReLU):
        return LeakyReLU(float(module.negative_slope))
    if isinstance(module, nn.Hardtanh):  # includes ClippedReLU and ReLU6
        low, high = float(module.min_val), float(module.max_val)
        if not low < high:
            raise UnsupportedOperatorError(f"Hardtanh({low}, {high})", _SUPPORTED, "Hardtanh needs min_val < max_val")
        return ClippedReLU(high) if low == 0.0 else Clip(low, high)
    return None


def sequential_layers(model: nn.Module) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], list[Activation]]:
    """A training-side view of a live MLP: ``([(W1, b1), ..., (Wk, bk)], [activation, ...])``.

    ``model`` is an ``nn.Sequential`` (possibly nested) of Linear, ReLU, LeakyReLU, Hardtanh(a, b) /
    :class:`~relumilp.train.modules.ClippedReLU`, Dropout and Identity modules. The tensors are the
    module parameters themselves (or differentiable functions of them), so gradients flow back to the
    model: Dropout/Identity are skipped (the eval-mode function), consecutive Linear layers are
    composed, a Linear without bias gets a zero bias. There is one activation per hidden layer; the
    last layer is affine.
    """
    layers: list[tuple[torch.Tensor, torch.Tensor]] = []
    activations: list[Activation] = []
    pending: tuple[torch.Tensor, torch.Tensor] | None = None  # affine map since the last activation
    for module in _flat_modules(model):
        if isinstance(module, _SKIPPED):
            continue
        if isinstance(module, nn.Linear):
            w = module.weight
            b = module.bias if module.bias is not None else torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)
            if pending is not None:
                w0, b0 = pending
                w, b = w @ w0, w @ b0 + b
            pending = (w, b)
            continue
        spec = _activation_spec(module)
        if spec is None:
            raise UnsupportedOperatorError(f"module {type(module).__name__}", _SUPPORTED)
        if pending is None:
            raise UnsupportedOperatorError(
                f"{type(module).__name__} without a Linear layer before it", _SUPPORTED, "every activation must follow a Linear layer"
            )
        layers.append(pending)
        activations.append(spec)
        pending = None
    if pending is None:
        raise UnsupportedOperatorError(
            "network that does not end with a Linear layer", _SUPPORTED, "the output layer must be affine"
        )
    layers.append(pending)
    return layers, activations


def hidden_linears(model: nn.Module) -> list[nn.Linear]:
    """The Linear modules directly feeding an activation (their rows are the hidden neurons' inputs), in a
    model of the modules :func:`sequential_layers` reads (any other module is refused: a penalty that
    cannot see the hidden layers must not silently be 0)."""
    result, last = [], None
    for module in _flat_modules(model):
        if isinstance(module, _SKIPPED):
            continue
        if isinstance(module, nn.Linear):
            last = module
        elif _activation_spec(module) is None:
            raise UnsupportedOperatorError(f"module {type(module).__name__}", _SUPPORTED)
        elif last is not None:
            result.append(last)
            last = None
    return result


def _adam_step_size(optimizer, param: torch.Tensor, step: float | None) -> torch.Tensor | float:
    """The per-element step ``lr / (sqrt(v_hat) + eps)`` Adam/AdamW just took for ``param``.

    The proximal step in Adam's diagonal metric uses it as the shrinkage scale, so that the penalty
    weight means the same as when the penalty is in the loss: a weight is zeroed when the data-loss
    gradient is smaller than the penalty's (the optimality condition of the penalised problem). Falls
    back to ``step`` (or the group's lr) for optimisers without second-moment state.
    """
    if optimizer is None:
        if step is None:
            raise RelumilpError("prox needs a step size or an optimizer")
        return float(step)
    for group in optimizer.param_groups:
        if any(p is param for p in group["params"]):
            lr = float(group["lr"]) if step is None else float(step)
            state = optimizer.state.get(param, {})
            if "exp_avg_sq" in state and "betas" in group:
                t = float(state["step"])
                v_hat = state["exp_avg_sq"] / (1.0 - group["betas"][1] ** t)
                return lr / (v_hat.sqrt() + group["eps"])
            return lr
    raise RelumilpError("the optimizer does not hold this parameter")


class L1Penalty(nn.Module):
    """``weight * sum |W_ij|`` over the weights of every Linear and convolution module of the model, in
    any module structure (not biases).

    ``include_output=False`` leaves the last Linear layer (in registration order) unpenalised.
    """

    def __init__(self, weight: float = 1e-4, include_output: bool = True):
        super().__init__()
        self.weight = float(weight)
        self.include_output = include_output

    def _weights(self, model) -> list[torch.Tensor]:
        # every Linear and convolution of any module, in registration order (the last Linear is the output)
        layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd))]
        if not self.include_output:
            last = max((k for k, m in enumerate(layers) if isinstance(m, nn.Linear)), default=None)
            layers = [m for k, m in enumerate(layers) if k != last]
        return [m.weight for m in layers]

    def value(self, model) -> torch.Tensor:
        """The unweighted penalty."""
        ref = next(model.parameters(), torch.zeros(()))
        return sum((w.abs().sum() for w in self._weights(model)), torch.zeros((), dtype=ref.dtype, device=ref.device))

    def forward(self, model, x_batch=None) -> torch.Tensor:
        return self.weight * self.value(model)

    @torch.no_grad()
    def prox(self, model, optimizer=None, step: float | None = None, factor: float = 1.0) -> None:
        """Soft-thresholding ``w <- sign(w) max(|w| - factor * weight * s, 0)`` with ``s`` the step just
        taken (``factor``: the schedule's current multiplier of the weight)."""
        for w in self._weights(model):
            s = _adam_step_size(optimizer, w, step)
            w.copy_(torch.sign(w) * torch.clamp(w.abs() - factor * self.weight * s, min=0.0))


class GroupL1Penalty(nn.Module):
    """Group lasso ``weight * sum over hidden neurons i of ||W[i, :]||_2`` (incoming weight rows).

    A zero row makes neuron i a constant ``act(b_i)``, which :func:`relumilp.pruning.prune` folds into
    the next layer. ``include_bias=True`` puts the bias in the group too.
    """

    def __init__(self, weight: float = 1e-3, include_bias: bool = False):
        super().__init__()
        self.weight = float(weight)
        self.include_bias = include_bias

    def _rows(self, linear: nn.Linear) -> torch.Tensor:
        if self.include_bias and linear.bias is not None:
            return torch.cat([linear.weight, linear.bias[:, None]], dim=1)
        return linear.weight

    def value(self, model) -> torch.Tensor:
        """The unweighted penalty."""
        ref = next(model.parameters(), torch.zeros(()))
        zero = torch.zeros((), dtype=ref.dtype, device=ref.device)
        return sum((torch.linalg.vector_norm(self._rows(m), dim=1).sum() for m in hidden_linears(model)), zero)

    def forward(self, model, x_batch=None) -> torch.Tensor:
        return self.weight * self.value(model)

    @torch.no_grad()
    def prox(self, model, optimizer=None, step: float | None = None, factor: float = 1.0) -> None:
        """Group soft-thresholding ``w_i <- w_i max(1 - factor * weight * s_i / ||w_i||, 0)`` per row.

        ``s_i`` is the step just taken in the row's averaged metric: Adam's diagonal metric
        ``(sqrt(v_hat) + eps) / lr`` is not constant over a row, and its row mean is used (so
        ``s_i = lr / mean(sqrt(v_hat) + eps)``; a row whose data gradient is about zero is zeroed).
        """
        for m in hidden_linears(model):
            params = [m.weight] + ([m.bias] if self.include_bias and m.bias is not None else [])
            metrics = []
            for p in params:
                s = _adam_step_size(optimizer, p, step)
                metric = 1.0 / torch.as_tensor(s, dtype=p.dtype, device=p.device).expand_as(p)
                metrics.append(metric if p.dim() == 2 else metric[:, None])
            s_row = 1.0 / torch.cat(metrics, dim=1).mean(dim=1)
            norms = torch.linalg.vector_norm(self._rows(m), dim=1)
            shrink = torch.clamp(1.0 - factor * self.weight * s_row / norms.clamp_min(torch.finfo(norms.dtype).tiny), min=0.0)
            for p in params:
                p.mul_(shrink[:, None] if p.dim() == 2 else shrink)


# -- bound-based penalties ---------------------------------------------------------------------------


def pre_activation_bounds(
    model: nn.Module, lower: torch.Tensor, upper: torch.Tensor, method: str = "interval"
) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], list[Activation]]:
    """Differentiable bounds ``[(l, u), ...]`` of every hidden layer's pre-activations, and the activations.

    ``lower``/``upper`` have shape (n_in,) or (batch, n_in). Uses
    :func:`relumilp.bounds.symbolic.mlp_bounds` on the live parameters of ``model``.
    """
    from ..bounds.symbolic import mlp_bounds

    layers, activations = sequential_layers(model)
    w0 = layers[0][0]
    if lower.shape[-1] != w0.shape[1]:
        raise RelumilpError(f"the input box has {lower.shape[-1]} inputs but the model takes {w0.shape[1]}")
    lower = lower.to(dtype=w0.dtype, device=w0.device)
    upper = upper.to(dtype=w0.dtype, device=w0.device)
    bounds = mlp_bounds(layers, activations, lower, upper, method=method)
    return list(bounds[: len(activations)]), activations


def grid_boxes(lower, upper, parts: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``parts**d`` cells of a regular grid over the box ``[lower, upper]`` as (parts**d, d) tensors.

    The cells cover the box (their union is the box), so a bound that holds on every cell holds on the
    box. ``parts = 1`` returns the box itself as a batch of one.
    """
    parts = int(parts)
    if parts < 1:
        raise RelumilpError(f"sub_boxes must be a positive number of parts per input, got {parts}")
    lower = torch.as_tensor(lower).flatten()
    upper = torch.as_tensor(upper, dtype=lower.dtype, device=lower.device).flatten()
    if parts ** lower.numel() > 65536:
        raise RelumilpError(f"sub_boxes={parts} gives {parts}**{lower.numel()} boxes; use fewer parts")
    steps = torch.arange(parts + 1, dtype=lower.dtype, device=lower.device) / parts
    edges = lower[:, None] + (upper - lower)[:, None] * steps[None, :]  # (d, parts + 1)
    index = torch.cartesian_prod(*[torch.arange(parts, device=lower.device)] * lower.numel()).reshape(-1, lower.numel())
    cols = torch.arange(lower.numel(), device=lower.device)
    return edges[cols, index], edges[cols, index + 1]


class _BoundPenalty(nn.Module):
    """Shared domain handling: the box, a grid of sub-boxes of it, or an epsilon ball around each sample
    intersected with the box; optional per-layer weights of the per-neuron terms."""

    def __init__(self, weight, lower, upper, method, epsilon, sub_boxes=None, layer_weights=None):
        super().__init__()
        if method not in ("interval", "symbolic"):
            raise RelumilpError(f"bound method must be 'interval' or 'symbolic', got {method!r}")
        if epsilon is None and (lower is None or upper is None):
            raise RelumilpError("give the input box (lower, upper), or epsilon for balls around the samples")
        if sub_boxes is not None and (epsilon is not None or lower is None):
            raise RelumilpError("sub_boxes splits the input box: give lower and upper, and no epsilon")
        self.weight = float(weight)
        if not (math.isfinite(self.weight) and self.weight >= 0.0):
            raise RelumilpError(f"a penalty weight must be finite and >= 0, got {weight}")
        self.method = method
        self.register_buffer("lower", None if lower is None else torch.as_tensor(lower, dtype=torch.float64).flatten())
        self.register_buffer("upper", None if upper is None else torch.as_tensor(upper, dtype=torch.float64).flatten())
        if self.lower is not None and (self.lower.shape != self.upper.shape or not bool((self.lower <= self.upper).all())
                                       or not bool(torch.isfinite(self.lower).all() and torch.isfinite(self.upper).all())):
            raise RelumilpError("lower and upper must be finite, of the same size, with lower <= upper")
        if epsilon is not None:
            eps = torch.as_tensor(epsilon, dtype=torch.float64)
            if bool((eps < 0).any()) or not bool(torch.isfinite(eps).all()):
                raise RelumilpError(f"epsilon must be finite and >= 0, got {epsilon}")
            self.register_buffer("epsilon", eps)
        else:
            self.epsilon = None
        self.sub_boxes = None if sub_boxes is None else int(sub_boxes)
        if self.sub_boxes is not None:
            cells = grid_boxes(self.lower, self.upper, self.sub_boxes)
            self.register_buffer("cell_lower", cells[0])
            self.register_buffer("cell_upper", cells[1])
        if layer_weights is not None:
            lw = [float(w) for w in layer_weights]
            if not all(math.isfinite(w) and w >= 0.0 for w in lw):
                raise RelumilpError(f"layer_weights must be finite and >= 0, got {list(layer_weights)}")
            layer_weights = tuple(lw)
        self.layer_weights = layer_weights

    def domain(self, x_batch) -> tuple[torch.Tensor, torch.Tensor]:
        if self.sub_boxes is not None:
            return self.cell_lower, self.cell_upper
        if self.epsilon is None:
            return self.lower, self.upper
        if x_batch is None:
            raise RelumilpError(f"{type(self).__name__} with epsilon needs the batch: call it as penalty(model, x_batch)")
        x = x_batch.detach().reshape(x_batch.shape[0], -1)
        eps = self.epsilon.to(dtype=x.dtype, device=x.device)
        lo, hi = x - eps, x + eps
        if self.lower is not None:
            if self.lower.numel() != x.shape[1]:
                raise RelumilpError(f"{type(self).__name__}: the box has {self.lower.numel()} inputs, the batch "
                                    f"{x.shape[1]}")
            box_lo, box_hi = self.lower.to(dtype=x.dtype, device=x.device), self.upper.to(dtype=x.dtype, device=x.device)
            # a sample outside the box keeps a ball of the box's nearest point (never an inverted box)
            lo = torch.minimum(torch.maximum(lo, box_lo), box_hi)
            hi = torch.maximum(torch.minimum(hi, box_hi), lo)
        return lo, hi

    def per_neuron(self, l, u, act: Activation, layer: int) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def value(self, model, x_batch=None) -> torch.Tensor:
        """The unweighted penalty: sum over hidden neurons (times the layer's weight), mean over the boxes."""
        lower, upper = self.domain(x_batch)
        bounds, activations = pre_activation_bounds(model, lower, upper, self.method)
        if self.layer_weights is not None and len(self.layer_weights) != len(activations):
            raise RelumilpError(f"{len(self.layer_weights)} layer_weights for {len(activations)} hidden layers")
        ref = next(model.parameters())
        total = torch.zeros((), dtype=ref.dtype, device=ref.device)
        for k, ((l, u), act) in enumerate(zip(bounds, activations)):
            term = self.per_neuron(l, u, act, k).sum(dim=-1)
            total = total + (term if self.layer_weights is None else self.layer_weights[k] * term)
        return total.mean() if total.dim() else total

    def forward(self, model, x_batch=None) -> torch.Tensor:
        return self.weight * self.value(model, x_batch)


class ReLUStabilityPenalty(_BoundPenalty):
    """``weight * sum over hidden neurons of -tanh(1 + l * u)`` (Xiao et al. 2019).

    ``l, u`` are differentiable pre-activation bounds over the box ``[lower, upper]``, or, with
    ``epsilon``, over ``[x - epsilon, x + epsilon]`` intersected with the box for each sample ``x`` of
    the batch (then averaged over the batch). The value lies in ``(-1, 1)`` per neuron: about ``+1`` for
    a neuron whose bounds straddle the kink widely, below ``-0.76`` once ``l * u >= 0`` (stable). With
    several kinks ``b`` (a clip) the terms ``-tanh(1 + (l - b)(u - b))`` of all of them are summed.
    ``method`` is ``"interval"`` or ``"symbolic"`` (tighter, slower).
    """

    def __init__(self, weight: float = 1e-2, lower=None, upper=None, method: str = "interval", epsilon=None,
                 sub_boxes=None, layer_weights=None):
        super().__init__(weight, lower, upper, method, epsilon, sub_boxes, layer_weights)

    def per_neuron(self, l, u, act, layer):
        value = torch.zeros_like(l)
        for b in act.breakpoints:
            value = value - torch.tanh(1.0 + (l - b) * (u - b))
        return value


class BigMPenalty(_BoundPenalty):
    """``weight * sum over hidden neurons of max(|l|, |u|)``: the size of the big-M coefficients.

    ``variant="area"`` instead sums ``1/2 relu(u) relu(-l)``, the area of the LP-relaxation triangle of
    a ReLU over ``[l, u]`` (zero for stable neurons; summed over the kinks ``b`` of the activation as
    ``1/2 relu(u - b) relu(b - l)``), which penalises only what makes the relaxation weak. Domain and
    ``method`` as in :class:`ReLUStabilityPenalty`. ``variant="width"`` sums ``u - l``, the width of
    every neuron's bounds (a looser proxy of both, differentiable everywhere).

    Measured (peaks function on [-3, 3]^2, 500 points, 16x16 ReLU, 60 epochs, mean of 3 seeds; interval
    bounds over the box; no penalty: 30.0 of 32 neurons unstable, sum of max(|l|, |u|) 76, standardised
    validation MSE 0.50): ``max_abs`` at weight 1e-2 shrinks the big-M sum to 17 but leaves 28.3
    neurons unstable (MSE 0.69); ``area`` at 1e-2 leaves 19.3 unstable with sum 32 (MSE 0.71), close to
    the stability loss at 1e-2 (17.0 unstable, sum 37, MSE 0.74). So ``max_abs`` is the one for smaller
    coefficients (tighter LP relaxations of the neurons that stay unstable), ``area`` or
    :class:`ReLUStabilityPenalty` the ones for fewer binaries.
    """

    VARIANTS = ("max_abs", "area", "width")

    def __init__(self, weight: float = 1e-3, lower=None, upper=None, method: str = "interval", epsilon=None,
                 variant: str = "max_abs", sub_boxes=None, layer_weights=None):
        super().__init__(weight, lower, upper, method, epsilon, sub_boxes, layer_weights)
        if variant not in self.VARIANTS:
            raise RelumilpError(f"BigMPenalty variant must be one of {self.VARIANTS}, got {variant!r}")
        self.variant = variant

    def per_neuron(self, l, u, act, layer):
        if self.variant == "max_abs":
            return torch.maximum(l.abs(), u.abs())
        if self.variant == "width":
            return u - l
        value = torch.zeros_like(l)
        for b in act.breakpoints:
            value = value + 0.5 * torch.relu(u - b) * torch.relu(b - l)
        return value


class UnstableCountPenalty(_BoundPenalty):
    """A smooth count of unstable neurons: ``weight * sum over neurons and kinks b of tanh(d / tau)``
    with ``d = min(relu(u - b), relu(b - l))``.

    ``d`` is zero exactly when the bounds ``[l, u]`` do not straddle ``b`` (the neuron is stable there)
    and is otherwise the smallest change of the neuron's bias that would make it stable, so the term is
    0 for stable neurons and tends to 1 for neurons that straddle the kink by more than ``tau`` (the
    value tends to the number of unstable neurons as ``tau -> 0``). Unlike
    :class:`ReLUStabilityPenalty`, a stable neuron contributes nothing and feels no gradient. Domain,
    ``method``, ``sub_boxes`` and ``layer_weights`` as in :class:`ReLUStabilityPenalty`.
    """

    def __init__(self, weight: float = 1e-2, lower=None, upper=None, method: str = "symbolic", epsilon=None,
                 sub_boxes=None, layer_weights=None, tau: float = 1.0):
        super().__init__(weight, lower, upper, method, epsilon, sub_boxes, layer_weights)
        if not (math.isfinite(tau) and tau > 0):
            raise RelumilpError(f"tau must be finite and > 0, got {tau}")
        self.tau = float(tau)

    def per_neuron(self, l, u, act, layer):
        value = torch.zeros_like(l)
        for b in act.breakpoints:
            value = value + torch.tanh(torch.minimum(torch.relu(u - b), torch.relu(b - l)) / self.tau)
        return value


class PhasePenalty(_BoundPenalty):
    """Keep chosen neurons on one side of their (single) kink over the domain.

    ``phases`` has one integer tensor per hidden layer: ``+1`` -- the neuron must stay active
    (``l >= b + margin``), ``-1`` -- inactive (``u <= b - margin``), ``0`` -- free. The penalty is
    ``weight * (sum over +1 neurons of relu(b + margin - l) + sum over -1 neurons of relu(u - b + margin))``,
    zero once every fixed neuron keeps its phase with the margin, by the (differentiable) bounds. Used
    by the fine-tune after pruning: the neurons pruned as stable must stay stable, or the pruned network
    would no longer equal the trained one. Only activations with one kink (ReLU, leaky ReLU).
    """

    def __init__(self, phases, weight: float = 10.0, lower=None, upper=None, method: str = "symbolic",
                 margin: float = 0.0, sub_boxes=None):
        super().__init__(weight, lower, upper, method, None, sub_boxes, None)
        self.phases = [torch.as_tensor(p, dtype=torch.int8).flatten() for p in phases]
        if not (math.isfinite(margin) and margin >= 0):
            raise RelumilpError(f"margin must be finite and >= 0, got {margin}")
        self.margin = float(margin)

    def per_neuron(self, l, u, act, layer):
        if len(act.breakpoints) != 1:
            raise RelumilpError(f"PhasePenalty needs activations with one kink, got {type(act).__name__}")
        if layer >= len(self.phases) or self.phases[layer].numel() != l.shape[-1]:
            raise RelumilpError(f"phases do not match hidden layer {layer} of {l.shape[-1]} neurons")
        b = act.breakpoints[0]
        phase = self.phases[layer].to(l.device)
        active = (phase > 0).to(l.dtype)
        inactive = (phase < 0).to(l.dtype)
        return active * torch.relu(b + self.margin - l) + inactive * torch.relu(u - b + self.margin)


def make_regularizers(
    l1: float = 0.0,
    group_l1: float = 0.0,
    stability: float = 0.0,
    big_m: float = 0.0,
    lower=None,
    upper=None,
    method: str = "interval",
    epsilon=None,
    big_m_variant: str = "max_abs",
    unstable: float = 0.0,
    sub_boxes=None,
    layer_weights=None,
) -> dict[str, nn.Module]:
    """The regularizers with a nonzero weight, by name (``l1``, ``group_l1``, ``stability``, ``big_m``,
    ``unstable``); ``sub_boxes`` and ``layer_weights`` go to the bound-based ones."""
    result: dict[str, nn.Module] = {}
    for name, w in (("l1", l1), ("group_l1", group_l1), ("stability", stability), ("big_m", big_m), ("unstable", unstable)):
        if not (math.isfinite(float(w)) and float(w) >= 0.0):
            raise RelumilpError(f"regularizer weight {name}={w} must be finite and >= 0")
    if l1:
        result["l1"] = L1Penalty(l1)
    if group_l1:
        result["group_l1"] = GroupL1Penalty(group_l1)
    if stability:
        result["stability"] = ReLUStabilityPenalty(stability, lower, upper, method, epsilon, sub_boxes, layer_weights)
    if big_m:
        result["big_m"] = BigMPenalty(big_m, lower, upper, method, epsilon, big_m_variant, sub_boxes, layer_weights)
    if unstable:
        result["unstable"] = UnstableCountPenalty(unstable, lower, upper, method, epsilon, sub_boxes, layer_weights)
    return result

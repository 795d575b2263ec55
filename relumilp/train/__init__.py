"""Training networks that are cheap to optimise over (Plate et al. 2025).

Clipped activations and regularizers that reduce the number of linear regions and raise the share of
stable neurons make the compiled MILP smaller and faster to solve.

* :mod:`.modules` -- :class:`ClippedReLU` (compiles exactly, as ``Hardtanh(0, c)``) and seed
  activations/samplers: :class:`SoftExponential`, :class:`RePU`, :class:`PerturbSoftmax`,
  :class:`PerturbArgmax`;
* :mod:`.regularizers` -- :class:`L1Penalty`, :class:`GroupL1Penalty`, :class:`ReLUStabilityPenalty`,
  :class:`BigMPenalty`, :class:`UnstableCountPenalty`, :class:`PhasePenalty` (bounds over the box, a grid
  of sub-boxes :func:`grid_boxes`, or balls; per-layer weights), and :func:`sequential_layers` (a differentiable ``(layers, activations)`` view
  of a live ``nn.Sequential``);
* :mod:`.losses` -- :func:`monotonicity_penalty`, :func:`score_matching_loss`;
* :mod:`.fit` -- :func:`fit_surrogate` (train an MLP surrogate that compiles as is; warm starts,
  :class:`LambdaSchedule`), :func:`resolve_device`, :func:`build_mlp`;
* :mod:`.recipe` -- :class:`MilpFriendlyRecipe` (``fit_surrogate(..., milp_friendly=True)``): the
  cheapest-to-optimise network within a validation-MSE budget (λ search, phase-preserving fine-tune).

Network-side pruning of stable neurons is :func:`relumilp.pruning.prune`.
"""

from .fit import LambdaSchedule, build_mlp, fit_surrogate, resolve_device
from .losses import input_gradient, monotonicity_penalty, score_matching_loss
from .modules import ClippedReLU, PerturbArgmax, PerturbSoftmax, RePU, SoftExponential, soft_exponential
from .recipe import MilpFriendlyRecipe
from .regularizers import (
    BigMPenalty,
    GroupL1Penalty,
    L1Penalty,
    PhasePenalty,
    ReLUStabilityPenalty,
    UnstableCountPenalty,
    grid_boxes,
    hidden_linears,
    make_regularizers,
    pre_activation_bounds,
    sequential_layers,
)

__all__ = [
    "ClippedReLU",
    "SoftExponential",
    "soft_exponential",
    "RePU",
    "PerturbSoftmax",
    "PerturbArgmax",
    "L1Penalty",
    "GroupL1Penalty",
    "ReLUStabilityPenalty",
    "BigMPenalty",
    "UnstableCountPenalty",
    "PhasePenalty",
    "grid_boxes",
    "LambdaSchedule",
    "MilpFriendlyRecipe",
    "sequential_layers",
    "hidden_linears",
    "pre_activation_bounds",
    "make_regularizers",
    "monotonicity_penalty",
    "score_matching_loss",
    "input_gradient",
    "fit_surrogate",
    "build_mlp",
    "resolve_device",
]

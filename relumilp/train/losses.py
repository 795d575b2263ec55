"""Derivative-based training losses: monotonicity penalties and score matching.

Both differentiate the network w.r.t. its *input* with ``torch.autograd.grad(..., create_graph=True)``,
so the result can itself be back-propagated to the weights. They assume the rows of a batch are
processed independently (no batch-norm in training mode).

* :func:`monotonicity_penalty` -- ``weight * mean(max(-df/dx_j, 0))`` over the batch and the listed
  inputs: zero exactly when f is non-decreasing in ``x_j`` at every sample (isotonic regression as in
  Shen et al. 2023; use :class:`~relumilp.train.modules.RePU` or ReLU networks).
* :func:`score_matching_loss` -- Hyvarinen's implicit score-matching objective
  ``E[tr(grad_x s(X)) + 1/2 ||s(X)||**2]``, equal up to a constant (independent of ``s``) to
  ``1/2 E ||s(X) - grad log p(X)||**2``; its minimiser is the score of the data density. The trace is
  computed exactly, one autograd pass per input dimension (meant for small dimensions). Smooth
  networks (e.g. RePU, p >= 2) are needed: a ReLU network has a piecewise-constant Jacobian.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..errors import RelumilpError

__all__ = ["monotonicity_penalty", "score_matching_loss", "input_gradient"]


def _output_column(y: torch.Tensor, output: int | None) -> torch.Tensor:
    y = y.reshape(y.shape[0], -1)
    if output is None:
        if y.shape[1] != 1:
            raise RelumilpError(f"the model has {y.shape[1]} outputs; pass output= to choose one")
        return y[:, 0]
    return y[:, int(output)]


def input_gradient(model: nn.Module, x: torch.Tensor, output: int | None = None, create_graph: bool = True):
    """``d f(x) / d x`` for each row of ``x`` (shape like ``x``) of one scalar output of ``model``."""
    x = x.detach().requires_grad_(True)
    y = _output_column(model(x), output)
    (grad,) = torch.autograd.grad(y.sum(), x, create_graph=create_graph)
    return grad


def monotonicity_penalty(
    model: nn.Module,
    x: torch.Tensor,
    inputs: Sequence[int] = (),
    weight: float = 1.0,
    decreasing: Sequence[int] = (),
    output: int | None = None,
) -> torch.Tensor:
    """``weight * mean over samples and listed inputs of max(-s_j * df/dx_j, 0)``.

    ``s_j = +1`` for the indices in ``inputs`` (f should be non-decreasing in them) and ``-1`` for
    those in ``decreasing``. ``x`` (batch, n_in) are the points where monotonicity is enforced (training
    data or random points of the domain). ``output`` selects an output of a multi-output model.
    """
    inputs, decreasing = [int(j) for j in inputs], [int(j) for j in decreasing]
    if not inputs and not decreasing:
        raise RelumilpError("monotonicity_penalty needs at least one input index")
    if set(inputs) & set(decreasing):
        raise RelumilpError("an input cannot be both increasing and decreasing")
    grad = input_gradient(model, x, output)
    grad = grad.reshape(grad.shape[0], -1)
    index = torch.tensor(inputs + decreasing, device=grad.device)
    sign = torch.tensor([1.0] * len(inputs) + [-1.0] * len(decreasing), dtype=grad.dtype, device=grad.device)
    violation = torch.relu(-sign * grad[:, index])
    return weight * violation.mean()


def score_matching_loss(score_net: nn.Module, x: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Implicit score matching ``tr(grad_x s(x)) + 1/2 ||s(x)||**2``, averaged over the batch.

    ``score_net`` maps (batch, d) to (batch, d). For ``X ~ N(mu, diag(sigma**2))`` and the true score
    ``s(x) = -(x - mu) / sigma**2`` the expectation is ``-1/2 sum_i 1/sigma_i**2``.
    ``reduction="none"`` returns the per-sample values.
    """
    if x.dim() != 2:
        raise RelumilpError(f"score matching expects a (batch, d) tensor, got shape {tuple(x.shape)}")
    x = x.detach().requires_grad_(True)
    s = score_net(x)
    if s.shape != x.shape:
        raise RelumilpError(f"the score network maps {tuple(x.shape)} to {tuple(s.shape)}; it must keep the shape")
    trace = torch.zeros(x.shape[0], dtype=s.dtype, device=s.device)
    for i in range(x.shape[1]):
        (g,) = torch.autograd.grad(s[:, i].sum(), x, create_graph=True)
        trace = trace + g[:, i]
    per_sample = trace + 0.5 * (s * s).sum(dim=1)
    if reduction == "none":
        return per_sample
    if reduction != "mean":
        raise RelumilpError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    return per_sample.mean()

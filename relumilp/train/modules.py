"""Activation and sampling modules for training networks that are cheap to optimise over.

* :class:`ClippedReLU` -- ``min(max(x, 0), c)``, a piecewise-linear activation the MILP compiler handles
  exactly (it is a ``torch.nn.Hardtanh(0, c)``, so the torch frontend needs no special case). Clipping
  bounds every hidden value, which keeps big-M coefficients small and makes more neurons stable
  (Plate et al. 2025).
* :class:`SoftExponential` -- a learnable activation that interpolates between logarithmic, linear and
  exponential shapes (Godfrey & Gashler 2016). Not piecewise linear: it is for exploring architectures
  (e.g. learning whether a layer wants to be linear), not for compiling.
* :class:`RePU` -- ``max(0, x)**p`` (Shen et al. 2023), a smooth ReLU power used for score estimation
  and monotone regression, where second derivatives are needed (see :mod:`relumilp.train.losses`).
* :class:`PerturbSoftmax` / :class:`PerturbArgmax` -- perturb-and-MAP samplers over categorical choices
  (generalising the Gumbel-softmax trick to Gaussian noise), with a straight-through gradient for the
  hard one-hot sample.

All modules work on any device and dtype; they create no tensors on a fixed device.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import RelumilpError

__all__ = ["ClippedReLU", "SoftExponential", "RePU", "PerturbSoftmax", "PerturbArgmax"]


class ClippedReLU(nn.Hardtanh):
    """Clipped ReLU ``f(x) = min(max(x, 0), c)`` with clip level ``c > 0``.

    A subclass of ``torch.nn.Hardtanh(min_val=0, max_val=c)``: anything that understands ``Hardtanh``
    (the relumilp torch frontend, ONNX export as ``Clip``) handles it unchanged. Use one module per layer
    for per-layer clip levels.
    """

    def __init__(self, c: float = 1.0, inplace: bool = False):
        c = float(c)
        if not (math.isfinite(c) and c > 0.0):
            raise RelumilpError(f"ClippedReLU needs a finite clip level c > 0, got {c}")
        super().__init__(min_val=0.0, max_val=c, inplace=inplace)

    @property
    def c(self) -> float:
        """The clip level (``max_val`` of the underlying Hardtanh)."""
        return float(self.max_val)

    def extra_repr(self) -> str:
        return f"c={self.c}" + (", inplace=True" if self.inplace else "")


# Number of Taylor terms kept by the small-argument branches of SoftExponential.
_SERIES_TERMS = 6


def _series_threshold(dtype: torch.dtype) -> float:
    """Below this |argument| SoftExponential uses a Taylor series instead of expm1/log1p.

    With six terms the truncation error is about ``t**6 / 7 <= eps`` for ``t = eps**(1/6)``, while the
    closed forms lose about ``eps / t = eps**(5/6)`` relative accuracy (in the derivative w.r.t. alpha)
    just above the threshold: 2.4e-3 in float64, 0.07 in float32.
    """
    return torch.finfo(dtype).eps ** (1.0 / _SERIES_TERMS)


def _expm1_over(u: torch.Tensor) -> torch.Tensor:
    """``expm1(u) / u`` with its limit 1 at 0: ``sum_k u**k / (k+1)!`` for small u."""
    small = u.abs() < _series_threshold(u.dtype)
    us = torch.where(small, u, torch.zeros_like(u))
    series = torch.zeros_like(u)
    for k in reversed(range(_SERIES_TERMS)):  # Horner: 1 + u/2 + u^2/6 + ...
        series = series * us + 1.0 / math.factorial(k + 1)
    ud = torch.where(small, torch.ones_like(u), u)
    return torch.where(small, series, torch.expm1(ud) / ud)


def _log1p_over(v: torch.Tensor, min_arg: float) -> torch.Tensor:
    """``log1p(v) / v`` with limit 1 at 0: ``sum_k (-v)**k / (k+1)`` for small v.

    Where ``1 + v <= min_arg`` (the log's domain edge, see :class:`SoftExponential`; compared in ``v``'s
    dtype) it returns ``log(2)``, a finite stand-in that :func:`soft_exponential` replaces by the edge
    value: the log is never evaluated there, so no infinite derivative meets a zero one (in float32
    ``min_arg - 1`` rounds to -1, where a clamped ``log1p`` made NaN gradients).
    """
    small = v.abs() < _series_threshold(v.dtype)
    vs = torch.where(small, v, torch.zeros_like(v))
    series = torch.zeros_like(v)
    for k in reversed(range(_SERIES_TERMS)):  # 1 - v/2 + v^2/3 - ...
        series = series * (-vs) + 1.0 / (k + 1)
    past = v <= min_arg - 1.0
    vd = torch.where(small | past, torch.ones_like(v), v)
    return torch.where(small, series, torch.log1p(vd) / vd)


def soft_exponential(x: torch.Tensor, alpha: torch.Tensor, min_arg: float = 1e-12) -> torch.Tensor:
    """The soft exponential function (Godfrey & Gashler 2016), element-wise, ``alpha`` broadcast to ``x``::

        f(alpha, x) = -ln(1 - alpha (x + alpha)) / alpha    alpha < 0
                    = x                                     alpha = 0
                    = (exp(alpha x) - 1) / alpha + alpha    alpha > 0

    Written as ``x * E(alpha x) + alpha`` for alpha >= 0 with ``E(u) = expm1(u)/u`` and as
    ``(x + alpha) * L(v)`` with ``v = -alpha (x + alpha)``, ``L(v) = log1p(v)/v`` for alpha < 0, where E and
    L switch to their Taylor series near 0. Both pieces then give ``x`` at alpha = 0 and have the same
    first derivatives there (``df/dx = 1``, ``df/dalpha = 1 + x**2/2``), so values and gradients are
    continuous in alpha, with no 0/0 anywhere.

    Domain edge (alpha < 0): the log needs ``1 - alpha (x + alpha) > 0``, i.e. ``x > 1/alpha - alpha``;
    f tends to -inf at the edge. The log argument is clamped below at ``min_arg``: for x at or past the
    edge f is the constant ``-ln(min_arg) / alpha`` (``27.6 / alpha`` for the default 1e-12) with zero
    gradient w.r.t. x. That keeps training finite and f non-decreasing in x; use
    ``SoftExponential(edge="raise")`` to get an error instead.
    """
    alpha = alpha.to(dtype=x.dtype).expand_as(x)
    positive = alpha >= 0
    zeros = torch.zeros_like(alpha)
    # Each branch only sees alphas of its own sign (0 elsewhere), so the unused branch of torch.where
    # never produces inf/NaN that would poison the gradient.
    a_pos = torch.where(positive, alpha, zeros)
    a_neg = torch.where(positive, zeros, alpha)
    f_pos = x * _expm1_over(a_pos * x) + a_pos
    shifted = x + a_neg
    v = -a_neg * shifted
    f_neg = shifted * _log1p_over(v, min_arg)
    # At or past the domain edge the clamped value is the constant -ln(min_arg)/alpha; write it
    # explicitly so its x-gradient is exactly 0.
    past = v <= min_arg - 1.0
    edge_value = -math.log(min_arg) / torch.where(past, a_neg, -torch.ones_like(a_neg))
    f_neg = torch.where(past, edge_value, f_neg)
    return torch.where(positive, f_pos, f_neg)


class SoftExponential(nn.Module):
    """Soft exponential activation with learnable ``alpha`` (see :func:`soft_exponential`).

    Parameters
    ----------
    alpha:
        Initial value (0 gives the identity).
    learnable:
        Make ``alpha`` an ``nn.Parameter`` (otherwise a buffer).
    num_features:
        ``None`` for one scalar alpha per layer, or the layer width for one alpha per neuron (broadcast
        along the last input dimension).
    edge:
        ``"clamp"`` (default) continues f as a constant past the log's domain edge for alpha < 0 (see
        :func:`soft_exponential`); ``"raise"`` raises :class:`~relumilp.errors.RelumilpError` instead
        whenever the clamp would act (log argument ``1 - alpha (x + alpha) <= min_arg``).
    min_arg:
        Smallest value the log argument is clamped to.
    """

    def __init__(
        self,
        alpha: float = 0.0,
        learnable: bool = True,
        num_features: int | None = None,
        edge: str = "clamp",
        min_arg: float = 1e-12,
    ):
        super().__init__()
        if edge not in ("clamp", "raise"):
            raise RelumilpError(f"edge must be 'clamp' or 'raise', got {edge!r}")
        if not (0.0 < min_arg < 1.0):
            raise RelumilpError(f"min_arg must be in (0, 1), got {min_arg}")
        if not math.isfinite(float(alpha)):
            raise RelumilpError(f"alpha must be finite, got {alpha}")
        shape = () if num_features is None else (int(num_features),)
        value = torch.full(shape, float(alpha))
        if learnable:
            self.alpha = nn.Parameter(value)
        else:
            self.register_buffer("alpha", value)
        self.edge = edge
        self.min_arg = float(min_arg)
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.edge == "raise":
            with torch.no_grad():
                a = self.alpha.to(x.dtype)
                arg = 1.0 - a * (x + a)
                if bool(((a < 0) & (arg <= self.min_arg)).any()):
                    raise RelumilpError(
                        "SoftExponential input at or outside the domain edge x > 1/alpha - alpha of its alpha < 0 "
                        f"branch (log argument <= min_arg = {self.min_arg})"
                    )
        return soft_exponential(x, self.alpha, self.min_arg)

    def extra_repr(self) -> str:
        shape = "scalar" if self.num_features is None else f"num_features={self.num_features}"
        return f"{shape}, learnable={isinstance(self.alpha, nn.Parameter)}, edge={self.edge!r}"


class RePU(nn.Module):
    """Rectified power unit ``sigma_p(x) = max(0, x)**p`` for an integer ``p >= 2`` (Shen et al. 2023).

    ``sigma_p`` is ``p - 1`` times continuously differentiable, so networks built from it have the
    derivatives that score matching and monotonicity penalties (:mod:`relumilp.train.losses`) need.
    """

    def __init__(self, p: int = 2):
        super().__init__()
        if isinstance(p, bool) or int(p) != p or int(p) < 2:
            raise RelumilpError(f"RePU needs an integer power p >= 2, got {p}")
        self.p = int(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x).pow(self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


# -- perturb-and-MAP samplers ------------------------------------------------------------------------

NOISES = ("gumbel", "gaussian")


def sample_noise(
    shape, noise: str, sigma: float, dtype: torch.dtype, device, generator: torch.Generator | None = None
) -> torch.Tensor:
    """I.i.d. perturbations: standard Gumbel(0, 1) (``-log E`` with ``E ~ Exp(1)``) or ``N(0, sigma**2)``."""
    if noise == "gumbel":
        e = torch.empty(shape, dtype=dtype, device=device).exponential_(generator=generator)
        return -torch.log(e.clamp_min(torch.finfo(dtype).tiny))
    return sigma * torch.randn(shape, dtype=dtype, device=device, generator=generator)


class _Perturb(nn.Module):
    """Shared configuration of :class:`PerturbSoftmax` and :class:`PerturbArgmax`."""

    def __init__(self, noise: str = "gumbel", tau: float = 1.0, sigma: float = 1.0, dim: int = -1,
                 deterministic: bool = False, generator: torch.Generator | None = None):
        super().__init__()
        if noise not in NOISES:
            raise RelumilpError(f"noise must be one of {NOISES}, got {noise!r}")
        if not (math.isfinite(tau) and tau > 0):
            raise RelumilpError(f"temperature tau must be finite and > 0, got {tau}")
        if not (math.isfinite(sigma) and sigma > 0):
            raise RelumilpError(f"noise scale sigma must be finite and > 0, got {sigma}")
        self.noise, self.tau, self.sigma, self.dim = noise, float(tau), float(sigma), int(dim)
        self.deterministic = bool(deterministic)
        self.generator = generator

    def perturbed(self, logits: torch.Tensor, perturbation, generator) -> torch.Tensor:
        """``theta + gamma``: gamma is ``perturbation`` if given, 0 if deterministic, else fresh noise."""
        if perturbation is not None:
            return logits + perturbation.to(dtype=logits.dtype, device=logits.device)
        if self.deterministic:
            return logits
        generator = generator if generator is not None else self.generator
        return logits + sample_noise(logits.shape, self.noise, self.sigma, logits.dtype, logits.device, generator)

    def extra_repr(self) -> str:
        extra = f", sigma={self.sigma}" if self.noise == "gaussian" else ""
        return f"noise={self.noise!r}, tau={self.tau}{extra}, dim={self.dim}, deterministic={self.deterministic}"


class PerturbSoftmax(_Perturb):
    """Relaxed perturb-and-MAP sample ``softmax((theta + gamma) / tau)`` along ``dim``.

    ``gamma`` is i.i.d. standard Gumbel (the Gumbel-softmax / Concrete relaxation) or Gaussian
    ``N(0, sigma**2)`` (``sigma`` is used for Gaussian noise only). Lower ``tau`` gives samples closer to
    one-hot vectors and higher-variance gradients.

    Noise is drawn in train *and* eval mode -- these modules are samplers; set ``deterministic=True`` for
    the noise-free ``softmax(theta / tau)``. Pass ``generator=`` (here or to ``forward``) for
    reproducible draws, or ``perturbation=`` to ``forward`` to supply gamma yourself (e.g. for gradcheck).
    """

    def forward(self, logits: torch.Tensor, generator=None, perturbation=None) -> torch.Tensor:
        return torch.softmax(self.perturbed(logits, perturbation, generator) / self.tau, dim=self.dim)


class PerturbArgmax(_Perturb):
    """Hard perturb-and-MAP sample ``one_hot(argmax(theta + gamma))`` along ``dim`` (one per row).

    With standard Gumbel noise the sample is exactly categorical with probabilities ``softmax(theta)``
    (the Gumbel-max trick); with Gaussian noise it is the multinomial-probit distribution.

    Straight-through gradient (``straight_through=True``): the forward value is the one-hot vector and
    the backward pass is that of the relaxed sample ``softmax((theta + gamma) / tau)`` with the *same*
    gamma, i.e. ``hard - soft.detach() + soft``. With ``straight_through=False`` the output is a constant
    (no gradient). Noise is drawn in eval mode too; ``deterministic=True`` returns ``one_hot(argmax(theta))``.
    """

    def __init__(
        self,
        noise: str = "gumbel",
        sigma: float = 1.0,
        tau: float = 1.0,
        dim: int = -1,
        deterministic: bool = False,
        straight_through: bool = True,
        generator: torch.Generator | None = None,
    ):
        super().__init__(noise, tau, sigma, dim, deterministic, generator)
        self.straight_through = bool(straight_through)

    def forward(self, logits: torch.Tensor, generator=None, perturbation=None) -> torch.Tensor:
        z = self.perturbed(logits, perturbation, generator)
        index = z.argmax(dim=self.dim, keepdim=True)
        hard = torch.zeros_like(z).scatter_(self.dim, index, 1.0)
        if not self.straight_through:
            return hard.detach()
        soft = torch.softmax(z / self.tau, dim=self.dim)
        return hard - soft.detach() + soft

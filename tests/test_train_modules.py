"""Tests of the training-side activations, samplers and score matching (relumilp.train.modules/losses)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.autograd import gradcheck

from relumilp.errors import RelumilpError
from relumilp.train import (
    ClippedReLU,
    PerturbArgmax,
    PerturbSoftmax,
    RePU,
    SoftExponential,
    score_matching_loss,
    soft_exponential,
)
from relumilp.train.modules import _series_threshold

mpmath = pytest.importorskip("mpmath")  # a dependency of sympy, hence of torch
scipy_stats = pytest.importorskip("scipy.stats")

F64 = torch.float64
# float(t) on a tensor that requires grad is intended in these checks
pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad:UserWarning")


def t64(values) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


# -- ClippedReLU -------------------------------------------------------------------------------------


def test_clipped_relu_is_a_hardtanh_with_min_zero():
    m = ClippedReLU(2.5)
    assert isinstance(m, nn.Hardtanh)
    assert (m.min_val, m.max_val, m.c) == (0.0, 2.5, 2.5)
    x = t64([-3.0, -0.1, 0.0, 1.0, 2.5, 7.0])
    assert torch.equal(m(x), t64([0.0, 0.0, 0.0, 1.0, 2.5, 2.5]))
    assert "c=2.5" in repr(m)


@pytest.mark.parametrize("c", [0.0, -1.0, math.inf, math.nan])
def test_clipped_relu_rejects_bad_clip_levels(c):
    with pytest.raises(RelumilpError):
        ClippedReLU(c)


def test_clipped_relu_gradcheck_away_from_kinks():
    x = t64([-2.0, -0.5, 0.3, 0.7, 1.5, 4.0]).requires_grad_(True)
    assert gradcheck(ClippedReLU(1.0), (x,))
    x.grad = None
    ClippedReLU(1.0)(x).sum().backward()
    assert torch.equal(x.grad, t64([0.0, 0.0, 1.0, 1.0, 0.0, 0.0]))


# -- SoftExponential ---------------------------------------------------------------------------------


def reference_soft_exponential(alpha: float, x: float) -> float:
    """The defining formula in 50-digit arithmetic."""
    with mpmath.workdps(50):
        a, v = mpmath.mpf(alpha), mpmath.mpf(x)
        if a < 0:
            return float(-mpmath.log(1 - a * (v + a)) / a)
        if a == 0:
            return float(v)
        return float((mpmath.exp(a * v) - 1) / a + a)


def reference_dalpha(alpha: float, x: float) -> float:
    with mpmath.workdps(50):
        return float(mpmath.diff(lambda a: _mp_f(a, mpmath.mpf(x)), mpmath.mpf(alpha)))


def _mp_f(a, v):
    if a < 0:
        return -mpmath.log(1 - a * (v + a)) / a
    return (mpmath.exp(a * v) - 1) / a + a


@pytest.mark.parametrize("alpha", [-0.9, -0.5, -1e-3, -1e-6, 1e-6, 1e-3, 0.5, 1.3])
def test_soft_exponential_matches_the_formula(alpha):
    if alpha <= -0.1:  # points inside the domain x > 1/alpha - alpha, from near its edge outwards
        # (for tiny |alpha| the edge is far out, where rounding x + alpha is ill-conditioned)
        xs = [1 / alpha - alpha + d for d in (1e-3, 0.3, 1.0, 2.0, 5.0)]
    else:
        xs = [-4.0, -1.0, 0.0, 0.7, 3.0]
    got = soft_exponential(t64(xs), t64(alpha)).numpy()
    want = np.array([reference_soft_exponential(alpha, x) for x in xs])
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)


def test_soft_exponential_alpha_zero_is_identity():
    x = torch.linspace(-5, 5, 11, dtype=F64)
    assert torch.equal(SoftExponential(0.0).double()(x), x)


def test_soft_exponential_is_continuous_in_alpha_at_zero():
    x = torch.linspace(-3.0, 3.0, 13, dtype=F64)
    values, grads_x, grads_a = {}, {}, {}
    for a in (-1e-8, 0.0, 1e-8):
        xx = x.clone().requires_grad_(True)
        alpha = t64(a).requires_grad_(True)
        f = soft_exponential(xx, alpha)
        gx, ga = torch.autograd.grad(f.sum(), (xx, alpha))
        values[a], grads_x[a], grads_a[a] = f.detach(), gx, ga
    for a in (-1e-8, 1e-8):
        assert (values[a] - values[0.0]).abs().max() <= 1e-6
        assert (grads_x[a] - grads_x[0.0]).abs().max() <= 1e-6
        assert abs(float(grads_a[a] - grads_a[0.0])) <= 1e-6 * x.numel()
    # d f / d alpha at alpha = 0 is 1 + x^2 / 2 for both branches
    assert float(grads_a[0.0]) == pytest.approx(float((1.0 + x**2 / 2).sum()), rel=1e-12)


@pytest.mark.parametrize("alpha", [-0.7, -1e-4, 2e-4, 0.8])
def test_soft_exponential_alpha_gradient_matches_high_precision(alpha):
    xs = [-0.5, 0.1, 0.9, 2.0]
    alpha_t = t64(alpha).requires_grad_(True)
    got = [float(torch.autograd.grad(soft_exponential(t64(x), alpha_t), alpha_t)[0]) for x in xs]
    want = [reference_dalpha(alpha, x) for x in xs]
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_soft_exponential_series_and_closed_form_agree_at_the_switch():
    """Just below and above the series threshold both value and d/dalpha agree with 50-digit math."""
    delta = _series_threshold(F64)
    x = 2.0
    for a in (delta / x * (1 - 1e-9), delta / x * (1 + 1e-9)):
        for sign in (1.0, -1.0):
            alpha = t64(sign * a).requires_grad_(True)
            f = soft_exponential(t64(x), alpha)
            (g,) = torch.autograd.grad(f, alpha)
            assert float(f.detach()) == pytest.approx(reference_soft_exponential(sign * a, x), rel=1e-14)
            assert float(g) == pytest.approx(reference_dalpha(sign * a, x), rel=1e-11)


@pytest.mark.parametrize("alpha", [-0.6, 0.0, 0.6])
def test_soft_exponential_gradcheck_including_alpha(alpha):
    x = t64([-0.8, -0.2, 0.4, 1.1]).requires_grad_(True)
    a = t64(alpha).requires_grad_(True)
    assert gradcheck(lambda xx, aa: soft_exponential(xx, aa), (x, a))


@pytest.mark.parametrize("alpha", [-0.3, 0.0, 0.3])
def test_soft_exponential_float32(alpha):
    m = SoftExponential(alpha)
    x = torch.linspace(-1.0, 2.0, 31, requires_grad=True)
    y = m(x)
    y.sum().backward()
    assert y.dtype == torch.float32 and torch.all(torch.isfinite(x.grad)) and torch.isfinite(m.alpha.grad)
    want = [reference_soft_exponential(alpha, float(v)) for v in x.detach().double()]
    np.testing.assert_allclose(y.detach().numpy(), want, rtol=1e-5, atol=1e-6)


def test_soft_exponential_per_neuron_alpha_and_buffers():
    m = SoftExponential(0.3, num_features=3).double()
    assert m.alpha.shape == (3,) and isinstance(m.alpha, nn.Parameter)
    with torch.no_grad():
        m.alpha.copy_(t64([-0.5, 0.0, 0.5]))
    x = t64([[0.5, 0.5, 0.5], [1.0, 1.0, 1.0]])
    y = m(x)
    for j, a in enumerate([-0.5, 0.0, 0.5]):
        for i in range(2):
            assert float(y[i, j].detach()) == pytest.approx(reference_soft_exponential(a, float(x[i, j])), rel=1e-13)
    y.sum().backward()
    assert m.alpha.grad.shape == (3,) and torch.all(m.alpha.grad != 0)
    frozen = SoftExponential(0.2, learnable=False)
    assert not list(frozen.parameters()) and "alpha" in dict(frozen.named_buffers())


def test_soft_exponential_domain_edge_clamp_and_raise():
    alpha = -0.5  # domain x > 1/alpha - alpha = -1.5
    x = t64([-3.0, -1.5, -1.4999999]).requires_grad_(True)
    f = SoftExponential(alpha, edge="clamp").double()(x)
    edge = -math.log(1e-12) / alpha
    fd = f.detach()
    assert torch.all(torch.isfinite(fd))
    assert float(fd[0]) == pytest.approx(edge) and float(fd[1]) == pytest.approx(edge)
    assert float(fd[2]) == pytest.approx(reference_soft_exponential(alpha, -1.4999999), rel=1e-8)
    assert float(fd[2]) > edge  # still non-decreasing in x
    f.sum().backward()
    assert float(x.grad[0]) == 0.0 and float(x.grad[1]) == 0.0
    with pytest.raises(RelumilpError, match="domain"):
        SoftExponential(alpha, edge="raise")(t64([-1.6]))
    SoftExponential(alpha, edge="raise")(t64([-1.4]))  # inside: fine
    with pytest.raises(RelumilpError):
        SoftExponential(edge="wrap")


# -- RePU --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [2, 3, 5])
def test_repu_values_and_gradcheck(p):
    x = t64([-2.0, -0.3, 0.0, 0.4, 1.7]).requires_grad_(True)
    y = RePU(p)(x)
    assert torch.allclose(y, torch.clamp(x, min=0) ** p)
    assert gradcheck(RePU(p), (x,))


@pytest.mark.parametrize("p", [1, 0, 2.5, True])
def test_repu_rejects_bad_powers(p):
    with pytest.raises(RelumilpError):
        RePU(p)


# -- score matching ----------------------------------------------------------------------------------


class AffineScore(nn.Module):
    """The exact score -(x - mu) / sigma^2 of N(mu, diag(sigma^2))."""

    def __init__(self, mu, sigma):
        super().__init__()
        self.mu, self.sigma = t64(mu), t64(sigma)

    def forward(self, x):
        return -(x - self.mu) / self.sigma**2


def test_score_matching_loss_at_the_true_score_is_the_closed_form():
    mu, sigma = [1.0, -2.0], [0.5, 2.0]
    g = torch.Generator().manual_seed(0)
    x = t64(mu) + t64(sigma) * torch.randn(5000, 2, generator=g, dtype=F64)
    loss = score_matching_loss(AffineScore(mu, sigma), x)
    s2 = t64(sigma) ** 2
    # on the sample: tr = -sum 1/sigma^2, 1/2 ||s||^2 = 1/2 sum (x - mu)^2 / sigma^4
    exact_on_sample = -(1 / s2).sum() + 0.5 * (((x - t64(mu)) ** 2) / s2**2).sum(dim=1).mean()
    assert float(loss) == pytest.approx(float(exact_on_sample), rel=1e-12)
    # in expectation -1/2 sum 1/sigma^2 = -2.0625; the sample mean of 1/2 sum z^2/sigma^2 has standard
    # deviation sqrt(sum 1/(2 sigma^4) / n) = 0.04 here, so 0.2 is five standard deviations
    assert float(loss) == pytest.approx(-0.5 * float((1 / s2).sum()), abs=0.2)
    per_sample = score_matching_loss(AffineScore(mu, sigma), x[:7], reduction="none")
    assert per_sample.shape == (7,)


def test_score_matching_rejects_shape_changes():
    with pytest.raises(RelumilpError):
        score_matching_loss(nn.Linear(2, 1).double(), torch.zeros(3, 2, dtype=F64))


def test_score_matching_trains_a_repu_net_to_the_gaussian_score():
    """A 1-16-1 RePU net trained by score matching on N(1, 0.5^2) learns s(x) = -(x - 1) / 0.25.

    Tolerance: the score-matching estimate of the precision 1/sigma^2 = 4 from n = 2000 samples has
    relative standard deviation about sqrt(2/n) = 3%, i.e. 0.13 at x = mu +- 2 sigma where the score is
    +-4 (measured error of the trained net: 0.16). We allow 0.5 there (and a 10% slope error): a loss
    without the trace term collapses to s = 0 (error 4), a sign error diverges.
    """
    mu, sigma = 1.0, 0.5
    g = torch.Generator().manual_seed(0)
    x = mu + sigma * torch.randn(2000, 1, generator=g, dtype=F64)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(1, 16), RePU(2), nn.Linear(16, 1)).double()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(300):
        loss = score_matching_loss(net, x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    grid = torch.linspace(mu - 2 * sigma, mu + 2 * sigma, 41, dtype=F64)[:, None]
    with torch.no_grad():
        learned = net(grid)
    true = -(grid - mu) / sigma**2
    assert float((learned - true).abs().max()) < 0.5
    slope = float(np.polyfit(grid.numpy().ravel(), learned.numpy().ravel(), 1)[0])
    assert slope == pytest.approx(-1 / sigma**2, rel=0.1)
    assert float(loss) == pytest.approx(-0.5 / sigma**2, abs=0.2)


# -- perturb-and-MAP samplers ------------------------------------------------------------------------


def test_perturb_softmax_rows_are_distributions_and_deterministic_mode():
    theta = t64([[0.5, -1.0, 2.0], [0.0, 0.0, 0.0]])
    g = torch.Generator().manual_seed(3)
    y = PerturbSoftmax(tau=0.7)(theta, generator=g)
    assert torch.allclose(y.sum(dim=-1), torch.ones(2, dtype=F64))
    det = PerturbSoftmax(tau=0.7, deterministic=True)(theta)
    assert torch.allclose(det, torch.softmax(theta / 0.7, dim=-1))


@pytest.mark.parametrize("noise", ["gumbel", "gaussian"])
def test_samplers_reproducible_with_generator_and_random_in_eval(noise):
    theta = torch.zeros(4, 5, dtype=F64)
    for cls in (PerturbSoftmax, PerturbArgmax):
        m = cls(noise=noise).eval()  # eval mode still samples
        a = m(theta, generator=torch.Generator().manual_seed(7))
        b = m(theta, generator=torch.Generator().manual_seed(7))
        c = m(theta, generator=torch.Generator().manual_seed(8))
        assert torch.equal(a, b) and not torch.equal(a, c)
        own = cls(noise=noise, generator=torch.Generator().manual_seed(7))
        assert torch.equal(own(theta), a)


def test_perturb_softmax_gradcheck_with_fixed_noise():
    theta = t64([[0.3, -0.2, 1.0, 0.0], [1.5, 0.1, -0.4, 0.2]]).requires_grad_(True)
    gamma = t64([[0.1, -0.5, 0.2, 0.9], [0.0, 0.3, -0.1, 0.4]])
    for noise in ("gumbel", "gaussian"):
        m = PerturbSoftmax(noise=noise, tau=0.5)
        assert gradcheck(lambda th: m(th, perturbation=gamma), (theta,))


def test_perturb_argmax_is_one_hot_per_row():
    theta = torch.randn(50, 6, dtype=F64, generator=torch.Generator().manual_seed(0))
    y = PerturbArgmax()(theta, generator=torch.Generator().manual_seed(1))
    assert torch.equal(y.detach().sum(dim=-1), torch.ones(50, dtype=F64))
    assert set(torch.unique(y.detach()).tolist()) <= {0.0, 1.0}
    det = PerturbArgmax(deterministic=True)(theta).detach()
    assert torch.equal(det.argmax(dim=-1), theta.argmax(dim=-1))


def test_gumbel_argmax_frequencies_match_softmax():
    theta = t64([1.0, 0.0, -0.5, 0.7, -2.0])
    n = 20000
    y = PerturbArgmax(noise="gumbel")(theta.expand(n, -1), generator=torch.Generator().manual_seed(0))
    counts = y.detach().sum(dim=0).numpy()
    expected = n * torch.softmax(theta, dim=0).numpy()
    assert scipy_stats.chisquare(counts, expected).pvalue > 1e-3
    # the test can fail: frequencies of softmax(2 theta) are rejected
    wrong = n * torch.softmax(2 * theta, dim=0).numpy()
    assert scipy_stats.chisquare(counts, wrong).pvalue < 1e-6


def test_gaussian_argmax_frequencies_match_numpy_monte_carlo():
    theta = np.array([0.4, 0.0, -0.3, 0.8])
    sigma, n = 1.5, 20000
    y = PerturbArgmax(noise="gaussian", sigma=sigma)(
        torch.as_tensor(theta).expand(n, -1), generator=torch.Generator().manual_seed(0)
    )
    counts = y.detach().sum(dim=0).numpy()
    rng = np.random.default_rng(12345)  # independent Monte-Carlo reference
    ref = np.bincount(np.argmax(theta + sigma * rng.standard_normal((n, theta.size)), axis=1), minlength=theta.size)
    assert scipy_stats.chi2_contingency(np.stack([counts, ref])).pvalue > 1e-3
    # and sigma matters: sigma = 0.3 gives a clearly different distribution
    ref_small = np.bincount(np.argmax(theta + 0.3 * rng.standard_normal((n, theta.size)), axis=1), minlength=theta.size)
    assert scipy_stats.chi2_contingency(np.stack([counts, ref_small])).pvalue < 1e-6


@pytest.mark.parametrize("noise", ["gumbel", "gaussian"])
def test_straight_through_gradient_equals_softmax_gradient(noise):
    theta = t64([[0.2, -0.4, 0.9], [0.0, 0.5, -1.0]]).requires_grad_(True)
    gamma = t64([[0.3, 0.1, -0.2], [1.2, -0.3, 0.0]])
    weights = t64([[1.0, -2.0, 0.5], [0.3, 0.7, -1.1]])
    hard = PerturbArgmax(noise=noise, tau=0.8)(theta, perturbation=gamma)
    assert torch.equal(hard.detach(), t64([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]))
    (g_hard,) = torch.autograd.grad((weights * hard).sum(), theta)
    soft = PerturbSoftmax(noise=noise, tau=0.8)(theta, perturbation=gamma)
    (g_soft,) = torch.autograd.grad((weights * soft).sum(), theta)
    assert torch.allclose(g_hard, g_soft, rtol=0, atol=1e-15)
    assert float(g_hard.abs().max()) > 1e-3
    no_st = PerturbArgmax(straight_through=False)(theta, perturbation=gamma)
    assert not no_st.requires_grad


def test_sampler_argument_validation():
    with pytest.raises(RelumilpError):
        PerturbSoftmax(noise="uniform")
    with pytest.raises(RelumilpError):
        PerturbSoftmax(tau=0.0)
    with pytest.raises(RelumilpError):
        PerturbArgmax(sigma=-1.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_soft_exponential_gradients_stay_finite_past_the_domain_edge(dtype):
    # in float32 ``min_arg - 1`` rounds to -1, where the clamped log1p once made 0 * inf = NaN gradients
    from relumilp.train.modules import soft_exponential

    x = torch.tensor([-100.0, -3.0, 0.0, 2.0], dtype=dtype, requires_grad=True)
    alpha = torch.tensor(-0.5, dtype=dtype, requires_grad=True)
    y = soft_exponential(x, alpha)
    y.sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all() and torch.isfinite(alpha.grad).all()
    assert x.grad[0] == 0.0 and float(y[0]) == pytest.approx(-math.log(1e-12) / -0.5, rel=1e-6)

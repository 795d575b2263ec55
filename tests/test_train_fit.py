"""Tests of relumilp.train.fit: fit_surrogate, device selection, and the effect of the regularizers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from relumilp.bounds.base import stability_counts
from relumilp.bounds.interval import interval_bounds
from relumilp.domain import InputDomain
from relumilp.errors import RelumilpError
from relumilp.ir import Network
from relumilp.pruning import prune
from relumilp.train import ClippedReLU, fit_surrogate, hidden_linears, resolve_device, sequential_layers

BOX = InputDomain.box(-3.0, 3.0, size=2)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks train fastest (and least affected by other load) on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def peaks(x: np.ndarray) -> np.ndarray:
    """MATLAB's peaks function on [-3, 3]^2."""
    a, b = x[:, 0], x[:, 1]
    return (
        3 * (1 - a) ** 2 * np.exp(-(a**2) - (b + 1) ** 2)
        - 10 * (a / 5 - a**3 - b**5) * np.exp(-(a**2) - b**2)
        - np.exp(-((a + 1) ** 2) - b**2) / 3
    )


@pytest.fixture(scope="module")
def data():
    x = np.random.default_rng(0).uniform(-3.0, 3.0, size=(500, 2))
    return x, peaks(x)


FIT = dict(hidden=(16, 16), epochs=30, progress=False, bounds=(BOX.lower, BOX.upper))


@pytest.fixture(scope="module")
def plain(data):
    """The unregularised reference fit (seed 0)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fit_surrogate(*data, **FIT)
    finally:
        torch.set_num_threads(threads)


def to_network(model) -> Network:
    """The IR of a trained MLP built from its Linear weights (independent of the torch frontend)."""
    layers, acts = sequential_layers(model)
    return Network.sequential(
        [(w.detach().numpy(), b.detach().numpy()) for w, b in layers], acts
    )


def stable_fraction(model) -> float:
    rows = stability_counts(to_network(model), interval_bounds(to_network(model), BOX))
    return 1.0 - sum(r["unstable"] for r in rows) / sum(r["size"] for r in rows)


def zero_rows(model) -> int:
    return sum(int((m.weight.detach().abs().sum(dim=1) == 0).sum()) for m in hidden_linears(model))


def test_resolve_device():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device().type == expected == resolve_device("auto").type
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device() == torch.device("cpu")
        with pytest.raises(RelumilpError, match="CUDA"):
            resolve_device("cuda")
    with pytest.raises(RelumilpError):
        resolve_device("tpu-please")


def test_fit_reduces_validation_loss_and_returns_a_cpu_float64_eval_model(plain):
    model, history = plain
    assert len(history["train_loss"]) == len(history["val_loss"]) == 30
    assert history["val_loss"][-1] < 0.8 * history["val_loss"][0]  # measured: 0.86 -> 0.52
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert isinstance(model, nn.Sequential) and not model.training
    assert all(not m.training for m in model.modules())
    for p in model.parameters():
        assert p.dtype == torch.float64 and p.device.type == "cpu"
    assert history["device"] == "cpu"


def test_fitted_model_predicts_in_original_units(data, plain):
    model, history = plain
    x, y = data
    val, train = history["split"]["val"], history["split"]["train"]
    assert len(val) == 100 and len(set(val) | set(train)) == 500
    with torch.no_grad():
        pred = model(torch.as_tensor(x)).numpy()[:, 0]
    # manual forward pass with the returned weights (ReLU MLP) in numpy
    h = x
    linears = [m for m in model if isinstance(m, nn.Linear)]
    for k, lin in enumerate(linears):
        h = h @ lin.weight.detach().numpy().T + lin.bias.detach().numpy()
        if k < len(linears) - 1:
            h = np.maximum(h, 0.0)
    np.testing.assert_allclose(pred, h[:, 0], rtol=1e-12, atol=1e-12)
    # the standardised validation loss of training equals the original-unit MSE / var(y_train)
    mse = np.mean((pred[val] - y[val]) ** 2)
    assert mse / y[train].var() == pytest.approx(history["val_loss"][-1], rel=1e-4)


def test_standardisation_is_folded_into_the_first_and_last_layers():
    x = np.random.default_rng(1).uniform(1000.0, 1010.0, size=(300, 1))
    y = 3.0 * x[:, 0] - 2500.0  # far from zero mean / unit variance
    model, _ = fit_surrogate(x, y, hidden=(8,), epochs=60, lr=1e-2, progress=False, val_split=0.0)
    with torch.no_grad():
        pred = model(torch.as_tensor(x)).numpy()[:, 0]
    assert np.max(np.abs(pred - y)) < 0.5  # y spans 500..530; an unfolded model would be off by ~500


def test_fit_is_deterministic_for_a_seed(data):
    kwargs = dict(hidden=(8,), epochs=3, progress=False, dropout=0.1)
    a, ha = fit_surrogate(*data, seed=3, **kwargs)
    b, hb = fit_surrogate(*data, seed=3, **kwargs)
    c, _ = fit_surrogate(*data, seed=4, **kwargs)
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb)
    assert ha["train_loss"] == hb["train_loss"]
    assert not all(torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))


def test_stability_regularizer_increases_the_share_of_stable_neurons(data, plain):
    """Same seed with and without the ReLU-stability loss: measured 2/32 -> 12/32 stable neurons."""
    model, history = fit_surrogate(*data, stability=1e-2, **FIT)
    base = stable_fraction(plain[0])
    regularized = stable_fraction(model)
    assert regularized >= base + 0.15
    assert history["stable_fraction"] == pytest.approx(regularized)
    assert len(history["stability"]) == 30 and history["stability"][-1] < history["stability"][0]


def test_group_l1_zeroes_whole_neurons_which_pruning_removes(data, plain):
    """Measured (group_l1=1e-2): 7 + 5 of 32 hidden neurons have an all-zero incoming row."""
    model, history = fit_surrogate(*data, group_l1=1e-2, **FIT)
    assert zero_rows(plain[0]) == 0
    zeroed = zero_rows(model)
    assert zeroed >= 4
    net = to_network(model)
    pruned = prune(net, interval_bounds(net, BOX))
    assert sum(pruned.hidden_sizes) <= 32 - zeroed
    x = BOX.sample(10_000, 0)
    np.testing.assert_allclose(pruned.forward(x), net.forward(x), rtol=1e-9, atol=1e-9)
    assert history["group_l1"][-1] > 0


def test_fit_options_clipped_leaky_epsilon_and_extra_regularizers(data):
    calls = []

    def extra(model, xb):
        calls.append(xb.shape[0])
        return torch.zeros(())

    model, history = fit_surrogate(
        *data, hidden=(6, 5), activation="clipped", clip=[0.5, 2.0], epochs=2, progress=False,
        stability=1e-3, big_m=1e-3, epsilon=0.1, l1=1e-4, proximal=False, regularizers=[extra],
    )
    clips = [m.c for m in model if isinstance(m, ClippedReLU)]
    assert clips == [0.5, 2.0]
    assert sum(calls) == 2 * 400
    assert {"stability", "big_m", "l1"} <= set(history)
    leaky, _ = fit_surrogate(data[0][:, 0], data[1], hidden=(4,), activation="leaky", epochs=1, progress=False, val_split=0.0)
    assert isinstance(leaky[1], nn.LeakyReLU) and leaky[0].in_features == 1


def test_fit_without_hidden_layers_is_a_linear_regression(data):
    x, y = data
    model, history = fit_surrogate(x, y, hidden=(), epochs=2, stability=1e-2, group_l1=1e-2, progress=False)
    assert [type(m) for m in model] == [nn.Linear]
    assert history["stable_fraction"] == 1.0 and history["stability"] == [0.0, 0.0]


def test_fit_validates_its_input(data):
    x, y = data
    with pytest.raises(RelumilpError):
        fit_surrogate(x, y[:-1], progress=False)
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(RelumilpError):
        fit_surrogate(bad, y, progress=False)
    with pytest.raises(RelumilpError):
        fit_surrogate(x, y, val_split=1.0, progress=False)
    with pytest.raises(RelumilpError):
        fit_surrogate(x, y, activation="mish", progress=False)
    with pytest.raises(RelumilpError):
        fit_surrogate(x, y, stability=-1.0, progress=False)


def test_progress_bar_can_be_disabled(data, capsys):
    fit_surrogate(*data, hidden=(4,), epochs=2, progress=False)
    assert "fit_surrogate" not in capsys.readouterr().err
    fit_surrogate(*data, hidden=(4,), epochs=2, progress=True)
    assert "fit_surrogate" in capsys.readouterr().err


def test_fitted_model_compiles_with_the_torch_frontend(data, plain):
    frontends = pytest.importorskip("relumilp.frontends")
    if not hasattr(frontends, "load_network"):
        pytest.skip("relumilp.frontends.load_network is not available yet")
    model, _ = plain
    net = frontends.load_network(model)
    x = BOX.sample(1000, 0)
    with torch.no_grad():
        want = model(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(net.forward(x), want, rtol=1e-12, atol=1e-12)

"""torch modules as users write them: subclasses with their own forward, hooks, per-layer train/eval flags,
meta-device models. Each is compiled exactly as torch computes it, or refused in one line; the user's
module is left as it was given."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from relumilp.errors import InvalidNetworkError, UnsupportedOperatorError
from relumilp.frontends.torch import from_torch
from relumilp.train.modules import ClippedReLU


# -- A subclass of a supported layer that defines its own forward is traced through it (never read as the base
# layer), and a user's own activation named like a torch one (GELU, Mish) is traced like any other module.


class MaskedLinear(nn.Linear):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        mask = torch.ones_like(self.weight)
        mask[:2, 0] = 0
        self.register_buffer("mask", mask)

    def forward(self, x):
        return F.linear(x, self.weight * self.mask, self.bias)


class ShiftedReLU(nn.ReLU):
    def forward(self, x):
        return F.relu(x - 0.01)


class GELU(nn.Module):  # the BERT / GPT-2 spelling
    def forward(self, x):
        return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * torch.pow(x, 3))))


def test_subclass_with_its_own_forward_is_traced_through_it():
    torch.manual_seed(0)
    module = nn.Sequential(MaskedLinear(4, 16), ShiftedReLU(), nn.Linear(16, 2)).double().eval()
    net = from_torch(module)
    assert net.input_shape == (4,)
    x = torch.randn(64, 4, dtype=torch.float64)
    np.testing.assert_allclose(net.forward(x.numpy()), module(x).detach().numpy(), rtol=1e-12, atol=1e-12)


def test_subclass_that_only_configures_a_layer_stays_a_leaf():
    net = from_torch(nn.Sequential(nn.Linear(3, 4), ClippedReLU(2.0), nn.Linear(4, 1)))
    assert [(a.kind, a.cap) for a in net.activations] == [("clipped_relu", 2.0)]


def test_user_activation_named_like_a_torch_one_compiles_through_its_forward():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(3, 4), GELU(), nn.Linear(4, 1)).double().eval()
    net = from_torch(module)
    x = torch.randn(32, 3, dtype=torch.float64)
    np.testing.assert_allclose(net.forward(x.numpy()), module(x).detach().numpy(), rtol=1e-9, atol=1e-12)


# -- torch.fx does not run forward hooks: a hooked module is refused in one line (torch.export runs them).


def hooked(kind: str) -> nn.Module:
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2)).double().eval()
    if kind == "forward":
        module.register_forward_hook(lambda m, inp, out: out + 0.02)
    elif kind == "pre":
        module[0].register_forward_pre_hook(lambda m, inp: (inp[0].clamp(-0.5, 0.5),))
    else:
        module[0] = torch.nn.utils.weight_norm(module[0])
        with torch.no_grad():
            module[0].weight_g.mul_(1.02)
    return module


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("kind", ["forward", "pre", "weight_norm"])
def test_forward_hooks_are_refused_by_fx_and_followed_by_export(kind):
    module = hooked(kind)
    with pytest.raises(UnsupportedOperatorError, match="forward hooks") as err:
        from_torch(module)
    assert "\n" not in str(err.value) and "torch.export" in str(err.value)
    x = torch.randn(16, 3, dtype=torch.float64)
    net = from_torch(torch.export.export(module, (x[:1],)))
    np.testing.assert_allclose(net.forward(x.numpy()), module(x).detach().numpy(), rtol=1e-12, atol=1e-12)


# -- from_torch leaves every layer's training flag as it found it, and compiles a train-mode layer under an eval-mode
# root (MC dropout) with eval semantics, as documented, instead of failing the source check.


@pytest.mark.filterwarnings("ignore:the model is in training mode")
@pytest.mark.parametrize("script", [False, True])
def test_training_flags_of_each_layer_are_restored(script):
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 2))
    module.train()
    module[1].eval()  # a frozen batch norm while fine-tuning
    source = torch.jit.script(module) if script else module
    before = [m.training for m in source.modules()]
    from_torch(source)
    assert [m.training for m in source.modules()] == before


@pytest.mark.filterwarnings("ignore:the model is in training mode")
def test_dropout_switched_on_under_an_eval_root_compiles_with_eval_semantics():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(3, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 2)).double()
    module.eval()
    module[2].train()  # MC dropout
    net = from_torch(module)
    assert module[2].training and not module.training
    x = torch.randn(16, 3, dtype=torch.float64)
    module.eval()
    np.testing.assert_allclose(net.forward(x.numpy()), module(x).detach().numpy(), rtol=1e-12, atol=1e-12)


# -- A model on the meta device has no weights: one line, not torch's NotImplementedError.


def test_meta_device_model_is_refused_in_one_line():
    module = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2)).to("meta")
    for source in (module, torch.export.export(module, (torch.empty(1, 1, 4, 4, device="meta"),))):
        with pytest.raises(InvalidNetworkError, match="meta device") as err:
            from_torch(source, input_shape=(1, 4, 4))
        assert "\n" not in str(err.value)


# -- The source check compares a float64 copy of a float32 module with the float64 IR: a conversion off by
# 1e-3 (far below the 5% that float32-only comparison allows) is refused.


def test_source_check_runs_a_float64_copy_and_catches_small_misreadings():
    from relumilp.frontends import torch as torch_frontend

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
    net = from_torch(model)
    program = torch_frontend._fx_program(model)
    assert next(model.parameters()).dtype == torch.float32  # the user's module is not converted
    torch_frontend._check_against_source(model, program, net)  # the right network passes
    with torch.no_grad():
        model[2].bias += 1e-3
    with pytest.raises(InvalidNetworkError, match="differs from the model's own forward pass"):
        torch_frontend._check_against_source(model, program, net)
    assert next(model.parameters()).dtype == torch.float32


# -- x.T and x.mT in a forward: transposes, as torch computes them.


def test_transpose_attributes_of_a_network_value():
    class Transposing(nn.Module):
        def __init__(self):
            super().__init__()
            self.first, self.last = nn.Linear(6, 6), nn.Linear(6, 2)

        def forward(self, x):
            h = torch.relu(self.first(x)).reshape(-1, 2, 3).mT.reshape(-1, 6)
            return self.last(torch.relu(h).T.T)

    model = Transposing().double()
    net = from_torch(model, input_shape=(6,))
    x = np.random.default_rng(0).normal(size=(5, 6))
    np.testing.assert_allclose(net.forward(x), model(torch.tensor(x)).detach().numpy(), rtol=1e-12, atol=1e-12)

"""Train small MLP surrogates that compile directly and are cheap to optimise over.

:func:`fit_surrogate` fits an ``nn.Sequential`` of Linear layers and piecewise-linear activations
(ReLU, clipped ReLU, LeakyReLU) -- or smooth ones (sigmoid, tanh, SiLU), which compile through certified
sandwiches (:mod:`relumilp.smooth`) -- to data with Adam and mean squared error, optionally with the
regularizers of :mod:`relumilp.train.regularizers` (L1, group L1, ReLU stability, big-M size) that
make the resulting MILP smaller and faster to solve (Plate et al. 2025). The returned network is
float64, on the CPU, in eval mode, and maps inputs in the original data units to outputs in the
original units -- the standardisation used for training is folded into the first and last Linear
layers -- so it can be passed to the compiler as is.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import RelumilpError
from .modules import ClippedReLU
from .regularizers import make_regularizers, sequential_layers

__all__ = ["resolve_device", "build_mlp", "fit_surrogate", "LambdaSchedule"]

ACTIVATIONS = {"relu": "relu", "clipped": "clipped", "clipped_relu": "clipped", "leaky": "leaky", "leaky_relu": "leaky",
               "sigmoid": "sigmoid", "tanh": "tanh", "silu": "silu"}
#: smooth activations: compiled through certified sandwiches (relumilp.smooth), no stability statistics
_SMOOTH_MODULES = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "silu": nn.SiLU}


def resolve_device(device="auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; otherwise ``torch.device(device)`` (checked)."""
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise RelumilpError(f"unknown device {device!r}: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RelumilpError("device 'cuda' requested but CUDA is not available; use device='auto' or 'cpu'")
    if dev.type == "meta":
        raise RelumilpError("device 'meta' holds no data to train on; use device='auto', 'cpu' or 'cuda'")
    return dev


def build_mlp(
    n_in: int,
    n_out: int,
    hidden: Sequence[int] = (32, 32),
    activation: str = "relu",
    clip: float | Sequence[float] = 1.0,
    negative_slope: float = 0.01,
    dropout: float = 0.0,
) -> nn.Sequential:
    """``Linear -> act (-> Dropout) -> ... -> Linear``; ``clip`` may give one clip level per hidden layer."""
    kind = ACTIVATIONS.get(activation)
    if kind is None:
        raise RelumilpError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    hidden = [int(h) for h in hidden]
    if any(h < 1 for h in hidden):
        raise RelumilpError(f"hidden layer widths must be positive, got {hidden}")
    clips = [float(clip)] * len(hidden) if np.ndim(clip) == 0 else [float(c) for c in clip]
    if len(clips) != len(hidden):
        raise RelumilpError(f"got {len(clips)} clip levels for {len(hidden)} hidden layers")
    if not (0.0 <= dropout < 1.0):
        raise RelumilpError(f"dropout must be in [0, 1), got {dropout}")
    if kind == "leaky" and not (0.0 <= negative_slope < 1.0):
        raise RelumilpError(f"negative_slope must be in [0, 1), got {negative_slope}")
    modules: list[nn.Module] = []
    width = int(n_in)
    for h, c in zip(hidden, clips):
        modules.append(nn.Linear(width, h))
        if kind in _SMOOTH_MODULES:
            modules.append(_SMOOTH_MODULES[kind]())
        elif kind == "relu":
            modules.append(nn.ReLU())
        elif kind == "clipped":
            modules.append(ClippedReLU(c))
        else:
            modules.append(nn.LeakyReLU(negative_slope))
        if dropout > 0.0:
            modules.append(nn.Dropout(dropout))
        width = h
    modules.append(nn.Linear(width, int(n_out)))
    return nn.Sequential(*modules)


class LambdaSchedule:
    r"""Multiplier of the regularizer weights over the epochs: warm-up, then a linear ramp.

    ``factor(e) = 0`` for ``e < warmup``, ``(e - warmup + 1) / ramp`` during the ``ramp`` epochs after
    it, then 1. The data loss alone shapes the network first; the penalties then come in gradually, so
    the network moves towards a stable configuration near a good fit instead of being forced into a
    nearly affine one from the random initialisation (where every neuron is easy to make stable).
    """

    def __init__(self, warmup: int = 0, ramp: int = 0):
        if int(warmup) < 0 or int(ramp) < 0:
            raise RelumilpError(f"warmup and ramp must be >= 0 epochs, got {warmup} and {ramp}")
        self.warmup, self.ramp = int(warmup), int(ramp)

    def __call__(self, epoch: int) -> float:
        if epoch < self.warmup:
            return 0.0
        if self.ramp == 0:
            return 1.0
        return min(1.0, (epoch - self.warmup + 1) / self.ramp)

    def __repr__(self) -> str:
        return f"LambdaSchedule(warmup={self.warmup}, ramp={self.ramp})"


def _as_2d(a, what: str) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise RelumilpError(f"{what} must be numeric: {exc}") from None
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise RelumilpError(f"{what} must be a 1-D or 2-D array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise RelumilpError(f"{what} contains NaN or infinite values")
    return arr


@torch.no_grad()
def _unfold_standardization(model: nn.Sequential, x_mean, x_std, y_mean, y_std) -> None:
    """The inverse of :func:`_fold_standardization`: make a model in original units act on standardised ones."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    first, last = linears[0], linears[-1]
    x_mean, x_std, y_mean, y_std = (torch.as_tensor(v, dtype=first.weight.dtype, device=first.weight.device)
                                    for v in (x_mean, x_std, y_mean, y_std))
    if first.bias is None or last.bias is None:
        raise RelumilpError("init_model needs Linear layers with biases at both ends")
    first.bias.add_(first.weight @ x_mean)
    first.weight.mul_(x_std[None, :])
    last.bias.sub_(y_mean).div_(y_std)
    last.weight.div_(y_std[:, None])


@torch.no_grad()
def _fold_standardization(model: nn.Sequential, x_mean, x_std, y_mean, y_std) -> None:
    """Make ``model`` act on raw inputs/outputs: ``f(x) = y_std * g((x - x_mean) / x_std) + y_mean``."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    first, last = linears[0], linears[-1]
    x_mean, x_std, y_mean, y_std = (torch.as_tensor(v, dtype=torch.float64) for v in (x_mean, x_std, y_mean, y_std))
    if first.bias is None or last.bias is None:  # pragma: no cover - build_mlp always has biases
        raise RelumilpError("folding the standardisation needs Linear layers with biases")
    first.bias.sub_(first.weight @ (x_mean / x_std))
    first.weight.div_(x_std[None, :])
    last.weight.mul_(y_std[:, None])
    last.bias.mul_(y_std).add_(y_mean)


def _stable_fraction(model: nn.Sequential, lower: np.ndarray, upper: np.ndarray) -> float:
    """Share of hidden neurons that are stable under interval bounds over the box (1.0 with none)."""
    from ..bounds.base import stability_counts
    from ..bounds.interval import interval_bounds
    from ..domain import InputDomain
    from ..ir import Network

    layers, acts = sequential_layers(model)
    if not acts:
        return 1.0
    np_layers = [(w.detach().cpu().double().numpy(), b.detach().cpu().double().numpy()) for w, b in layers]
    net = Network.sequential(np_layers, acts)
    rows = stability_counts(net, interval_bounds(net, InputDomain(lower, upper)))
    total = sum(r["size"] for r in rows)
    return 1.0 - sum(r["unstable"] for r in rows) / total


def fit_surrogate(
    X,
    y,
    hidden: Sequence[int] = (32, 32),
    activation: str = "relu",
    clip: float | Sequence[float] = 1.0,
    negative_slope: float = 0.01,
    l1: float = 0.0,
    group_l1: float = 0.0,
    stability: float = 0.0,
    big_m: float = 0.0,
    big_m_variant: str = "max_abs",
    bound_method: str = "interval",
    epsilon=None,
    unstable: float = 0.0,
    sub_boxes: int | None = None,
    layer_weights: Sequence[float] | None = None,
    schedule: LambdaSchedule | None = None,
    init_model: nn.Module | None = None,
    phases: Sequence | None = None,
    phase_weight: float = 10.0,
    phase_margin: float = 1e-3,
    dropout: float = 0.0,
    epochs: int = 200,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    val_split: float = 0.2,
    seed: int = 0,
    device="auto",
    bounds=None,
    standardize: bool = True,
    proximal: bool = True,
    regularizers: Sequence[Callable] = (),
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
    milp_friendly: bool = False,
    max_mse_ratio: float = 1.5,
    **recipe_options,
) -> tuple[nn.Sequential, dict]:
    """Fit an MLP surrogate ``y ~ f(X)``; returns ``(model, history)``.

    Parameters
    ----------
    X, y:
        Data, shape (n, d) and (n,) or (n, k). The model always outputs (n, k) (k = 1 for 1-D y).
    hidden, activation, clip, negative_slope, dropout:
        Architecture (:func:`build_mlp`): widths, ``"relu"``, ``"clipped"`` (clip level ``clip``, or one
        per hidden layer; hidden values are not affected by the standardisation), ``"leaky"``, or a smooth
        ``"sigmoid"``, ``"tanh"``, ``"silu"`` (then ``history["stable_fraction"]`` is None).
    l1, group_l1:
        Weights of :class:`~relumilp.train.regularizers.L1Penalty` and
        :class:`~relumilp.train.regularizers.GroupL1Penalty`. With ``proximal=True`` they are applied as
        proximal steps after each Adam step (exact zeros), otherwise added to the loss.
    stability, big_m, big_m_variant, bound_method, epsilon:
        Weights of :class:`~relumilp.train.regularizers.ReLUStabilityPenalty` and
        :class:`~relumilp.train.regularizers.BigMPenalty` over the input box ``bounds`` (or over
        ``epsilon``-balls around the batch samples intersected with the box, ``epsilon`` in original
        units), with ``"interval"`` or ``"symbolic"`` bounds.
    unstable, sub_boxes, layer_weights:
        Weight of :class:`~relumilp.train.regularizers.UnstableCountPenalty`; ``sub_boxes=k`` bounds the
        bound-based penalties over the ``k**d`` cells of a grid over the box instead of the box;
        ``layer_weights`` weights their per-neuron terms per hidden layer.
    schedule:
        A :class:`LambdaSchedule` multiplying every regularizer weight (prox steps included) per epoch.
    phases, phase_weight, phase_margin:
        Phase-preserving training: one ``+1`` / ``-1`` / ``0`` array per hidden layer (neuron fixed
        active / inactive / free, e.g. from :func:`relumilp.train.recipe.stable_phases`), enforced over
        the box by :class:`~relumilp.train.regularizers.PhasePenalty` (weight ``phase_weight``, margin
        ``phase_margin``, symbolic bounds); ``history["phase"]`` records it.
    init_model:
        Start from this model (same architecture, original units, e.g. a previous result) instead of a
        random initialisation; it is copied, not changed.
    epochs, batch_size, lr, weight_decay:
        Adam settings; the loss is the MSE in standardised units plus the penalties.
    val_split:
        Share of the (shuffled) data held out for validation; 0 disables it (``val_loss`` is NaN).
    seed:
        Seeds initialisation, shuffling and dropout (the global RNG state is restored afterwards);
        the same seed on the same device gives the same model.
    device:
        ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"``, ... (see :func:`resolve_device`).
    bounds:
        The input box ``(lower, upper)`` the surrogate will be optimised over; default: the data's
        per-feature min and max.
    standardize:
        Train on standardised inputs and outputs (zero mean, unit variance on the training split).
    regularizers:
        Extra callables ``reg(model, x_batch) -> scalar`` added to the loss; they see the model being
        trained, i.e. in standardised units.
    dtype:
        Training precision (the returned model is float64 either way).
    progress:
        Show a tqdm progress bar (on stderr).
    milp_friendly, max_mse_ratio, recipe_options:
        With ``milp_friendly=True`` run the target-driven recipe instead
        (:class:`relumilp.train.recipe.MilpFriendlyRecipe`, options ``recipe_options``): train the
        plain network with these settings, then search the regularisation weight for the network
        cheapest to optimise over whose validation MSE is at most ``max_mse_ratio`` times the plain one;
        ``history["recipe"]`` then holds the search.

    Returns
    -------
    model:
        ``nn.Sequential``, float64, CPU, eval mode, original units.
    history:
        ``train_loss`` and ``val_loss`` (MSE in standardised units, per epoch), one list per active
        regularizer (``l1``, ``group_l1``, ``stability``, ``big_m``: weighted value, mean over the
        epoch's batches), and ``seconds``, ``device``, ``input_bounds`` (lower, upper), ``split`` (train/val row indices),
        ``stable_fraction`` (interval-stable share of hidden neurons of the returned model over the box).
    """
    import sys

    from tqdm.auto import tqdm

    if milp_friendly:
        import inspect

        from .recipe import MilpFriendlyRecipe

        # the recipe sets its penalty's weight, the schedule, the start and the phases itself
        managed = {"stability": stability, "unstable": unstable, "schedule": schedule, "init_model": init_model,
                   "phases": phases}
        clash = [name for name, value in managed.items() if value is not None and not (value == 0.0)]
        if clash:
            raise RelumilpError(f"with milp_friendly=True the recipe chooses {', '.join(clash)} itself; leave "
                                "them out (its penalty and weight range are recipe options: penalty=, lambda_min=, "
                                "lambda_max=)")
        # options that both mean the same: given here, they are the recipe's (unless given to it directly)
        for name, value, default in (("l1", l1, 0.0), ("bound_method", bound_method, "interval"),
                                     ("sub_boxes", sub_boxes, None), ("layer_weights", layer_weights, None)):
            if not (value is None if default is None else value == default):
                recipe_options.setdefault(name, value)
        known = set(inspect.signature(MilpFriendlyRecipe).parameters)
        unknown = sorted(set(recipe_options) - known)
        if unknown:
            raise RelumilpError(f"unknown fit_surrogate option(s) {unknown}; the recipe takes "
                                f"{', '.join(sorted(known - {'max_mse_ratio', 'progress'}))}")
        # every other setting trains the plain network and every candidate alike
        base = dict(hidden=hidden, activation=activation, clip=clip, negative_slope=negative_slope, dropout=dropout,
                    epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, val_split=val_split,
                    seed=seed, device=device, bounds=bounds, standardize=standardize, dtype=dtype,
                    group_l1=group_l1, big_m=big_m, big_m_variant=big_m_variant, epsilon=epsilon,
                    proximal=proximal, regularizers=regularizers)
        recipe = MilpFriendlyRecipe(max_mse_ratio=max_mse_ratio, progress=progress, **recipe_options)
        return recipe.fit(X, y, **base)
    if recipe_options:
        raise RelumilpError(f"unknown fit_surrogate options {sorted(recipe_options)} (recipe options need milp_friendly=True)")
    X = _as_2d(X, "X")
    Y = _as_2d(y, "y")
    n, d = X.shape
    if Y.shape[0] != n:
        raise RelumilpError(f"X has {n} rows but y has {Y.shape[0]}")
    if n < 2:
        raise RelumilpError("fit_surrogate needs at least 2 samples")
    if not (0.0 <= val_split < 1.0):
        raise RelumilpError(f"val_split must be in [0, 1), got {val_split}")
    if int(epochs) < 0 or int(batch_size) < 1:
        raise RelumilpError("epochs must be >= 0 and batch_size >= 1")
    if not (math.isfinite(lr) and lr > 0):
        raise RelumilpError(f"lr must be > 0, got {lr}")
    if dtype not in (torch.float32, torch.float64):  # Adam's epsilon underflows in half precision
        raise RelumilpError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    dev = resolve_device(device)
    started = time.perf_counter()

    if bounds is None:
        lower, upper = X.min(axis=0), X.max(axis=0)
    else:
        try:
            lower = np.broadcast_to(np.asarray(bounds[0], dtype=np.float64), (d,)).copy()
            upper = np.broadcast_to(np.asarray(bounds[1], dtype=np.float64), (d,)).copy()
        except (ValueError, TypeError, IndexError):
            raise RelumilpError(f"bounds must be (lower, upper), each one number or {d} numbers") from None
        if not (np.all(np.isfinite(lower)) and np.all(np.isfinite(upper)) and np.all(lower <= upper)):
            raise RelumilpError("bounds must be finite with lower <= upper")

    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    n_val = int(round(val_split * n)) if val_split > 0 else 0
    n_val = min(max(n_val, 1), n - 1) if val_split > 0 else 0
    val_idx, train_idx = order[:n_val], order[n_val:]
    if standardize:
        x_mean, x_std = X[train_idx].mean(axis=0), X[train_idx].std(axis=0)
        y_mean, y_std = Y[train_idx].mean(axis=0), Y[train_idx].std(axis=0)
        x_std = np.where(x_std > 0, x_std, 1.0)
        y_std = np.where(y_std > 0, y_std, 1.0)
    else:
        x_mean, x_std = np.zeros(d), np.ones(d)
        y_mean, y_std = np.zeros(Y.shape[1]), np.ones(Y.shape[1])
    Xs, Ys = (X - x_mean) / x_std, (Y - y_mean) / y_std
    eps_std = None if epsilon is None else np.asarray(epsilon, dtype=np.float64) / x_std

    regs = make_regularizers(
        l1, group_l1, stability, big_m, (lower - x_mean) / x_std, (upper - x_mean) / x_std, bound_method, eps_std,
        big_m_variant, unstable, sub_boxes, layer_weights,
    )
    if phases is not None:
        from .regularizers import PhasePenalty

        regs["phase"] = PhasePenalty(phases, phase_weight, (lower - x_mean) / x_std, (upper - x_mean) / x_std,
                                     "symbolic", phase_margin)
    prox_names = [name for name in ("l1", "group_l1") if name in regs] if proximal else []
    loss_regs = {name: reg for name, reg in regs.items() if name not in prox_names}

    to = dict(dtype=dtype, device=dev)
    x_train, y_train = torch.as_tensor(Xs[train_idx], **to), torch.as_tensor(Ys[train_idx], **to)
    x_val, y_val = torch.as_tensor(Xs[val_idx], **to), torch.as_tensor(Ys[val_idx], **to)
    history: dict = {"train_loss": [], "val_loss": []}
    history.update({name: [] for name in regs})

    fork_devices = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(seed)
        model = build_mlp(d, Y.shape[1], hidden, activation, clip, negative_slope, dropout)
        if init_model is not None:
            model = model.double()  # copy the initial weights without rounding them
            try:
                model.load_state_dict(init_model.state_dict())
            except RuntimeError as exc:
                raise RelumilpError(f"init_model does not match the architecture: {str(exc).splitlines()[0]}") from None
            _unfold_standardization(model, x_mean, x_std, y_mean, y_std)
        model = model.to(**to)
        regs_on = {name: reg.to(device=dev) for name, reg in regs.items()}
        optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
        shuffle = torch.Generator().manual_seed(seed)
        n_train = x_train.shape[0]
        bar = tqdm(range(int(epochs)), desc="fit_surrogate", disable=not progress, leave=False, file=sys.stderr)
        for epoch in bar:
            factor = 1.0 if schedule is None else float(schedule(epoch))
            model.train()
            perm = torch.randperm(n_train, generator=shuffle).to(dev)
            data_sum = torch.zeros((), **to)
            reg_sums = {name: torch.zeros((), **to) for name in regs}
            batches = 0
            for start in range(0, n_train, int(batch_size)):
                idx = perm[start : start + int(batch_size)]
                xb, yb = x_train[idx], y_train[idx]
                data_loss = torch.mean((model(xb) - yb) ** 2)
                loss = data_loss
                for name in loss_regs:
                    scale = 1.0 if name == "phase" else factor  # the phase constraint holds from the start
                    if scale == 0.0:  # warm-up: no bound computation at all
                        continue
                    term = scale * regs_on[name](model, xb)
                    reg_sums[name] += term.detach()
                    loss = loss + term
                for extra in regularizers:
                    loss = loss + extra(model, xb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                for name in prox_names:
                    if factor == 0.0:
                        continue
                    regs_on[name].prox(model, optimizer, factor=factor)
                    with torch.no_grad():
                        reg_sums[name] += factor * regs_on[name](model)
                data_sum += data_loss.detach() * xb.shape[0]
                batches += 1
            history["train_loss"].append(float(data_sum) / n_train)
            for name in regs:
                history[name].append(float(reg_sums[name]) / max(batches, 1))
            if n_val:
                model.eval()
                with torch.no_grad():
                    history["val_loss"].append(float(torch.mean((model(x_val) - y_val) ** 2)))
            else:
                history["val_loss"].append(float("nan"))
            bar.set_postfix(train=f"{history['train_loss'][-1]:.4g}", val=f"{history['val_loss'][-1]:.4g}")
        bar.close()

    model = model.to(device="cpu", dtype=torch.float64).eval()
    _fold_standardization(model, x_mean, x_std, y_mean, y_std)
    history["seconds"] = time.perf_counter() - started
    history["device"] = str(dev)
    history["input_bounds"] = (lower, upper)
    history["split"] = {"train": train_idx, "val": val_idx}
    smooth = ACTIVATIONS[activation] in _SMOOTH_MODULES  # no stable neurons to count
    history["stable_fraction"] = None if smooth else _stable_fraction(model, lower, upper)
    return model, history

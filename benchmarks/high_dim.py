r"""High-dimensional verification (issue #13): the branch-and-bound engine against the big-M MILP.

Two ReLU classifiers, trained deterministically on scikit-learn's bundled 8x8 digits (the copy in
``examples/data`` without scikit-learn):

* ``digits`` -- 64-32-32-10, the classifier of ``examples/digits_robustness.py`` (its own training code);
* ``mnist784`` -- 784-64-32-10 on the same digits upsampled to 28x28 (``torch.nn.functional.interpolate``,
  bilinear), full-batch Adam.

For each epsilon and the first ``--images`` correctly classified test images ``x0`` (label ``c``), the
local-robustness property "no ``x`` with ``|x - x0|_inf <= eps`` (and in ``[0, 1]``) has ``y_t >= y_c``
for some ``t != c``" (nine unsafe conjunctions ``y_c - y_t <= 0``) is checked by
:func:`relumilp.verify.verify` with the engine (the default: neuron branching with optimised slopes and
split multipliers above :data:`relumilp.bab.INPUT_BRANCHING_MAX_INPUTS` inputs), with the engine without
split multipliers (``engine-no-beta``, an ablation) and with ``input_split=False`` (one big-M MILP per
region), each with the same time limit. A disagreement (one says ``holds``, the other
``violated``) is a wrong certificate and makes the run fail.

Run::

    nice python -m benchmarks.high_dim                                   # both models, default eps
    nice python -m benchmarks.high_dim --models digits --images 3 --time-limit 10   # a quick look

Writes one row per (model, eps, image, method) to ``benchmarks/results/high_dim.csv`` (``--out``) and
prints the table: per model, eps and method the number of holds / violated / unknown and the median
time.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
EPS = {"digits": (0.05, 0.075, 0.1), "mnist784": (0.05, 0.075, 0.1, 0.11)}
#: verify's options per method; ``beta_lr`` sets the engine's split-multiplier step for that call
#: (0: no multipliers, the engine as before beta-CROWN; an ablation), ``refine`` which nodes branch and
#: bound over neurons back-substitutes per node (``relumilp.bab.REFINE``; "undecided": every undecided
#: intermediate neuron as well as the output, the engine before issue #14's fourth step; an ablation)
METHODS = {"engine": {}, "engine-no-beta": {"beta_lr": 0.0}, "engine-refine-undecided": {"refine": "undecided"},
           "milp": {"input_split": False}}
FIELDS = ["model", "eps", "image", "label", "method", "result", "time", "decided_by", "nodes"]


def _example():
    """``examples/digits_robustness.py`` as a module (its data loader and classifier training)."""
    spec = importlib.util.spec_from_file_location("digits_robustness", ROOT / "examples" / "digits_robustness.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upsample(X: np.ndarray) -> np.ndarray:
    """8x8 images (rows of 64 in [0, 1]) as 28x28 (rows of 784), bilinear."""
    import torch

    images = torch.as_tensor(X, dtype=torch.float64).reshape(-1, 1, 8, 8)
    big = torch.nn.functional.interpolate(images, size=(28, 28), mode="bilinear", align_corners=False)
    return big.reshape(-1, 784).clamp(0.0, 1.0).numpy()


def models(names):
    """``{name: (network, test inputs, test labels)}`` with the test images each model classifies right."""
    import torch

    import relumilp

    example = _example()
    X, y = example.load_digits_data()
    order = np.random.default_rng(0).permutation(len(X))  # the example's split
    test, train = order[:360], order[360:]
    out = {}
    for name in names:
        if name == "digits":
            inputs, model = X, example.train_classifier(X[train], y[train])
        elif name == "mnist784":
            inputs = upsample(X)
            model = example.train_classifier(inputs[train], y[train], epochs=60, hidden=(64, 32), lr=5e-3)
        else:
            raise SystemExit(f"unknown model {name!r}; choose from {', '.join(EPS)}")
        with torch.no_grad():
            predicted = model(torch.as_tensor(inputs[test])).argmax(dim=1).numpy()
        right = test[predicted == y[test]]
        print(f"{name}: {inputs.shape[1]} inputs, test accuracy {np.mean(predicted == y[test]):.1%}", file=sys.stderr)
        out[name] = (relumilp.load_network(model), inputs[right], y[right])
    return out


def robustness_property(x0: np.ndarray, label: int, eps: float):
    """Unsafe: some ``x`` in the eps-ball (clipped to [0, 1]) with ``y_t >= y_label``, ``t != label``."""
    from relumilp.domain import InputDomain
    from relumilp.frontends.vnnlib import OutputConstraint, Property

    domain = InputDomain(np.clip(x0 - eps, 0.0, 1.0), np.clip(x0 + eps, 0.0, 1.0))
    rows = [OutputConstraint((np.eye(10)[label] - np.eye(10)[t])[None], np.zeros(1)) for t in range(10) if t != label]
    return Property(x0.size, 10, (domain,), tuple(rows), name=f"robust eps={eps}")


def summary(rows: list[dict]) -> list[dict]:
    table = []
    keys = sorted({(r["model"], float(r["eps"]), r["method"]) for r in rows}, key=lambda k: (k[0], k[1], k[2]))
    for model, eps, method in keys:
        mine = [r for r in rows if (r["model"], float(r["eps"]), r["method"]) == (model, eps, method)]
        count = {answer: sum(r["result"] == answer for r in mine) for answer in ("holds", "violated", "unknown")}
        table.append({"model": model, "eps": eps, "method": method, **count,
                      "median_s": float(np.median([float(r["time"]) for r in mine]))})
    return table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="digits,mnist784", help="comma-separated: digits, mnist784")
    parser.add_argument("--images", type=int, default=10, help="correctly classified test images per eps")
    parser.add_argument("--eps", type=float, nargs="*", help="radii (default per model: see EPS)")
    parser.add_argument("--time-limit", type=float, default=30.0, help="seconds per verify call (each method)")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated: {', '.join(METHODS)}")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "high_dim.csv"))
    args = parser.parse_args(argv)
    unknown = set(args.methods.split(",")) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; choose from {', '.join(METHODS)}")

    from relumilp.verify import verify

    nets = models(args.models.split(","))
    rows: list[dict] = []
    disagreements = []
    for name, (net, X, y) in nets.items():
        for eps in args.eps or EPS[name]:
            for image in range(min(args.images, len(X))):
                prop = robustness_property(X[image], int(y[image]), eps)
                answers = {}
                for method in args.methods.split(","):
                    options = dict(METHODS[method])
                    started = time.perf_counter()
                    with _engine_setting(options.pop("beta_lr", None), options.pop("refine", None)):
                        result = verify(net, prop, time_limit=args.time_limit, **options)
                    seconds = time.perf_counter() - started
                    region = result.details["regions"][0]
                    if result.result == "violated":  # the counterexample's own check, once more
                        x = np.asarray(result.counterexample["x"])
                        assert prop.is_counterexample(x, net.forward(x)), (name, eps, image, method)
                    answers[method] = result.result
                    rows.append({"model": name, "eps": eps, "image": image, "label": int(y[image]), "method": method,
                                 "result": result.result, "time": f"{seconds:.3f}",
                                 "decided_by": region.get("decided_by", "-"),
                                 "nodes": region.get("bab", {}).get("boxes", 0)})
                    print(f"{name} eps={eps} image={image} {method}: {result.result} in {seconds:.2f}s "
                          f"({region.get('decided_by')})", file=sys.stderr)
                if {"holds", "violated"} <= set(answers.values()):
                    disagreements.append((name, eps, image, answers))
                _write(args.out, FIELDS, rows)
    table = summary(rows)
    print("| model | eps | method | holds | violated | unknown | median time (s) |")
    print("|---|---|---|---|---|---|---|")
    for r in table:
        print(f"| {r['model']} | {r['eps']:g} | {r['method']} | {r['holds']} | {r['violated']} | {r['unknown']} | "
              f"{r['median_s']:.2f} |")
    print(f"\n{len(disagreements)} disagreements (limit {args.time_limit:g} s per call)")
    for d in disagreements:
        print("DISAGREEMENT", d)
    return 1 if disagreements else 0


@contextmanager
def _engine_setting(beta_lr, refine):
    """The engine's split-multiplier step set to ``beta_lr`` and neuron branching's refinement to ``refine``
    (None: left alone) for the block."""
    from relumilp import bab
    from relumilp.bounds import engine

    saved = engine.BETA_LR, bab.REFINE["relu"]
    engine.BETA_LR = saved[0] if beta_lr is None else beta_lr
    bab.REFINE["relu"] = saved[1] if refine is None else refine
    try:
        yield
    finally:
        engine.BETA_LR, bab.REFINE["relu"] = saved


def _write(path, fields, rows):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    sys.exit(main())

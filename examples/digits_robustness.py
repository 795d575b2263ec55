"""Adversarial examples and certified robustness of a small digit classifier.

The problem
    A ReLU classifier (64 -> 32 -> 32 -> 10) is trained on scikit-learn's bundled 8x8 handwritten digits
    (pixels scaled to [0, 1]). For one correctly classified test image x0 with label c we ask, for a
    radius eps: is there an image x with ``|x - x0|_inf <= eps`` (every pixel moved by at most eps, and
    kept in [0, 1]) that the network assigns to another class? As a MILP::

        maximise   max_{t != c} y_t(x) - y_c(x)     over   x in [x0 - eps, x0 + eps] intersected with [0, 1]^64

    An optimum below 0 *certifies* that no such x exists (the image is robust at eps); an optimum above
    0 comes with a concrete adversarial image, which we check with the network's forward pass (both the
    relumilp IR and the original torch model). Finally one more MILP computes the exact robustness
    radius: the smallest eps at which another class ties with or beats class c.

What you learn
    * compiling a torch classifier with ``relumilp.add_network`` over a per-pixel input box (the eps-ball);
    * ``relumilp.formulation.argmax.add_argmax``: the max over several outputs as MILP rows, for the
      "best other class";
    * making the radius itself a variable: user constraints ``|x_j - x0_j| <= eps`` around the network
      block, objective ``min eps``;
    * that the network's bounds shrink with eps: more stable neurons, fewer binaries, faster solves.

The data are scikit-learn's bundled copy of the UCI digits; without scikit-learn the example reads the
same file from ``examples/data/digits.csv.gz``.

Run
    python examples/digits_robustness.py
    python examples/digits_robustness.py --image 5 --eps 0.02 0.05 0.1
    python examples/digits_robustness.py --png /tmp/adversarial.png     # also save a picture (matplotlib)
    python examples/digits_robustness.py --quick                       # two radii, no exact radius
"""

from __future__ import annotations

import argparse
import sys
import time

from pathlib import Path

import numpy as np
import pyomo.environ as pyo
import torch
from torch import nn

import relumilp
from relumilp.formulation.argmax import add_argmax

SHADES = " .:-=+*#%@"


def train_classifier(X: np.ndarray, y: np.ndarray, epochs: int = 150, hidden=(32, 32), lr: float = 1e-2) -> nn.Sequential:
    """A ReLU classifier ``inputs-hidden-10`` by full-batch Adam on cross-entropy from a fixed seed; about a
    second on one CPU thread at the default size."""
    torch.manual_seed(0)
    sizes = [X.shape[1], *hidden]
    layers = [module for a, b in zip(sizes[:-1], sizes[1:]) for module in (nn.Linear(a, b), nn.ReLU())]
    model = nn.Sequential(*layers, nn.Linear(sizes[-1], 10)).double()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    inputs, labels = torch.as_tensor(X), torch.as_tensor(y)
    for _ in range(epochs):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(inputs), labels)
        loss.backward()
        optimizer.step()
    return model.eval()


def ascii_images(*images: np.ndarray, titles: list[str]) -> str:
    """8x8 images in [0, 1] side by side as text (two characters per pixel)."""
    lines = ["   ".join(f"{t:16s}" for t in titles)]
    for r in range(8):
        row = []
        for img in images:
            pixels = np.clip(img[r * 8:(r + 1) * 8], 0.0, 1.0)
            row.append("".join(SHADES[min(int(v * len(SHADES)), len(SHADES) - 1)] * 2 for v in pixels))
        lines.append("   ".join(row))
    return "\n".join(lines)


def attack_model(net, x0: np.ndarray, label: int, lower: np.ndarray, upper: np.ndarray):
    """Pyomo model: maximise (best other logit) - (true logit) over the box [lower, upper]."""
    m = pyo.ConcreteModel()
    block = relumilp.add_network(m, net, input_bounds=(lower, upper), tighten="lp", name="net")
    compiled = block.compiled
    low, high = compiled.bounds[compiled.milp.output_name]  # sound bounds of the 10 logits over the box
    others = [k for k in range(10) if k != label]
    best = add_argmax(block, values=[block.outputs[k] for k in others], lower=low[others], upper=high[others])
    return m, block, best, others


def load_digits_data() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 8x8 digits with pixels scaled to [0, 1]: from scikit-learn when installed, else from
    the copy of the same file in examples/data (see examples/data/README.md for its source and licence)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        data = np.loadtxt(Path(__file__).resolve().parent / "data" / "digits.csv.gz", delimiter=",")
        return data[:, :-1] / 16.0, data[:, -1].astype(int)
    digits = load_digits()  # bundled with scikit-learn: no download
    return digits.data / 16.0, digits.target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", type=int, default=0, help="which correctly classified test image (default 0)")
    parser.add_argument("--eps", type=float, nargs="+", default=[0.02, 0.05, 0.1],
                        help="radii to check, in pixel units of [0, 1] (default 0.02 0.05 0.1)")
    parser.add_argument("--max-eps", type=float, default=0.15,
                        help="search the exact robustness radius up to this value (default 0.15)")
    parser.add_argument("--png", default=None, help="also save the original and adversarial image here")
    parser.add_argument("--quick", action="store_true", help="check eps 0.02 and 0.1 only; skip the exact radius")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    X, y = load_digits_data()
    order = np.random.default_rng(0).permutation(len(X))
    test, train = order[:360], order[360:]
    start = time.perf_counter()
    model = train_classifier(X[train], y[train])
    with torch.no_grad():
        predicted = model(torch.as_tensor(X[test])).argmax(dim=1).numpy()
    print(f"Classifier 64-32-32-10 trained in {time.perf_counter() - start:.1f} s on {len(train)} images; "
          f"test accuracy {np.mean(predicted == y[test]):.1%} on {len(test)} images")
    net = relumilp.load_network(model)

    correct = test[predicted == y[test]]
    index = int(correct[args.image % len(correct)])
    x0, label = X[index], int(y[index])
    logits0 = net.forward(x0)
    print(f"Test image #{index}: label {label}, predicted {int(np.argmax(logits0))} "
          f"(margin {logits0[label] - np.max(np.delete(logits0, label)):.2f} logits)")

    radii = [0.02, 0.1] if args.quick else args.eps
    print("\nRobustness check per radius (maximise best other logit - true logit over the eps-ball)")
    print(f"  {'eps':>6} {'binaries':>8} {'status':>8} {'max margin':>11} {'bound':>9}  verdict")
    adversarial = None
    for eps in radii:
        lower, upper = np.clip(x0 - eps, 0.0, 1.0), np.clip(x0 + eps, 0.0, 1.0)
        m, block, best, others = attack_model(net, x0, label, lower, upper)
        m.objective = pyo.Objective(expr=best.max_value - block.outputs[label], sense=pyo.maximize)
        result = relumilp.solve(m)
        binaries = block.compiled.stats()["binaries"]
        if result.status != "optimal":
            print(f"  {eps:6.3f} {binaries:8d} {result.status:>8}  (no certificate)")
            continue
        if result.bound < 0:
            verdict = "ROBUST: certified, no image in the ball changes the class"
        else:
            x_adv, y_adv = result.x, result.y
            with torch.no_grad():
                y_torch = model(torch.as_tensor(x_adv)[None]).numpy()[0]
            new_class = int(np.argmax(y_adv))
            in_ball = np.max(np.abs(x_adv - x0)) <= eps + 1e-9 and x_adv.min() >= -1e-9 and x_adv.max() <= 1 + 1e-9
            verdict = (f"NOT robust: adversarial image classified {new_class} "
                       f"(forward pass: IR {new_class}, torch {int(np.argmax(y_torch))}; "
                       f"|x - x0|_inf = {np.max(np.abs(x_adv - x0)):.3f}, in ball and [0,1]: {in_ball})")
            if new_class != label and int(np.argmax(y_torch)) == new_class and in_ball:
                adversarial = adversarial or (eps, x_adv, new_class)
            else:
                verdict += "  <- CHECK FAILED"
        print(f"  {eps:6.3f} {binaries:8d} {result.status:>8} {result.objective:11.4f} {result.bound:9.4f}  {verdict}")

    if not args.quick:
        # The exact robustness radius: eps becomes a variable. The network is compiled once over the
        # largest ball we search, and the ball of radius eps is cut out of it by linear rows.
        e_max = args.max_eps
        lower, upper = np.clip(x0 - e_max, 0.0, 1.0), np.clip(x0 + e_max, 0.0, 1.0)
        m, block, best, others = attack_model(net, x0, label, lower, upper)
        m.eps = pyo.Var(bounds=(0.0, e_max))
        pixels = range(64)
        m.ball_up = pyo.Constraint(pixels, rule=lambda m, j: block.inputs[j] - float(x0[j]) <= m.eps)
        m.ball_down = pyo.Constraint(pixels, rule=lambda m, j: float(x0[j]) - block.inputs[j] <= m.eps)
        m.misclassified = pyo.Constraint(expr=best.max_value >= block.outputs[label])
        m.objective = pyo.Objective(expr=m.eps, sense=pyo.minimize)
        result = relumilp.solve(m)
        print(f"\nExact robustness radius (min eps such that another class ties with or beats {label}; "
              f"{block.compiled.stats()['binaries']} binaries):")
        if result.status == "optimal":
            y_star = result.y
            print(f"  eps* = {result.objective:.5f} (bound {result.bound:.5f}); at that point logit {label} = "
                  f"{y_star[label]:.4f}, best other ({others[int(np.argmax(y_star[others]))]}) = "
                  f"{np.max(y_star[others]):.4f}: a tie on the decision boundary")
            print(f"  => certified: every image within L_inf distance < {result.objective:.5f} of #{index} "
                  f"is classified {label}")
        elif result.status == "infeasible":
            print(f"  infeasible: the image is robust for every eps <= {e_max} (certified)")
        else:
            print(f"  status {result.status}: bound {result.bound}")

    if adversarial is not None:
        eps, x_adv, new_class = adversarial
        print(f"\nAdversarial example at eps = {eps} (classified {new_class} instead of {label}):")
        print(ascii_images(x0, x_adv, np.abs(x_adv - x0) / max(eps, 1e-12),
                           titles=[f"original ({label})", f"adversarial ({new_class})", "|change| / eps"]))
        if args.png:
            try:
                import matplotlib

                matplotlib.use("Agg")
                import matplotlib.pyplot as plt
            except ImportError:
                print("(matplotlib is not installed: no PNG written)")
            else:
                fig, axes = plt.subplots(1, 2, figsize=(5, 2.6))
                for ax, img, title in zip(axes, (x0, x_adv), (f"original: {label}", f"eps={eps}: {new_class}")):
                    ax.imshow(img.reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
                    ax.set_title(title)
                    ax.axis("off")
                fig.savefig(args.png, dpi=100, bbox_inches="tight")
                print(f"Saved {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

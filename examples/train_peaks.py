"""Train the built-in Peaks example network, deterministically, and save it.

The problem
    ``relumilp.examples.peaks()`` is a 2 -> 16 -> 16 -> 1 ReLU network approximating MATLAB's Peaks
    function on [-3, 3]^2. This script is its recipe: sample the function at 2,000 uniform points, fit
    the network with ``relumilp.train.fit_surrogate`` (300 epochs of Adam, seed 0), convert it to
    relumilp's network IR and write it with ``Network.save`` (a plain ``.npz``: weights plus a JSON
    description, no pickled objects). With the defaults the weights are those of the shipped network
    to within a float64 rounding (a float32 -> float64 conversion can differ in the last bit across
    torch builds); the script prints the largest weight difference and whether the file is
    bit-for-bit identical.

    Options change the recipe: ``--hidden 32 32`` for a larger network, ``--stability 1e-3`` to add the
    ReLU-stability penalty (Xiao et al. 2019), which makes more neurons stable over the box and the
    MILP faster to solve at some cost in accuracy (see examples/train_milp_friendly.py).

What you learn
    * ``fit_surrogate(X, y, hidden=..., bounds=..., seed=...)``: the returned ``nn.Sequential`` works in
      the data's own units (the standardisation is folded into the first and last layer);
    * ``relumilp.load_network(model)`` converts it; ``Network.save`` / ``Network.load`` round-trip it;
    * determinism: a fixed seed, ``device="cpu"`` and one torch thread give the same weights (and the
      same ``content_hash``) on every run of the same software versions.

Run
    python examples/train_peaks.py                                  # writes into a temporary directory
    python examples/train_peaks.py --out peaks.npz                  # anywhere you like
    python examples/train_peaks.py --out relumilp/data/peaks.npz    # regenerate the shipped network
    python examples/train_peaks.py --quick                          # 20 epochs: a smoke test only
    python examples/train_peaks.py --hidden 32 32 --stability 1e-3 --out peaks_reg.npz
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import relumilp
from relumilp.examples import peaks_function
from relumilp.train import fit_surrogate

LOWER, UPPER = np.array([-3.0, -3.0]), np.array([3.0, 3.0])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="where to write the .npz (default: a temp dir)")
    parser.add_argument("--samples", type=int, default=2000, help="training points (default 2000)")
    parser.add_argument("--epochs", type=int, default=300, help="training epochs (default 300)")
    parser.add_argument("--hidden", type=int, nargs="+", default=[16, 16], help="hidden widths (default 16 16)")
    parser.add_argument("--stability", type=float, default=0.0,
                        help="weight of the ReLU-stability penalty (default 0: the plain, shipped recipe)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="20 epochs on 1000 points (a smoke test; not the shipped network)")
    args = parser.parse_args(argv)
    epochs = 20 if args.quick else args.epochs
    samples = 1000 if args.quick else args.samples
    torch.set_num_threads(1)  # bit-for-bit reproducible on one CPU thread (and fastest for a tiny network)

    # 1. Data: uniform samples of Peaks on the box (a separate grid is the test set below).
    rng = np.random.default_rng(args.seed)
    X = rng.uniform(-3.0, 3.0, size=(samples, 2))
    y = peaks_function(X[:, 0], X[:, 1])

    # 2. Fit. bounds= is the box the network will be optimised over (used by the stability penalty).
    start = time.perf_counter()
    model, history = fit_surrogate(X, y, hidden=tuple(args.hidden), activation="relu", stability=args.stability,
                                   epochs=epochs, batch_size=64, lr=1e-3, seed=args.seed, device="cpu",
                                   bounds=(LOWER, UPPER), progress=False)
    train_time = time.perf_counter() - start

    # 3. Convert to the IR, name it, save it, and check the round trip.
    converted = relumilp.load_network(model)
    net = relumilp.Network.sequential(converted.dense_layers(), "relu", name="peaks")
    out = args.out or Path(tempfile.mkdtemp(prefix="relumilp_peaks_")) / "peaks.npz"
    out.parent.mkdir(parents=True, exist_ok=True)
    net.save(out)
    loaded = relumilp.Network.load(out)

    g0, g1 = np.meshgrid(np.linspace(-3, 3, 201), np.linspace(-3, 3, 201))
    grid = np.column_stack([g0.ravel(), g1.ravel()])
    with torch.no_grad():
        torch_out = model(torch.as_tensor(grid)).numpy().ravel()
    ir_out = loaded.forward(grid).ravel()
    error = ir_out - peaks_function(grid[:, 0], grid[:, 1])
    stats = relumilp.compile_network(loaded, (LOWER, UPPER), tighten="lp").stats()

    arch = "-".join(str(w) for w in (2, *args.hidden, 1))
    print(f"Trained {arch} ReLU on {samples} Peaks samples: {epochs} epochs, stability weight "
          f"{args.stability:g}, seed {args.seed}, in {train_time:.1f} s")
    print(f"  final losses (standardised MSE)  train {history['train_loss'][-1]:.5f}   "
          f"validation {history['val_loss'][-1]:.5f}")
    print(f"  error vs Peaks on a 201x201 grid RMSE {np.sqrt(np.mean(error**2)):.4f}   max {np.abs(error).max():.4f}")
    print(f"  neurons over [-3, 3]^2 (lp bounds) {stats['unstable']} unstable (binaries), "
          f"{stats['stable_active'] + stats['stable_inactive']} stable, of {stats['neurons']}")
    print(f"  saved and reloaded               max |IR(reloaded) - torch| = {np.max(np.abs(ir_out - torch_out)):.1e}")
    shipped = relumilp.examples.peaks()
    if loaded.content_hash == shipped.content_hash:
        same = "bit-for-bit the shipped relumilp.examples.peaks()"
    elif loaded.hidden_sizes == shipped.hidden_sizes:
        gap = max(float(np.max(np.abs(a - b))) for pair in zip(loaded.dense_layers(), shipped.dense_layers())
                  for a, b in zip(*pair))
        same = f"the shipped network's weights to within {gap:.1e}"
    else:
        same = "a different architecture from the shipped network"
    print(f"  content hash                     {loaded.content_hash[:16]} ({same})")
    print(f"Wrote {out}")
    if args.quick:
        print("(quick mode: undertrained; do not ship this file)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

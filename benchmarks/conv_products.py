"""Back-substitution through a convolution: the engine's CSR product against torch's transposed convolution.

The bound engine multiplies coefficient rows ``A`` (``rows x outputs``) by a layer's weight ``W`` to move
a linear form one layer back (``A @ W``), and the slope optimisation also needs the gradient of that
product. A convolution is stored in the IR as a sparse matrix (:class:`relumilp.matrices.TorchSparse`,
a CSR product with a hand-written backward); the alternative is to keep the kernel and call
``torch.nn.functional.conv_transpose2d``, which computes the same ``A @ W``. This script times both, with
the gradient, in float64 on one thread (as in a bound engine worker), for the second convolution of
oval21 ``cifar_wide`` (16 -> 32 channels, 4x4 kernel, stride 2, padding 1, 16x16 -> 8x8) and of
``cifar_base`` (8 -> 16 channels, same geometry), with random kernels of the real shapes, and checks that
both give the same product. Prints a Markdown table and writes ``benchmarks/results/conv_products.csv``.

    python -m benchmarks.conv_products [--repeats 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import scipy.sparse as sp
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.tables import markdown, save_rows  # noqa: E402
from relumilp.matrices import TorchSparse  # noqa: E402

FIELDS = ["layer", "rows", "csr_ms", "conv_transpose_ms", "speed_up", "max_difference"]
#: (name, input channels, output channels, input side): 4x4 kernels, stride 2, padding 1
LAYERS = (("cifar_wide conv2", 16, 32, 16), ("cifar_base conv2", 8, 16, 16))


def _timed(product, rows: torch.Tensor, repeats: int) -> tuple[float, torch.Tensor]:
    """Milliseconds per product and its gradient (the best of ``repeats``), and the product."""
    best = float("inf")
    for _ in range(repeats):
        a = rows.clone().requires_grad_(True)
        clock = time.perf_counter()
        out = product(a)
        out.sum().backward()
        best = min(best, time.perf_counter() - clock)
    return 1e3 * best, out.detach()


def measure(name: str, c_in: int, c_out: int, side: int, rows: int, repeats: int) -> dict:
    generator = torch.Generator().manual_seed(0)
    kernel = torch.randn(c_out, c_in, 4, 4, dtype=torch.float64, generator=generator)
    n_in = c_in * side * side
    basis = torch.eye(n_in, dtype=torch.float64).view(n_in, c_in, side, side)
    out_side = side // 2
    weight = torch.nn.functional.conv2d(basis, kernel, stride=2, padding=1).reshape(n_in, -1).T.numpy()
    sparse = TorchSparse(sp.csr_array(weight), torch.float64, "cpu")
    a = torch.randn(rows, c_out * out_side * out_side, dtype=torch.float64, generator=generator)
    csr_ms, by_csr = _timed(sparse.lmatmul, a, repeats)
    conv_ms, by_conv = _timed(
        lambda x: torch.nn.functional.conv_transpose2d(x.view(rows, c_out, out_side, out_side), kernel, stride=2,
                                                       padding=1).reshape(rows, -1), a, repeats)
    return {"layer": name, "rows": rows, "csr_ms": round(csr_ms, 2), "conv_transpose_ms": round(conv_ms, 2),
            "speed_up": round(csr_ms / conv_ms, 2), "max_difference": float((by_csr - by_conv).abs().max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per cell (the best counts)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "conv_products.csv"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [measure(name, c_in, c_out, side, count, max(1, args.repeats))
            for name, c_in, c_out, side in LAYERS for count in (64, 1152)]
    save_rows(args.out, FIELDS, rows)
    print(markdown(FIELDS, rows))
    if max(row["max_difference"] for row in rows) > 1e-9:
        raise SystemExit("the two products differ: the comparison is void")


if __name__ == "__main__":
    main()

"""Settle the disputed verivital avgpool instances independently of relumilp's own code.

Usage::

    python -m benchmarks.verivital_disputed [--props 7,12] [--eps 0.04] [--restarts 512] [--milp-seconds 120]

VNN-COMP 2021 published ``violated`` for ``Convnet_avgpool`` ``prop_7_0.04`` and ``prop_12_0.04`` on the word
of one entrant, against nnv's ``unsat``; relumilp answers ``holds``. This script re-decides them without
touching ``relumilp`` (no IR, no bound code, no VNN-LIB parser, no formulation):

1. **VNN-LIB by hand**: a regular expression reads ``(assert (<= X_i v))`` / ``(assert (>= X_i v))`` and the
   ``(>= Y_j Y_t)`` disjuncts; the label ``t`` is checked against the comment line.
2. **Network by hand**: the ONNX graph is Conv(2x2, 32) -> ReLU -> Pad(0) -> AveragePool(4x4, stride 4)
   -> Flatten -> Gemm. Its weights are read with ``onnx.numpy_helper`` and the network rewritten in
   numpy (float64) and torch (float32); both are compared with onnxruntime on random points of the box,
   its corners and the image.
3. **Attack in float32**: targeted signed-gradient PGD for each of the 9 other labels on the torch float32
   network, many random restarts (random box vertices and interior points), plus the sign-vertex iteration
   ``x <- vertex(sign(grad))``; every candidate is re-evaluated with onnxruntime (float32) and numpy (float64).
4. **Exact MILP**: the network has one hidden layer, so each pre-activation ``z_k = a_k . x + b_k`` depends
   on a 2x2 input patch and its exact range over the box is ``b_k + sum_i min/max(a_ki l_i, a_ki u_i)``.
   For each other label ``j`` the margin ``Y_j - Y_t = sum_k c_k relu(z_k) + d`` (``c`` = difference of
   the two Gemm rows divided by 16, the pool size; the last 3 rows/columns of the 27x27 map are cut by the
   pool) is maximised by a textbook big-M MILP solved with HighsPy directly:
   ``y >= 0, y >= z, y <= z - l (1 - s), y <= u s, s in {0,1}`` for unstable ``k``, ``y = z`` for ``l >= 0``,
   ``y = 0`` for ``u <= 0``. The property holds iff every ``j`` has maximum ``< 0``; HiGHS's dual bound
   (an upper bound on the maximum, valid even when the time limit stops the search) decides it when it is
   clearly negative (the solver's tolerances are ~1e-6; margins here are ~0.1-1).
"""

from __future__ import annotations

import argparse
import os
import re
import time
from pathlib import Path

import numpy as np

DATA = Path(os.environ.get("RELUMILP_SHARED_DATA", "/work/shared/data")) / "vnncomp2021" / "verivital"
ONNX = DATA / "Convnet_avgpool.onnx"


def parse_vnnlib(path: Path):
    """Return (lower, upper, label, others) read with regular expressions from the VNN-LIB text."""
    text = path.read_text()
    lo = np.full(784, np.nan)
    hi = np.full(784, np.nan)
    for op, idx, val in re.findall(r"\(assert \((<=|>=) X_(\d+) ([-+0-9.eE]+)\)\)", text):
        (hi if op == "<=" else lo)[int(idx)] = float(val)
    assert not np.isnan(lo).any() and not np.isnan(hi).any(), "every input must have both bounds"
    pairs = re.findall(r"\(and \(>= Y_(\d+) Y_(\d+)\)\)", text)
    labels = {int(t) for _, t in pairs}
    assert len(labels) == 1, labels
    label = labels.pop()
    comment = int(re.search(r"label: (\d+)", text).group(1))
    assert comment == label, (comment, label)
    others = sorted(int(j) for j, _ in pairs)
    assert others == [j for j in range(10) if j != label], others
    return lo, hi, label, others


def load_weights():
    import onnx
    from onnx import numpy_helper

    model = onnx.load(ONNX)
    ops = [n.op_type for n in model.graph.node]
    assert ops == ["Conv", "Relu", "Pad", "AveragePool", "Flatten", "Gemm"], ops
    w = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return w["conv1.0.weight"], w["conv1.0.bias"], w["out.weight"], w["out.bias"]


def forward64(x: np.ndarray, weights) -> np.ndarray:
    """The network in float64 numpy, for a batch ``x`` of shape (n, 784)."""
    cw, cb, ow, ob = (np.asarray(a, dtype=np.float64) for a in weights)
    img = x.reshape(-1, 28, 28)
    z = np.empty((x.shape[0], 32, 27, 27))
    for c in range(32):
        z[:, c] = (cw[c, 0, 0, 0] * img[:, :-1, :-1] + cw[c, 0, 0, 1] * img[:, :-1, 1:]
                   + cw[c, 0, 1, 0] * img[:, 1:, :-1] + cw[c, 0, 1, 1] * img[:, 1:, 1:] + cb[c])
    r = np.maximum(z, 0.0)[:, :, :24, :24].reshape(-1, 32, 6, 4, 6, 4).mean(axis=(3, 5))
    return r.reshape(x.shape[0], -1) @ ow.T + ob


def torch_net(weights):
    import torch

    cw, cb, ow, ob = (torch.tensor(a, dtype=torch.float32) for a in weights)

    def f(x):
        z = torch.nn.functional.conv2d(x.reshape(-1, 1, 28, 28), cw, cb)
        r = torch.nn.functional.avg_pool2d(torch.relu(z), 4, 4)
        return r.flatten(1) @ ow.T + ob

    return f


def ort_session():
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(ONNX), opts, providers=["CPUExecutionProvider"])


def ort_forward(sess, x: np.ndarray) -> np.ndarray:
    out = [sess.run(None, {"input": xi.reshape(1, 1, 28, 28).astype(np.float32)})[0][0] for xi in x]
    return np.array(out, dtype=np.float64)


def margin(y: np.ndarray, label: int) -> np.ndarray:
    """max_j (Y_j - Y_label): the property is violated at a point iff this is >= 0."""
    other = np.delete(y, label, axis=1)
    return other.max(axis=1) - y[:, label]


def check_load(lo, hi, weights, sess, rng, n=2000):
    import torch

    f = torch_net(weights)
    pts = [lo + (hi - lo) * rng.random((n, 784)),
           np.where(rng.random((n // 4, 784)) < 0.5, lo, hi),
           ((lo + hi) / 2)[None, :], lo[None, :], hi[None, :]]
    x = np.concatenate(pts)
    y64 = forward64(x, weights)
    y_ort = ort_forward(sess, x)
    y_t = f(torch.tensor(x, dtype=torch.float32)).detach().double().numpy()
    return x.shape[0], float(np.abs(y64 - y_ort).max()), float(np.abs(y_t - y_ort).max()), float(np.abs(y64).max())


def attack(lo, hi, label, weights, rng, restarts=512, steps=300, seed_points=()):
    """Targeted float32 PGD for every other label; returns the best points found (float32, inside the box)."""
    import torch

    f = torch_net(weights)
    lo_t = torch.tensor(lo, dtype=torch.float32)
    hi_t = torch.tensor(hi, dtype=torch.float32)
    best_x, best_m = None, -np.inf
    for target in range(10):
        if target == label:
            continue
        starts = [lo + (hi - lo) * rng.random((restarts // 2, 784)),
                  np.where(rng.random((restarts - restarts // 2, 784)) < 0.5, lo, hi)]
        x = torch.tensor(np.concatenate(starts), dtype=torch.float32, requires_grad=True)
        for step in range(steps):
            y = f(x)
            loss = (y[:, target] - y[:, label]).sum()
            (g,) = torch.autograd.grad(loss, x)
            with torch.no_grad():
                if step % 50 == 49:  # sign-vertex jump: exact maximiser for a fixed ReLU pattern
                    x.copy_(torch.where(g >= 0, hi_t, lo_t))
                else:
                    size = (hi_t - lo_t) * (0.5 * (1 - step / steps) + 0.01)
                    x.add_(size * torch.sign(g))
                    x.copy_(torch.minimum(torch.maximum(x, lo_t), hi_t))
        with torch.no_grad():
            y = f(x)
            m = (y[:, target] - y[:, label]).numpy()
        i = int(np.argmax(m))
        if m[i] > best_m:
            best_m, best_x = float(m[i]), x[i].detach().numpy().copy()
    return best_x, best_m


def exact_milp(lo, hi, label, others, weights, seconds):
    """Maximise each margin Y_j - Y_label exactly; returns {j: (primal, dual_bound, status)}."""
    import highspy
    import scipy.sparse as sp

    cw, cb, ow, ob = (np.asarray(a, dtype=np.float64) for a in weights)
    # Pre-activation z_k = A_k x + b_k for the 32x24x24 neurons the pool keeps.
    rows, cols, vals, bias, pool = [], [], [], [], []
    k = 0
    for c in range(32):
        for r in range(24):
            for q in range(24):
                for dr in (0, 1):
                    for dq in (0, 1):
                        rows.append(k)
                        cols.append((r + dr) * 28 + q + dq)
                        vals.append(cw[c, 0, dr, dq])
                bias.append(cb[c])
                pool.append(c * 36 + (r // 4) * 6 + q // 4)
                k += 1
    A = sp.csr_matrix((vals, (rows, cols)), shape=(k, 784))
    b = np.array(bias)
    pool = np.array(pool)
    Apos, Aneg = A.maximum(0), A.minimum(0)
    zl = Apos @ lo + Aneg @ hi + b
    zu = Apos @ hi + Aneg @ lo + b
    results = {}
    for j in others:
        c = (ow[j] - ow[label])[pool] / 16.0
        d = float(ob[j] - ob[label])
        act = zl >= 0
        unst = (zl < 0) & (zu > 0)
        # objective: c.relu(z) + d; stable-active terms are linear in x.
        lin_x = np.asarray(A[act].T @ c[act]).ravel()
        const = d + float(c[act] @ b[act])
        U = np.flatnonzero(unst)
        nu = len(U)
        n = 784 + 2 * nu  # x, y_U, s_U
        obj = np.concatenate([lin_x, c[U], np.zeros(nu)])
        col_lo = np.concatenate([lo, np.zeros(nu), np.zeros(nu)])
        col_hi = np.concatenate([hi, zu[U], np.ones(nu)])
        AU = A[U]
        I = sp.identity(nu, format="csr")
        Z = sp.csr_matrix((nu, nu))
        # y - A x >= b ; y - A x + (-l) s <= b - l ; y - u s <= 0
        M = sp.vstack([sp.hstack([-AU, I, Z]),
                       sp.hstack([-AU, I, sp.diags(-zl[U])]),
                       sp.hstack([sp.csr_matrix((nu, 784)), I, sp.diags(-zu[U])])]).tocsc()
        row_lo = np.concatenate([b[U], np.full(nu, -np.inf), np.full(nu, -np.inf)])
        row_hi = np.concatenate([np.full(nu, np.inf), b[U] - zl[U], np.zeros(nu)])
        h = highspy.Highs()
        h.setOptionValue("output_flag", False)
        h.setOptionValue("time_limit", float(seconds))
        h.setOptionValue("threads", 1)
        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = n, M.shape[0]
        lp.col_cost_ = -obj  # HiGHS minimises
        lp.col_lower_, lp.col_upper_ = col_lo, col_hi
        lp.row_lower_, lp.row_upper_ = row_lo, row_hi
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = M.indptr
        lp.a_matrix_.index_ = M.indices
        lp.a_matrix_.value_ = M.data
        lp.integrality_ = [highspy.HighsVarType.kContinuous] * (784 + nu) + [highspy.HighsVarType.kInteger] * nu
        h.passModel(lp)
        h.run()
        info = h.getInfo()
        primal = -info.objective_function_value + const
        dual = -info.mip_dual_bound + const
        xs = np.array(h.getSolution().col_value[:784])
        results[j] = (primal, dual, h.modelStatusToString(h.getModelStatus()), nu, xs)
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.verivital_disputed", description=__doc__.split("\n\n")[0])
    p.add_argument("--props", default="7,12")
    p.add_argument("--eps", default="0.04")
    p.add_argument("--restarts", type=int, default=512)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--milp-seconds", type=float, default=120.0)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    weights = load_weights()
    sess = ort_session()
    rng = np.random.default_rng(args.seed)
    for prop in args.props.split(","):
        path = DATA / "specs" / "avgpool_specs" / f"prop_{prop}_{args.eps}.vnnlib"
        lo, hi, label, others = parse_vnnlib(path)
        width = hi - lo
        print(f"== {path.name}: label {label}, box widths min {width.min():.6g} max {width.max():.6g}, "
              f"{int((lo == 0).sum())} inputs at lower 0, {int((hi == 1).sum())} at upper 1")
        npts, e64, e32, ymax = check_load(lo, hi, weights, sess, rng)
        print(f"load: {npts} points, |numpy64 - ort32| <= {e64:.3g}, |torch32 - ort32| <= {e32:.3g}, |y| <= {ymax:.3g}")
        t = time.time()
        bx, bm = attack(lo, hi, label, weights, rng, args.restarts, args.steps)
        m_ort = float(margin(ort_forward(sess, bx[None, :]), label)[0])
        m_64 = float(margin(forward64(bx[None, :].astype(np.float64), weights), label)[0])
        inside = bool(np.all(bx >= lo.astype(np.float32)) and np.all(bx <= hi.astype(np.float32)))
        print(f"attack: 9 targets x {args.restarts} restarts x {args.steps} steps in {time.time() - t:.0f} s: "
              f"best margin torch32 {bm:.6f}, ort32 {m_ort:.6f}, numpy64 {m_64:.6f} (violated iff >= 0), in box {inside}")
        t = time.time()
        res = exact_milp(lo, hi, label, others, weights, args.milp_seconds)
        worst = max(r[1] for r in res.values())
        for j, (primal, dual, status, nu, xs) in res.items():
            if np.isfinite(primal):  # re-evaluate the incumbent (without one, HiGHS returns zeros: not in the box)
                y = forward64(xs[None, :], weights)[0]
                seen = f"forward64 at its x: {y[j] - y[label]:.6f}, in box {bool(np.all((xs >= lo) & (xs <= hi)))}"
            else:
                seen = "no incumbent in time"
            print(f"  MILP max Y_{j}-Y_{label}: primal {primal:.6f} ({seen}), "
                  f"upper bound {dual:.6f}, {status}, {nu} unstable ReLUs")
        print(f"MILP: max over labels of the upper bound {worst:.6f} in {time.time() - t:.0f} s -> "
              f"{'holds' if worst < -1e-3 else 'NOT proven'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

r"""Input-splitting branch and bound: sub-boxes bounded in batches by the bound engine, small leaves by MILP.

A single big-M MILP over a whole ACAS Xu region can run for minutes (the unsafe margins are ~1e-2 while
the root bounds are ~1e1). Instead (``input_split``, default on for networks with at most 16 inputs,
such as ACAS Xu's 5), the region's box is split branch-and-bound style: batches of sub-boxes get sound
symbolic bounds from :class:`relumilp.bounds.engine.BoundEngine`, each box starting from its parent's
bounds and back-substituting only the neurons its bounds leave undecided (``refine="undecided"``). A
box is closed when every conjunction has a margin row with a positive lower bound (or it provably
misses the input rows ``A x <= b``); its centre is tried as a counterexample; and a box with at most
``leaf_binaries`` unstable neurons (or ``max_depth`` halvings deep) is decided by the MILP of
:mod:`relumilp.verify.decide` over that box -- small and fast.

Boxes are split in half along the input with the largest ``|Λ_i| * width_i``, where ``Λ`` are the input
coefficients of the weakest conjunction's linear lower bound
(:meth:`~relumilp.bounds.engine.BoundEngine.input_coefficients`). The root bounds seed every box; with
splitting the default ``tighten`` is ``symbolic`` (LP-OBBT at the root costs more than it saves, see the
ACAS Xu measurements in ``benchmarks/results``).
"""

from __future__ import annotations

import time

import numpy as np

from .._progress import progress_bar
from ..domain import InputDomain
from . import attack
from .decide import Settings, milp_decide


def branch_and_bound(net, margin_net, compiled, domain, outputs, members, alive, settings: Settings, info, records):
    """Split the region's box until every sub-box is proven safe by bounds or decided by a small MILP."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # many small batched products: one thread is much faster (and shares the machine)

    bar = progress_bar(settings.progress, "verify", " boxes")
    try:
        return _bab(net, margin_net, compiled, domain, outputs, members, alive, settings, info, records, bar)
    finally:
        bar.close()
        torch.set_num_threads(threads)


def _bab(net, margin_net, compiled, domain, outputs, members, alive, settings: Settings, info, records, bar):
    from ..bounds.base import Bounds, phases
    from ..bounds.engine import BoundEngine
    from ..pipeline import compile_network

    clock = time.perf_counter()
    engine = BoundEngine.for_network(margin_net)
    out = margin_net.output
    width0 = np.where(domain.upper > domain.lower, domain.upper - domain.lower, 1.0)
    acts = margin_net.activations
    alive_members = [members[j] for j in alive]
    # the queue of open boxes: corners, depth, and bounds valid on each box (its parent's)
    L, U = domain.lower[None].copy(), domain.upper[None].copy()
    depth = np.zeros(1, dtype=np.int64)
    names = [name for name in compiled.bounds.lower if name in margin_net.graph]
    PL = {name: compiled.bounds.lower[name][None].copy() for name in names}
    PU = {name: compiled.bounds.upper[name][None].copy() for name in names}
    stats = {"boxes": 0, "leaves": 0, "max_depth": 0, "pruned": 0}
    info["bab"] = stats
    unknown = False
    while L.shape[0]:
        if settings.deadline.expired():
            unknown = True
            break
        B = settings.batch_size
        Lb, Ub, db = L[-B:], U[-B:], depth[-B:]
        start = {name: (PL[name][-B:], PU[name][-B:]) for name in names}
        L, U, depth = L[:-B], U[:-B], depth[:-B]
        PL = {name: v[:-B] for name, v in PL.items()}
        PU = {name: v[:-B] for name, v in PU.items()}
        stats["boxes"] += Lb.shape[0]
        stats["max_depth"] = max(stats["max_depth"], int(db.max()))
        bar.update(Lb.shape[0])
        bar.set_postfix_str(f"open {L.shape[0] + Lb.shape[0]}  closed {stats['pruned']}  leaves {stats['leaves']}  "
                            f"depth {stats['max_depth']}", refresh=False)
        # a cheap counterexample search: the centre of every box
        found = attack.first_counterexample(net, domain, outputs, (Lb + Ub) / 2)
        if found is not None:
            info["decided_by"] = "bab"
            info["bab_time"] = time.perf_counter() - clock
            return "violated", found
        lo, hi = engine.bounds(Lb, Ub, start, refine="undecided")
        gl = lo[out]
        lbd = np.stack([gl[:, rows].max(axis=1) for rows in alive_members], axis=1)  # (B, alive)
        open_ = (lbd <= 0.0).any(axis=1) & ~box_outside_rows(domain, Lb, Ub)
        stats["pruned"] += int((~open_).sum())
        if not open_.any():
            continue
        unstable = np.zeros(Lb.shape[0], dtype=np.int64)
        for node in acts:
            src = node.inputs[0]
            unstable += phases(node, lo[src], hi[src]).unstable.sum(axis=1)
        splittable = (Ub - Lb > 0).any(axis=1) & (db < settings.max_depth)
        leaf = open_ & ((unstable <= settings.leaf_binaries) | ~splittable)
        for i in np.flatnonzero(leaf):
            if settings.deadline.expired():
                unknown = True
                break
            stats["leaves"] += 1
            box_bounds = Bounds({k: v[i].copy() for k, v in lo.items()}, {k: v[i].copy() for k, v in hi.items()},
                                "symbolic")
            leaf_domain = InputDomain(Lb[i], Ub[i], domain.A, domain.b)
            leaf_alive = [alive[j] for j in np.flatnonzero(lbd[i] <= 0.0)]
            leaf_compiled = compile_network(margin_net, leaf_domain, bounds=box_bounds)
            verdict, found = milp_decide(net, leaf_compiled, leaf_domain, outputs, members, leaf_alive, settings,
                                          records)
            if verdict == "violated":
                info["decided_by"] = "bab+milp"
                info["bab_time"] = time.perf_counter() - clock
                return verdict, found
            if verdict is None:
                unknown = True
                if settings.deadline.expired():
                    break
        split = open_ & ~leaf
        if not split.any():
            continue
        Lb, Ub, db = Lb[split], Ub[split], db[split]
        lo = {k: v[split] for k, v in lo.items()}
        hi = {k: v[split] for k, v in hi.items()}
        # branch on the input that most influences the weakest conjunction's bound (|Λ_i| * width_i)
        lam = engine.input_coefficients(lo, hi)
        weakest = np.argmin(lbd[split], axis=1)
        influence = np.zeros_like(Lb)
        for a, rows in enumerate(alive_members):
            sel = weakest == a
            if sel.any():
                influence[sel] = np.abs(lam[sel][:, rows, :]).sum(axis=1)
        score = influence * (Ub - Lb)
        score += 1e-12 * (Ub - Lb) / width0  # ties (zero influence): widest relative side
        dim = np.argmax(score, axis=1)
        rows_idx = np.arange(Lb.shape[0])
        mid = (Lb[rows_idx, dim] + Ub[rows_idx, dim]) / 2
        U1 = Ub.copy()
        U1[rows_idx, dim] = mid
        L2 = Lb.copy()
        L2[rows_idx, dim] = mid
        L = np.vstack([L, Lb, L2])
        U = np.vstack([U, U1, Ub])
        depth = np.concatenate([depth, db + 1, db + 1])
        PL = {name: np.concatenate([PL[name], lo[name], lo[name]]) for name in names}
        PU = {name: np.concatenate([PU[name], hi[name], hi[name]]) for name in names}
    info["bab_time"] = time.perf_counter() - clock
    if unknown or L.shape[0]:
        info["decided_by"] = "unknown"
        return None, None
    info["decided_by"] = "bab"
    return "holds", None


def box_outside_rows(domain: InputDomain, L: np.ndarray, U: np.ndarray) -> np.ndarray:
    """Boxes that provably miss ``A x <= b`` (some row's minimum over the box exceeds ``b``)."""
    if domain.A is None:
        return np.zeros(L.shape[0], dtype=bool)
    A = domain.A
    low = np.clip(A, 0, None) @ L.T + np.clip(A, None, 0) @ U.T  # (rows, B)
    return np.any(low > domain.b[:, None] + 1e-9 * (1.0 + np.abs(domain.b[:, None])), axis=0)

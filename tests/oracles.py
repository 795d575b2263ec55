"""Independent oracles for tests: brute-force optimisation over activation patterns.

For a sequential network, every activation pattern (one piece per neuron) makes the network affine on
a polyhedron of inputs. Enumerating the feasible patterns depth-first (pruning a partial pattern as soon
as its polyhedron is empty) and solving one LP per full pattern gives the exact global optimum, using
scipy's ``linprog`` and none of relumilp's formulation code.
"""

from __future__ import annotations

import numpy as np
import highspy

from relumilp.ir import ActivationNode, Network


def pieces(node: ActivationNode):
    """``[(lo, hi, slope, offset), ...]``: on ``lo <= x <= hi`` the activation is ``slope * x + offset``."""
    inf = np.inf
    if node.kind == "relu":
        return [(-inf, 0.0, 0.0, 0.0), (0.0, inf, 1.0, 0.0)]
    if node.kind == "leaky_relu":
        return [(-inf, 0.0, node.alpha, 0.0), (0.0, inf, 1.0, 0.0)]
    if node.kind == "clipped_relu":
        return [(-inf, 0.0, 0.0, 0.0), (0.0, node.cap, 1.0, 0.0), (node.cap, inf, 0.0, node.cap)]
    if node.kind == "clip":  # min(max(x, a), b)
        a, b = node.activation.low, node.activation.high
        return [(-inf, a, 0.0, a), (a, b, 1.0, 0.0), (b, inf, 0.0, b)]
    if node.kind == "abs":
        return [(-inf, 0.0, -1.0, 0.0), (0.0, inf, 1.0, 0.0)]
    if node.kind == "hard_sigmoid":  # clip(alpha x + beta, 0, 1): the ramp between t = 0 and t = 1
        alpha, beta = node.activation.alpha, node.activation.beta
        zero, one = -beta / alpha, (1.0 - beta) / alpha
        if alpha > 0:
            return [(-inf, zero, 0.0, 0.0), (zero, one, alpha, beta), (one, inf, 0.0, 1.0)]
        return [(-inf, one, 0.0, 1.0), (one, zero, alpha, beta), (zero, inf, 0.0, 0.0)]
    if node.kind == "pwl":  # value at 0 and slopes: integrate from 0 to each breakpoint
        b = np.array(node.activation.params["breakpoints"])
        s = np.array(node.activation.params["slopes"])
        f0 = node.activation.params["offset"]
        def value(t):  # f(t) = f(0) + integral of the slope from 0 to t, piece by piece
            edges = np.concatenate([[-1e300], b, [1e300]])
            lo, hi = min(0.0, t), max(0.0, t)
            overlap = np.clip(np.minimum(edges[1:], hi) - np.maximum(edges[:-1], lo), 0.0, None)
            return f0 + np.sign(t) * float(overlap @ s)
        ends = [-inf, *b.tolist(), inf]
        out = []
        for p in range(s.size):
            anchor = b[p - 1] if p > 0 else b[0]
            out.append((ends[p], ends[p + 1], float(s[p]), value(anchor) - s[p] * anchor))
        return out
    if node.kind == "identity":
        return [(-inf, inf, 1.0, 0.0)]
    raise ValueError(f"no oracle pieces for activation kind {node.kind!r}")


def linprog(c, A_ub=None, b_ub=None, bounds=None, method=None):
    """Minimise ``c @ x`` s.t. ``A_ub x <= b_ub`` and box ``bounds``, with a bare HiGHS LP (fast for tiny LPs)."""
    lower, upper = np.array(bounds, dtype=float).T
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.addVars(lower.size, lower, upper)
    h.changeColsCost(lower.size, np.arange(lower.size, dtype=np.int32), np.asarray(c, dtype=float))
    if A_ub is not None:
        A = np.asarray(A_ub, dtype=float)
        starts = np.arange(A.shape[0], dtype=np.int32) * A.shape[1]
        h.addRows(A.shape[0], np.full(A.shape[0], -highspy.kHighsInf), np.asarray(b_ub, dtype=float),
                  A.size, starts, np.tile(np.arange(A.shape[1], dtype=np.int32), A.shape[0]), A.ravel())
    h.run()
    optimal = h.getModelStatus() == highspy.HighsModelStatus.kOptimal
    x = np.array(h.getSolution().col_value) if optimal else None
    return type("LPResult", (), {"status": 0 if optimal else 2, "x": x})


def _feasible(G, h, lower, upper, witness):
    """A point of ``{x in box: G x <= h}`` (the old witness when it still fits), or None when empty."""
    if not G or np.all(np.array(G) @ witness <= np.array(h) + 1e-12):
        return witness
    res = linprog(np.zeros(lower.size), A_ub=np.array(G), b_ub=np.array(h), bounds=list(zip(lower, upper)),
                  method="highs")
    return res.x if res.status == 0 else None


def enumerate_patterns(net: Network, lower, upper, A=None, b=None):
    """Yield ``(G, h, M, m)`` per feasible activation pattern: on ``{x in box : G x <= h}`` the output is ``M x + m``."""
    lower, upper = np.asarray(lower, float), np.asarray(upper, float)
    layers = net.dense_layers()
    kinds = net.activations
    G0 = [] if A is None else [row for row in np.atleast_2d(A)]
    h0 = [] if b is None else list(np.ravel(b))

    def layer(k, M, m, G, h, w):
        W, bias = layers[k]
        pre_M, pre_m = W @ M, W @ m + bias
        if k == len(layers) - 1:
            yield G, h, pre_M, pre_m
            return
        node = kinds[k]
        yield from neuron(k, node, pre_M, pre_m, 0, np.zeros_like(pre_M), np.zeros_like(pre_m), G, h, w)

    def neuron(k, node, pre_M, pre_m, j, post_M, post_m, G, h, w):
        if j == pre_M.shape[0]:
            yield from layer(k + 1, post_M, post_m, G, h, w)
            return
        for lo, hi, slope, offset in pieces(node):
            G2, h2 = list(G), list(h)
            if np.isfinite(lo):  # lo <= pre  <=>  -pre_M x <= pre_m - lo
                G2.append(-pre_M[j]); h2.append(pre_m[j] - lo)
            if np.isfinite(hi):
                G2.append(pre_M[j]); h2.append(hi - pre_m[j])
            w2 = _feasible(G2, h2, lower, upper, w) if len(G2) > len(G) else w
            if w2 is None:
                continue
            PM, Pm = post_M.copy(), post_m.copy()
            PM[j] = slope * pre_M[j]
            Pm[j] = slope * pre_m[j] + offset
            yield from neuron(k, node, pre_M, pre_m, j + 1, PM, Pm, G2, h2, w2)

    witness = _feasible(G0, h0, lower, upper, (lower + upper) / 2)
    if witness is None:
        return
    yield from layer(0, np.eye(lower.size), np.zeros(lower.size), G0, h0, witness)


def brute_force_optima(net: Network, lower, upper, coefficients, A=None, b=None):
    """``{"min": (value, x), "max": (value, x)}`` of ``coefficients @ net(x)`` over the box (and ``A x <= b``)."""
    best = {"min": (None, None), "max": (None, None)}
    for G, h, M, m in enumerate_patterns(net, lower, upper, A, b):
        c = coefficients @ M
        for sense, sign in (("min", 1.0), ("max", -1.0)):
            res = linprog(sign * c, A_ub=np.array(G) if G else None, b_ub=np.array(h) if G else None,
                          bounds=list(zip(lower, upper)), method="highs")
            if res.status != 0:
                continue
            value = float(c @ res.x + coefficients @ m)
            if best[sense][0] is None or sign * value < sign * best[sense][0]:
                best[sense] = (value, res.x)
    return best

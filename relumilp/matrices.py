r"""Weight matrices of the IR: dense numpy arrays or scipy CSR arrays, and the operations passes need on them.

An affine node's weight ``W`` (shape ``(m, n)``) is either a dense ``numpy.ndarray`` or a
``scipy.sparse.csr_array``. Convolutions, pooling, slicing and concatenations give matrices with few
nonzeros per row; a 60,000-wide layer's identity or gather would need tens of gigabytes dense. Every
pass reads weights through the functions here, so none of them densifies a large matrix by accident:

* :func:`rmatmul` -- ``x @ W.T`` for a batch of row vectors ``x`` (numpy / scipy, or torch with a
  :class:`TorchSparse` weight);
* :func:`signed_parts` -- ``W+ = max(W, 0)``, ``W- = min(W, 0)``, ``|W|`` (exact in floating point);
* :func:`densify` -- the dense form, only below an explicit size (:data:`DENSE_LIMIT` entries), else a
  clear error: what is densified is always bounded and named;
* :func:`triplets` -- the nonzeros as ``(rows, cols, values)`` for CSR assembly of the MILP.

Which form a matrix takes is decided once, by :func:`tidy`: sparse when at most a quarter of its entries
are nonzero (or when the dense form would be too large), dense otherwise. Dense networks therefore stay
dense (same forward pass, same hashes as before), and structured layers stay sparse.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from .errors import InvalidNetworkError

#: the largest matrix (in entries, 2^24 = 128 MiB of float64) any pass densifies
DENSE_LIMIT = 2**24
#: a matrix with at most this fraction of nonzeros is kept sparse
SPARSE_DENSITY = 0.25
#: dense matrices below this many entries are never converted to sparse (not worth it)
SMALL = 4096
#: matrices up to this many entries (512 KiB) are built dense: numpy on them is far cheaper than
#: constructing scipy objects, which dominates loading networks of many small pieces
SMALL_DENSE = 2**16


def is_sparse(w) -> bool:
    """True for a scipy sparse matrix or array."""
    return sp.issparse(w)


def entries(w) -> int:
    """``m * n``: the size of the dense form."""
    return math.prod(w.shape)


def nonzeros(w) -> int:
    """Stored nonzeros (sparse) or nonzero entries (dense)."""
    return int(w.nnz) if is_sparse(w) else int(np.count_nonzero(w))


def identity(n: int):
    """The ``n x n`` identity: sparse (a dense 60,000-wide one would take 27 GiB), dense when small."""
    if n * n <= SMALL_DENSE:
        return np.eye(n)
    return sp.eye_array(n, format="csr", dtype=np.float64)


def compact(w):
    """``w`` dense when it has at most :data:`SMALL_DENSE` entries, else unchanged."""
    return w.toarray() if is_sparse(w) and entries(w) <= SMALL_DENSE else w


def zeros(m: int, n: int) -> sp.csr_array:
    return sp.csr_array((m, n), dtype=np.float64)


def is_identity(w) -> bool:
    """True when ``w`` is exactly the identity (checked without building one)."""
    if w.ndim != 2 or w.shape[0] != w.shape[1]:
        return False
    n = w.shape[0]
    if is_sparse(w):
        w = sp.csr_array(w)
        w.sum_duplicates()
        w.eliminate_zeros()
        return bool(
            w.nnz == n and np.array_equal(w.indptr, np.arange(n + 1)) and np.array_equal(w.indices, np.arange(n))
            and np.all(w.data == 1.0)
        )
    if np.count_nonzero(w) != n:
        return False
    return bool(np.all(np.diagonal(w) == 1.0))


def canonical(w) -> sp.csr_array:
    """``w`` as a float64 CSR array with sorted, summed indices and no stored zeros (a fresh copy)."""
    out = sp.csr_array(w, dtype=np.float64, copy=True)
    if not out.has_canonical_format:
        out.sum_duplicates()  # also sorts the indices
    if not np.all(out.data):
        out.eliminate_zeros()
    return out


def tidy(w):
    """The form ``w`` is kept in: sparse if at most :data:`SPARSE_DENSITY` of it is nonzero or if its
    dense form exceeds :data:`DENSE_LIMIT`; dense otherwise (see the module docstring)."""
    size = entries(w)
    if is_sparse(w):
        w = canonical(w)
        if size <= DENSE_LIMIT and w.nnz > SPARSE_DENSITY * size:
            return w.toarray()
        return w
    w = np.asarray(w, dtype=np.float64)
    if size > SMALL and w.ndim == 2 and np.count_nonzero(w) <= SPARSE_DENSITY * size:
        return canonical(w)
    return w


def densify(w, limit: int = DENSE_LIMIT, what: str = "a weight matrix") -> np.ndarray:
    """The dense form of ``w``; a clear error when it has more than ``limit`` entries."""
    if not is_sparse(w):
        return np.asarray(w)
    if entries(w) > limit:
        raise InvalidNetworkError(
            f"{what} of shape {w.shape} is sparse and too large to densify ({entries(w):,} entries, "
            f"limit {limit:,}); read it through AffineNode.weights (scipy CSR) instead"
        )
    return w.toarray()


def max_row_terms(w) -> int:
    """The most nonzero products one output row of ``w @ x`` sums (``n`` for a dense matrix: the forward
    pass then sums them all; exact zeros add no rounding, so fewer is never needed)."""
    if is_sparse(w):
        return int(np.diff(sp.csr_array(w).indptr).max(initial=0))
    return int(w.shape[1])


def signed_parts(w):
    """``(W+, W-)`` with ``W+ = (W + |W|)/2``, ``W- = (W - |W|)/2`` (exact in floating point); for numpy,
    scipy and torch matrices, and cached on a :class:`TorchSparse`."""
    if isinstance(w, TorchSparse):
        return w.parts()
    mag = abs(w)
    return (w + mag) / 2, (w - mag) / 2


def rmatmul(x, w):
    """``x @ W.T`` for a batch of row vectors ``x`` (``(B, n)`` or ``(n,)``)."""
    if isinstance(w, TorchSparse):
        return w.rmatmul(x)
    return x @ w.T


def lmatmul(a, w):
    """``A @ W`` for a stack of row vectors ``A`` (``(..., m)``): back-substitution across ``W``."""
    if isinstance(w, TorchSparse):
        return w.lmatmul(a)
    return a @ w


def scale(w, rows=None, cols=None, divide_cols: bool = False):
    """``diag(rows) @ W @ diag(cols)`` (``W_ij r_i / c_j`` with ``divide_cols``) in ``w``'s own form, with
    the same floating-point operations per entry either way (None leaves that side unscaled)."""
    if is_sparse(w):
        out = canonical(w)
        row_of = np.repeat(np.arange(out.shape[0]), np.diff(out.indptr))
        if rows is not None:
            out.data = np.asarray(rows, dtype=np.float64)[row_of] * out.data
        if cols is not None:
            c = np.asarray(cols, dtype=np.float64)[out.indices]
            out.data = out.data / c if divide_cols else out.data * c
        return out
    out = np.asarray(w, dtype=np.float64)
    if rows is not None:
        out = np.asarray(rows)[:, None] * out
    if cols is not None:
        out = out / np.asarray(cols)[None, :] if divide_cols else out * np.asarray(cols)[None, :]
    return out


def triplets(w):
    """``(rows, cols, values)`` of the nonzeros of ``w`` (row-major order)."""
    if is_sparse(w):
        coo = sp.coo_array(w)
        keep = coo.data != 0.0
        return coo.row[keep].astype(np.int64), coo.col[keep].astype(np.int64), coo.data[keep]
    rows, cols = np.nonzero(w)
    return rows, cols, np.asarray(w)[rows, cols]


def hstack(ws):
    """Side-by-side concatenation; sparse if any block is."""
    if any(is_sparse(w) for w in ws):
        return sp.hstack([sp.csr_array(w) for w in ws], format="csr")
    return np.hstack(ws)


def vstack(ws):
    """Stacked concatenation; sparse if any block is."""
    if any(is_sparse(w) for w in ws):
        return sp.vstack([sp.csr_array(w) for w in ws], format="csr")
    return np.vstack(ws)


def nonzero_columns(w) -> np.ndarray:
    """A boolean mask of the columns of ``w`` holding a nonzero."""
    if is_sparse(w):
        mask = np.zeros(w.shape[1], dtype=bool)
        coo = sp.coo_array(w)
        mask[coo.col[coo.data != 0.0]] = True
        return mask
    return np.any(np.asarray(w) != 0.0, axis=0)


def abs_values(w) -> np.ndarray:
    """The absolute values of the nonzero entries (statistics of the weight range)."""
    values = w.data if is_sparse(w) else np.asarray(w).ravel()
    return np.abs(values[values != 0.0])


class TorchSparse:
    """A sparse weight ``W`` in torch (CSR, with ``W.T`` kept as a second CSR for back-substitution).

    Used by the bound engine for matrices too large to hold dense (:func:`to_torch`).
    """

    def __init__(self, w, dtype, device):
        w = canonical(w)
        self.shape = w.shape
        self.w = self._tensor(w, dtype, device)
        self.wt = self._tensor(canonical(w.T), dtype, device)
        self._source, self._dtype, self._device = w, dtype, device
        self._parts = None

    @staticmethod
    def _tensor(w: sp.csr_array, dtype, device):
        import warnings

        import torch

        with warnings.catch_warnings():  # "beta state" and invariant-check notices: the parts are canonical
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(
                torch.from_numpy(w.indptr.astype(np.int64)), torch.from_numpy(w.indices.astype(np.int64)),
                torch.from_numpy(w.data), size=w.shape, dtype=dtype, device=device,
            )

    def parts(self):
        if self._parts is None:
            self._parts = tuple(TorchSparse(p, self._dtype, self._device) for p in signed_parts(self._source))
        return self._parts

    def rmatmul(self, x):
        """``x @ W.T``."""
        if x.ndim == 1:
            return self.w @ x
        return _sparse_product(x, self.w, self.wt)

    def lmatmul(self, a):
        """``A @ W`` for ``A`` of shape (..., m)."""
        lead = a.shape[:-1]
        flat = a.reshape(-1, a.shape[-1])
        return _sparse_product(flat, self.wt, self.w).reshape(*lead, self.shape[1])


#: torch's CSR-by-dense product slows down per row beyond about a hundred dense rows (oval21 ``cifar_wide``
#: second convolution, 1,152 rows: 700-800 ms at once, 300-400 ms in blocks of 32-128 rows)
SPARSE_PRODUCT_ROWS = 64

_SPARSE_PRODUCT = None


def _csr_times(matrix, rows):
    """``rows @ matrix.T`` for a torch CSR ``matrix``, in blocks of :data:`SPARSE_PRODUCT_ROWS` rows."""
    import torch

    if rows.shape[0] <= SPARSE_PRODUCT_ROWS:
        return (matrix @ rows.T).T
    return torch.cat([(matrix @ block.T).T for block in rows.split(SPARSE_PRODUCT_ROWS)])


def _sparse_product(rows, matrix, transposed):
    """``rows @ matrix.T`` for a torch CSR ``matrix`` whose transpose ``transposed`` is kept beside it.

    When ``rows`` needs a gradient (the bound engine's slope optimisation, the gradient attack), the
    gradient ``g @ matrix`` is one more CSR product with ``transposed``: torch's own backward of a sparse
    product was 3x slower (oval21 ``cifar_wide`` second convolution, 64 rows: 85 ms against 27 ms for
    the product and its gradient in float64)."""
    global _SPARSE_PRODUCT
    if not rows.requires_grad:
        return _csr_times(matrix, rows)
    if _SPARSE_PRODUCT is None:
        import torch

        class SparseProduct(torch.autograd.Function):
            @staticmethod
            def forward(ctx, rows, matrix, transposed):
                ctx.transposed = transposed
                return _csr_times(matrix, rows)

            @staticmethod
            def backward(ctx, grad):
                return _csr_times(ctx.transposed, grad), None, None

        _SPARSE_PRODUCT = SparseProduct
    return _SPARSE_PRODUCT.apply(rows, matrix, transposed)


#: the bound engine keeps a sparse weight sparse in torch below this fraction of nonzeros, even when it
#: could be dense. A product with its gradient (:func:`_sparse_product`), float64, one thread, 16-1,152
#: rows: the oval21 ``cifar_wide`` second convolution (5.5% nonzero) took 2-3x less time sparse; random
#: 2,048 x 4,096 matrices broke even between 10% and 15% (sparse 1.3-1.9x faster at 5%, dense 1.4x at 15%)
SPARSE_PRODUCT_DENSITY = 0.1


def to_torch(w, dtype, device, dense_limit: int = DENSE_LIMIT):
    """``w`` for the bound engine: a dense tensor when it has at most ``dense_limit`` entries and is not
    very sparse (:data:`SPARSE_PRODUCT_DENSITY`: fast BLAS products), else a :class:`TorchSparse`."""
    import torch

    if is_sparse(w):
        if entries(w) <= dense_limit and w.nnz > SPARSE_PRODUCT_DENSITY * entries(w):
            return torch.as_tensor(w.toarray(), dtype=dtype, device=device)
        return TorchSparse(w, dtype, device)
    return torch.tensor(np.array(w, dtype=np.float64), dtype=dtype, device=device)

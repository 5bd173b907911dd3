"""Weighted ridge least squares for many series that share one design matrix, without per-series loops.

Series ``s`` minimises ``sum_t w[s, t] (y[s, t] - X[t] b)^2 + sum_j penalty[s, j] b_j^2``. Its Gram matrix
``X' diag(w_s) X`` is linear in ``w_s``, so the Gram matrices of all series come from one product of the
weights with the column products of ``X`` (``steps x p(p+1)/2``). Weights are mostly 1 (few missing
points, few down-weighted outliers), so that product is taken as the full Gram matrix minus a sparse
correction; a batch with identical weights shares a single Gram matrix. Columns scaled per series
(``extra * scale[s]``) fit the same scheme with weights ``w * scale`` and ``w * scale**2``. Huber
weights from robust residual scales make a robust refit a second solve with the same machinery.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import sparse

from capacity_forecaster.forecast.models.panel import row_quantiles

# Huber threshold in robust standard deviations (MAD * 1.4826).
_HUBER_K = 2.0
# Share of weights different from 1 up to which the sparse Gram correction beats a dense product.
_SPARSE_SHARE = 0.25


@dataclass(frozen=True)
class NormalEquations:
    """``gram`` is (p, p) when shared by every series, else (g, p, p); ``rhs`` is (g, p)."""

    gram: np.ndarray
    rhs: np.ndarray


@dataclass
class SharedDesign:
    """A (steps, p) design shared by a batch of series, with its column products computed once."""

    x: np.ndarray
    _products: np.ndarray | None = field(default=None, repr=False)
    _total: np.ndarray | None = field(default=None, repr=False)

    @property
    def products(self) -> np.ndarray:
        """Upper-triangle column products, (steps, p(p+1)/2), C-contiguous (``triu_indices`` order)."""
        if self._products is None:
            steps, p = self.x.shape
            out = np.empty((steps, p * (p + 1) // 2))
            # Row i of the upper triangle is column i times columns i..p-1: one broadcast product
            # per column, written in place (no gathered copies of the design).
            at = 0
            for i in range(p):
                np.multiply(self.x[:, i : i + 1], self.x[:, i:], out=out[:, at : at + p - i])
                at += p - i
            self._products = out
        return self._products

    @property
    def total(self) -> np.ndarray:
        """Column sums of ``products``: the unweighted Gram matrix's upper triangle, computed once."""
        if self._total is None:
            self._total = self.products.sum(axis=0)
        return self._total


def normal_equations(
    design: SharedDesign,
    y: np.ndarray,
    weights: np.ndarray,
    *,
    extra: np.ndarray | None = None,
    scale: np.ndarray | None = None,
    base: NormalEquations | None = None,
) -> NormalEquations:
    """Weighted normal equations of many series over a shared design.

    Args:
        design: the shared design (steps, p).
        y: (g, steps) targets (any finite value where the weight is 0).
        weights: (g, steps) point weights in [0, 1] (0 = missing).
        extra: optional (steps, q) columns that series ``s`` sees multiplied by ``scale[s]``.
        scale: (g, steps) per-series multiplier of ``extra``.
        base: equations of ``design`` with the same ``weights`` computed before; their Gram matrix is
            reused for the ``x`` block (the expensive part).

    Returns:
        NormalEquations over the p (+ q) coefficients.
    """
    x = design.x
    wy = weights * y
    if extra is None or scale is None:
        if np.all(weights == weights[:1]):
            return NormalEquations((x * weights[0][:, None]).T @ x, wy @ x)
        return NormalEquations(_symmetric_gram(weights, design), wy @ x)
    if base is None:
        base = normal_equations(design, y, weights)
    ws = weights * scale
    cross = _cross_gram(ws, x, extra)
    base_gram = np.broadcast_to(base.gram, (len(y), x.shape[1], x.shape[1]))
    top = np.concatenate([base_gram, cross], axis=2)
    bottom = np.concatenate([cross.transpose(0, 2, 1), _symmetric_gram(ws * scale, SharedDesign(extra))], axis=2)
    gram = np.concatenate([top, bottom], axis=1)
    return NormalEquations(gram, np.concatenate([wy @ x, (wy * scale) @ extra], axis=1))


def ridge_solve(eq: NormalEquations, penalty: np.ndarray) -> np.ndarray:
    """Solve the normal equations with a ridge penalty.

    Args:
        eq: the normal equations.
        penalty: (p,) shared or (g, p) per-series penalty on each coefficient (keep a small positive
            floor on every coefficient so that each system is positive definite).

    Returns:
        (g, p) coefficients.
    """
    p = eq.rhs.shape[1]
    diagonal = np.arange(p)
    if eq.gram.ndim == 2 and penalty.ndim == 1:
        gram = eq.gram.copy()
        gram[diagonal, diagonal] += penalty
        return np.linalg.solve(gram, eq.rhs.T).T
    gram = np.array(np.broadcast_to(eq.gram, (len(eq.rhs), p, p)))
    gram[:, diagonal, diagonal] += penalty
    return np.linalg.solve(gram, eq.rhs[..., None])[..., 0]


def _symmetric_gram(weights: np.ndarray, design: SharedDesign) -> np.ndarray:
    """``x' diag(w_s) x`` for every row of ``weights``, (g, p, p)."""
    p = design.x.shape[1]
    deficit = 1.0 - weights
    if np.count_nonzero(deficit) <= _SPARSE_SHARE * deficit.size:
        half = design.total[None, :] - np.asarray(sparse.csr_matrix(deficit) @ design.products)
    else:
        half = weights @ design.products
    upper_i, upper_j = np.triu_indices(p)
    gram = np.empty((len(weights), p, p))
    gram[:, upper_i, upper_j] = half
    gram[:, upper_j, upper_i] = half
    return gram


def _cross_gram(weights: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a' diag(w_s) b`` for every row of ``weights``, (g, pa, pb)."""
    products = (a[:, :, None] * b[:, None, :]).reshape(a.shape[0], -1)
    return (weights @ products).reshape(len(weights), a.shape[1], b.shape[1])


def robust_scale(resid: np.ndarray) -> np.ndarray:
    """Per-row robust standard deviation of residuals (MAD * 1.4826), floored; NaN ignored."""
    mad = row_quantiles(np.abs(resid), np.array([0.5]))[:, 0]
    return np.maximum(1.4826 * np.nan_to_num(mad, nan=0.0), 1e-6)


def huber_weights(resid: np.ndarray) -> np.ndarray:
    """Huber weights per point from each row's robust residual scale (1 inside, k*s/|r| outside), (g, steps)."""
    absr = np.nan_to_num(np.abs(resid), nan=0.0)
    return np.minimum(1.0, _HUBER_K * robust_scale(resid)[:, None] / np.maximum(absr, 1e-12))

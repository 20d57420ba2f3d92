"""Logistic regression fitted by L-BFGS over blocks of a float32 design matrix.

scikit-learn's ``LogisticRegression(solver="lbfgs")`` evaluates its objective on the whole
float64 design matrix at once and keeps several per-row arrays (raw predictions,
probabilities, per-row gradients: ``rows × classes`` float64 each) for the whole fit. The
objective is a sum over rows, so here it is accumulated :data:`BLOCK_ROWS` rows at a time:
the fit holds the design matrix as float32 (half the bytes; exact, see below), the labels
(and sample weights, if any) and one block's float64 arrays.

The objective, the optimizer and its settings are scikit-learn's (version 1.9):

    (1/S) Σᵢ sᵢ · loss(yᵢ, Xᵢ Wᵀ + b) + ||W||² / (2 · C · S)

with ``loss`` the multinomial (softmax) log-loss, or the binomial one when the rows hold
two classes; ``sᵢ`` the sample weights (1, or ``"balanced"`` class weights) and ``S`` their
sum; the intercept ``b`` not penalized; ``scipy.optimize.minimize(method="L-BFGS-B")`` from
zeros with ``maxiter``, ``gtol=tol``, ``maxls=50`` and ``ftol=64·eps``. Only the order in
which the rows' terms are added differs, so the coefficients agree with scikit-learn's to
about 1e-9 (``tests/unit/ml/test_ml_logistic.py``), and the result is a fitted
``LogisticRegression`` (ONNX export and ``predict_proba`` work as for one scikit-learn fit).

float32 is exact here: the schema featurization's numeric block is the scaler's float32
output (its float64 copy in the stacked matrix holds the same values) and every other
column is 0 or 1; :func:`cleanroom.ml.design.design_matrix` checks it when asked for float32.
The arithmetic is always float64: for a spec without categorical columns (whose stacked
matrix is float32) scikit-learn would have fitted in float32, less precisely.
"""

from __future__ import annotations

import warnings
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp  # type: ignore[import-untyped]
from scipy import optimize
from scipy.special import expit  # type: ignore[import-untyped]
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.utils.class_weight import compute_class_weight

#: Rows per block of the objective (small enough that a block stays in the CPU cache).
BLOCK_ROWS: Final = 4096


class _Objective:
    """Loss and gradient of the objective in the module docstring, block by block.

    A dense design matrix is copied block by block into one float64 buffer and every
    ``rows × classes`` array lives in one preallocated buffer, so an evaluation makes no
    large allocation per block: they would otherwise go to ``mmap`` and back and page-fault
    on every block (25 % of the fit's time, measured). A CSR block is still sliced and
    converted per block.
    """

    def __init__(
        self,
        x: Any,
        target: npt.NDArray[np.intp],
        weights: npt.NDArray[np.float64] | None,
        classes: int,
        c: float,
    ) -> None:
        self.x = x
        self.target = target
        self.weights = weights
        self.binary = classes == 2
        self.outputs = 1 if self.binary else classes
        self.features = x.shape[1]
        self.total = float(len(target)) if weights is None else float(weights.sum())
        self.l2 = 1.0 / (c * self.total)
        rows = min(BLOCK_ROWS, len(target))
        self._dense = None if sp.issparse(x) else np.empty((rows, self.features))
        # Class-major (classes × rows): reductions over the classes then run along rows,
        # which numpy vectorizes; a (rows × 5) layout reduces five values at a time.
        self._raw = np.empty((self.outputs, rows))
        self._index = np.arange(rows)

    def _block(self, start: int, stop: int) -> Any:
        if self._dense is None:
            return self.x[start:stop].astype(np.float64)
        block = self._dense[: stop - start]
        block[...] = self.x[start:stop]
        return block

    def __call__(self, w: npt.NDArray[np.float64]) -> tuple[float, npt.NDArray[np.float64]]:
        packed = w.reshape(self.outputs, self.features + 1)
        coef, intercept = packed[:, :-1], packed[:, -1]
        loss = 0.0
        gradient = np.zeros_like(packed)
        for start in range(0, len(self.target), BLOCK_ROWS):
            stop = min(start + BLOCK_ROWS, len(self.target))
            x = self._block(start, stop)
            y = self.target[start:stop]
            raw = self._raw[:, : stop - start]  # raw[k, i]: class k's logit of row i
            if self._dense is None:
                raw[...] = (x @ coef.T).T
            else:
                np.matmul(coef, x.T, out=raw)
            raw += intercept[:, None]
            if self.binary:
                z = raw[0]
                # log(1 + e^z) - y z, and its derivative sigmoid(z) - y, without overflow.
                pointwise = np.logaddexp(0.0, z) - y * z
                z[...] = expit(z) - y
            else:
                raw -= raw.max(axis=0)
                index = self._index[: stop - start]
                picked = raw[y, index]
                np.exp(raw, out=raw)
                sums = raw.sum(axis=0)
                pointwise = np.log(sums) - picked
                raw /= sums
                raw[y, index] -= 1.0
            if self.weights is not None:
                s = self.weights[start:stop]
                pointwise = pointwise * s
                raw *= s
            loss += float(pointwise.sum())
            gradient[:, :-1] += np.asarray(raw @ x) if self._dense is not None else (x.T @ raw.T).T
            gradient[:, -1] += raw.sum(axis=1)
        loss = loss / self.total + 0.5 * self.l2 * float(np.sum(coef * coef))
        gradient /= self.total
        gradient[:, :-1] += self.l2 * coef
        return loss, gradient.ravel()


def fit_logistic(
    x: Any,
    y: npt.NDArray[Any],
    *,
    C: float,
    max_iter: int,
    tol: float,
    class_weight: str | None,
    seed: int,
) -> LogisticRegression:
    """A fitted ``LogisticRegression`` (``solver="lbfgs"``) for rows ``x`` (dense or CSR,
    float32 or float64) and labels ``y``, by the block-wise objective of the module docstring.

    Warns ``ConvergenceWarning`` as scikit-learn does when ``max_iter`` is reached.

    Raises:
        ValueError: fewer than two classes, or ``x`` and ``y`` disagree in length.
    """
    if x.shape[0] != len(y):
        raise ValueError("the design matrix and the labels differ in length")
    classes, target = np.unique(np.asarray(y), return_inverse=True)
    if len(classes) < 2:
        raise ValueError("fewer than two classes")
    weights = None
    if class_weight is not None:
        weights = compute_class_weight(class_weight, classes=classes, y=np.asarray(y))[target]
    objective = _Objective(x, target.astype(np.intp, copy=False), weights, len(classes), C)
    start = np.zeros(objective.outputs * (objective.features + 1))
    result = optimize.minimize(
        objective,
        start,
        method="L-BFGS-B",
        jac=True,
        options={"maxiter": max_iter, "maxls": 50, "gtol": tol, "ftol": 64 * np.finfo(float).eps},
    )
    if result.status != 0:
        warnings.warn(
            f"lbfgs did not converge in {max_iter} iterations ({result.status})",
            ConvergenceWarning,
            stacklevel=2,
        )
    packed = result.x.reshape(objective.outputs, objective.features + 1)
    model = LogisticRegression(
        C=C,
        max_iter=max_iter,
        tol=tol,
        solver="lbfgs",
        class_weight=class_weight,
        random_state=seed,
    )
    model.classes_ = classes
    model.coef_ = np.ascontiguousarray(packed[:, :-1])
    model.intercept_ = packed[:, -1].copy()
    model.n_iter_ = np.array([min(result.nit, max_iter)], dtype=np.int32)
    model.n_features_in_ = objective.features
    return model


__all__ = ["BLOCK_ROWS", "fit_logistic"]

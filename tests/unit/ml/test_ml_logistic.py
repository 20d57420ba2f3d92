"""The block-wise L-BFGS logistic regression reaches scikit-learn's optimum."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from cleanroom.ml import logistic
from cleanroom.ml.logistic import fit_logistic


def _rows(classes: int, rows: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Float32-exact features (scaled numbers, one-hot columns) and labels depending on them."""
    rng = np.random.default_rng(seed)
    numeric = rng.normal(size=(rows, 4)).astype(np.float32)
    onehot = np.eye(5, dtype=np.float32)[rng.integers(0, 5, rows)]
    x = np.hstack([numeric, onehot])
    latent = x @ rng.normal(size=(x.shape[1], classes)) + rng.gumbel(size=(rows, classes))
    return x, np.asarray([10, 20, 30, 40, 50])[np.argmax(latent, axis=1)]


def _sklearn(x: np.ndarray, y: np.ndarray, **kwargs: object) -> LogisticRegression:
    return LogisticRegression(max_iter=1000, tol=1e-6, random_state=0, **kwargs).fit(  # type: ignore[arg-type]
        x.astype(np.float64), y
    )


def _ours(x: object, y: np.ndarray, **kwargs: object) -> LogisticRegression:
    settings: dict[str, object] = {"C": 1.0, "max_iter": 1000, "tol": 1e-6, "class_weight": None}
    settings.update(kwargs)
    return fit_logistic(x, y, seed=0, **settings)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of 256 rows: every fit here sums over many blocks, the last one partial."""
    monkeypatch.setattr(logistic, "BLOCK_ROWS", 256)


@pytest.mark.parametrize(
    ("classes", "kwargs"),
    [
        (5, {}),
        (5, {"C": 0.05}),
        (5, {"class_weight": "balanced"}),
        (2, {}),
        (2, {"class_weight": "balanced"}),
    ],
)
def test_reaches_the_scikit_learn_optimum(classes: int, kwargs: dict[str, object]) -> None:
    x, y = _rows(classes)
    ours = _ours(x, y, **kwargs)
    theirs = _sklearn(x, y, **kwargs)
    assert np.array_equal(ours.classes_, theirs.classes_)
    assert ours.coef_.shape == theirs.coef_.shape
    # The same optimum, its terms summed in another order (measured: 1e-11 .. 1e-14).
    assert np.allclose(ours.coef_, theirs.coef_, rtol=0, atol=1e-8)
    assert np.allclose(ours.intercept_, theirs.intercept_, rtol=0, atol=1e-8)
    probe = x[:200].astype(np.float64)
    assert np.allclose(ours.predict_proba(probe), theirs.predict_proba(probe), rtol=0, atol=1e-9)
    assert ours.n_iter_[0] >= 1


def test_sparse_input_gives_the_dense_result() -> None:
    x, y = _rows(5)
    dense = _ours(x, y)
    sparse = _ours(sp.csr_matrix(x), y)
    assert np.allclose(dense.coef_, sparse.coef_, rtol=0, atol=1e-9)


def test_deterministic() -> None:
    x, y = _rows(5)
    first, second = _ours(x, y), _ours(x, y)
    assert first.coef_.tobytes() == second.coef_.tobytes()
    assert first.intercept_.tobytes() == second.intercept_.tobytes()


def test_warns_when_the_iterations_run_out() -> None:
    x, y = _rows(5)
    with pytest.warns(ConvergenceWarning):
        _ours(x, y, max_iter=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _ours(x, y)


@pytest.mark.parametrize(
    ("x", "y"),
    [
        (np.zeros((3, 2), np.float32), np.array([1, 1, 1])),
        (np.zeros((3, 2), np.float32), np.array([0, 1])),
    ],
)
def test_refuses_one_class_and_mismatched_lengths(x: np.ndarray, y: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"classes|length"):
        _ours(x, y)


def test_separable_binary_rows_raise_no_overflow_warning() -> None:
    """A huge C on separable rows drives the logits far past exp's range: no warning."""
    x = np.array([[-3.0], [-2.0], [-1.0], [1.0], [2.0], [3.0]], dtype=np.float32)
    y = np.array([0, 0, 0, 1, 1, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        model = _ours(x, y, C=1e6, max_iter=50)
    assert np.array_equal(model.predict(x.astype(np.float64)), y)

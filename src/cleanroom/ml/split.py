"""A seeded, disjoint, stratified train/test split of one party's rows.

The article drew its 80 % training and 20 % test rows with two independent
``TABLESAMPLE`` queries, so the same record could land in both and the accuracy it
reported was partly measured on training data. Here every row goes to exactly one side.

Algorithm (``test_fraction`` *f*, ``seed`` *s*, *n* rows):

1. the test size is ``round(n·f)``, at least one row when ``n ≥ 2`` and ``f > 0``;
2. it is shared out over the classes by largest remainder (Hamilton's method) of
   ``n_c · test_size / n``, never taking a class's last training row — so a class with a
   single row stays in training (the *stratify fallback*: scikit-learn's stratified
   split refuses classes with fewer than two rows; here such a class cannot be in both
   halves, and the training half is where the model needs it);
3. within each class (in the order of the sorted class values) the rows are permuted by
   ``numpy.random.default_rng(s)`` and the first ones go to test.

The split is a function of ``(labels in row order, f, s)`` only: the same frame and seed
always give the same split; both halves keep the frame's row order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from cleanroom.errors import ConfigurationError, TrainingError

DEFAULT_TEST_FRACTION: Final = 0.2

_Index = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Split:
    """The two halves of one party's rows: disjoint, together every row once."""

    train: pd.DataFrame
    test: pd.DataFrame


def split_indices(
    labels: npt.ArrayLike,
    *,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = 0,
) -> tuple[_Index, _Index]:
    """Row positions ``(train, test)`` of a stratified split of ``labels`` (ascending).

    Raises:
        ConfigurationError: ``test_fraction`` outside ``[0, 1)`` or a negative seed.
        TrainingError: a label is missing.
    """
    if not 0.0 <= test_fraction < 1.0:
        raise ConfigurationError("test_fraction must be in [0, 1)")
    if seed < 0:
        raise ConfigurationError("seed must be non-negative")
    values = pd.Series(np.asarray(labels))
    if bool(values.isna().any()):
        raise TrainingError("cannot split rows with a missing label")
    n = len(values)
    codes, uniques = pd.factorize(values, sort=True)
    counts = np.bincount(codes, minlength=len(uniques)).astype(np.int64)
    test_size = round(n * test_fraction)
    if n >= 2 and test_fraction > 0:
        test_size = max(test_size, 1)
    # Capacity: every class keeps at least one training row.
    capacity = np.maximum(counts - 1, 0)
    test_size = min(test_size, int(capacity.sum()))
    quota = counts * (test_size / n) if n else np.zeros(len(counts))
    per_class = np.minimum(np.floor(quota).astype(np.int64), capacity)
    remainder = quota - per_class
    left = test_size - int(per_class.sum())
    # Largest remainder first; ties go to the lower class value (stable sort).
    for k in np.argsort(-remainder, kind="stable"):
        if left == 0:
            break
        if per_class[k] < capacity[k]:
            per_class[k] += 1
            left -= 1
    rng = np.random.default_rng(seed)
    test_parts: list[_Index] = []
    for k in range(len(uniques)):
        rows = np.flatnonzero(codes == k)
        test_parts.append(rng.permutation(rows)[: per_class[k]])
    test = np.sort(np.concatenate(test_parts)) if test_parts else np.empty(0, np.int64)
    mask = np.ones(n, dtype=bool)
    mask[test] = False
    return np.flatnonzero(mask).astype(np.int64), test.astype(np.int64)


def train_test_split(
    frame: pd.DataFrame,
    *,
    label: str,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = 0,
) -> Split:
    """Split ``frame`` into disjoint, stratified train and test halves (module docstring).

    Example::

        halves = train_test_split(site, label="risk", test_fraction=0.2, seed=0)

    Raises:
        ConfigurationError: see :func:`split_indices`.
        TrainingError: the label column is absent or a label is missing.
    """
    if label not in frame.columns:
        raise TrainingError(f"missing column: {label}")
    train, test = split_indices(
        frame[label].to_numpy(dtype=object),
        test_fraction=test_fraction,
        seed=seed,
    )
    return Split(train=frame.iloc[train], test=frame.iloc[test])


__all__ = ["DEFAULT_TEST_FRACTION", "Split", "split_indices", "train_test_split"]

"""The design matrix built in blocks of rows, so that training's working memory stays bounded.

``ColumnTransformer.fit`` materializes every intermediate of every transformer over the
whole training set (the model-input frame with a string per categorical cell, the imputed,
scaled, indicator and one-hot blocks, then their stacked copy): several design matrices'
worth of memory at once. Here the same fitted preprocessor and the same matrix come from:

1. the fitted state that depends on the data — the numeric imputer and scaler of the
   ``"schema"`` featurization, the categories of an ``"article"`` one-hot with no schema
   range — learned from the whole training set's *numeric* columns only (a float32 copy of
   those columns, through the same scikit-learn estimators); everything else (one-hot
   categories, the present indicator) is fixed by the spec, so the transformer is fitted
   on a small probe of rows for its structure and the data-dependent part is then refitted
   in place on all rows;
2. the matrix allocated once and filled :data:`BLOCK_ROWS` rows at a time with the fitted
   preprocessor's ``transform``, which works row by row: the result is exactly what
   ``fit_transform`` on the whole frame returns (``tests/unit/ml/test_ml_design.py``).

Dense or sparse is fixed by the spec, not by the data (:func:`sparse_design`): CSR when at
most 30 % of the entries can be non-zero (the article's one-hot of every value: about 2 %
for MedicalRecord), dense otherwise (the schema featurization of MedicalRecord has 18
columns of which 8 are set in every row; CSR would take more memory than the array).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final, TypeAlias

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp  # type: ignore[import-untyped]
from sklearn.compose import ColumnTransformer

from cleanroom.errors import TrainingError
from cleanroom.ml.features import (
    MISSING_TOKEN,
    FeatureSpec,
    Featurization,
    as_float,
    as_tokens,
    build_preprocessor,
    model_input,
)

#: Rows transformed at a time: bounds the transient memory of featurization.
BLOCK_ROWS: Final = 65_536
#: Rows the preprocessor's structure is fitted on before its data-dependent part is refitted.
PROBE_ROWS: Final = 256
#: At most this share of possibly non-zero entries makes the design matrix sparse.
SPARSE_DENSITY: Final = 0.3

#: A design matrix: a dense float array or a CSR matrix.
Design: TypeAlias = npt.NDArray[np.floating[Any]] | Any


def sparse_design(
    spec: FeatureSpec,
    featurization: Featurization,
    *,
    dense: bool = False,
    categories: Mapping[str, Sequence[str]] | None = None,
) -> bool:
    """Whether the design matrix is sparse: the largest share of its entries one row can
    set is at most :data:`SPARSE_DENSITY`, and ``dense`` was not asked for.

    ``categories`` gives the learned categories of ``"article"`` numeric columns without
    a schema range (one column each; a column not given counts as one category).
    """
    if dense:
        return False
    width = sum(len(c) for c in spec.categorical.values())
    if featurization == "schema":
        width += 2 * len(spec.numeric)
        most = 2 * len(spec.numeric) + len(spec.categorical)
    else:
        for name in spec.numeric:
            if name in spec.ranges:
                lo, hi = spec.ranges[name]
                width += hi - lo + 1
            else:
                width += max(1, len((categories or {}).get(name, ())))
        most = len(spec.feature_columns)
    return most <= SPARSE_DENSITY * width


def blocks(frames: Sequence[pd.DataFrame], rows: int | None = None) -> Iterator[pd.DataFrame]:
    """The rows of ``frames`` in order, at most ``rows`` (default :data:`BLOCK_ROWS`) at a time."""
    rows = rows or BLOCK_ROWS
    for frame in frames:
        for start in range(0, len(frame), rows):
            yield frame.iloc[start : start + rows]


def _numeric_columns(frames: Sequence[pd.DataFrame], names: Sequence[str]) -> pd.DataFrame:
    """The numeric model inputs of every row, as :func:`model_input` types them (float32)."""
    return pd.DataFrame(
        {
            name: np.concatenate(
                [as_float(frame[name], name).astype(np.float32) for frame in frames]
            )
            for name in names
        }
    )


def _learned_categories(frames: Sequence[pd.DataFrame], name: str) -> list[str]:
    """What ``OneHotEncoder(categories="auto")`` learns from the column: its sorted tokens."""
    distinct: set[str] = set()
    for frame in frames:
        series = frame[name]
        if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(
            series.dtype
        ):
            values = as_float(series, name)
            present = values[~np.isnan(values)]
            distinct.update(as_tokens(pd.Series(np.unique(present))).tolist())
            if len(present) < len(values):
                distinct.add(MISSING_TOKEN)
        else:
            distinct.update(as_tokens(series).tolist())
    return sorted(distinct)


def fit_preprocessor(
    frames: Sequence[pd.DataFrame],
    spec: FeatureSpec,
    featurization: Featurization,
    *,
    scale: bool,
    dense: bool,
) -> ColumnTransformer:
    """The preprocessor of :func:`cleanroom.ml.features.build_preprocessor`, fitted on every
    row of ``frames`` without building the whole-set intermediates (module docstring)."""
    learned: dict[str, list[str]] = {}
    if featurization == "article":
        for name in spec.numeric:
            if name not in spec.ranges:
                learned[name] = _learned_categories(frames, name)
    preprocessor = build_preprocessor(
        spec,
        featurization,
        scale=scale,
        dense=dense,
        categories=learned,
        sparse=sparse_design(spec, featurization, dense=dense, categories=learned),
    )
    probe = next(blocks(frames, PROBE_ROWS), None)
    if probe is None:
        raise TrainingError("no training rows")
    preprocessor.fit(model_input(probe, spec, featurization))
    if featurization == "schema" and spec.numeric:
        # Fitted in place: the transformer held by the fitted ColumnTransformer is refitted
        # on the numeric columns of every row, as the whole-frame fit would fit it.
        preprocessor.named_transformers_["numeric"].fit(_numeric_columns(frames, spec.numeric))
    return preprocessor


def design_matrix(
    preprocessor: ColumnTransformer,
    frames: Sequence[pd.DataFrame],
    spec: FeatureSpec,
    featurization: Featurization,
    *,
    compact: bool = False,
) -> Design:
    """``preprocessor.transform`` of every row of ``frames``, built :data:`BLOCK_ROWS` at a time.

    Dense output is written into one array allocated up front; sparse output is stacked
    from per-block CSR matrices. ``compact`` stores the values as float32 when that is
    exact — every block is checked, and the matrix falls back to float64 at the first block
    whose values float32 would round (the schema and article featurizations never do: their
    values are float32 scaler output, 0 and 1).
    """
    rows = sum(len(frame) for frame in frames)
    parts: list[Any] = []
    out: npt.NDArray[np.floating[Any]] | None = None
    narrow = compact
    start = 0
    for block in blocks(frames):
        x = preprocessor.transform(model_input(block, spec, featurization))
        if narrow and not _fits_float32(x):
            narrow = False
            parts = [part.astype(np.float64) for part in parts]
            if out is not None:
                out = out.astype(np.float64)
        dtype = np.float32 if narrow else x.dtype
        if sp.issparse(x):
            parts.append(sp.csr_matrix(x, dtype=dtype))
        else:
            if out is None:
                out = np.empty((rows, x.shape[1]), dtype=dtype)
            out[start : start + len(block)] = x
        start += len(block)
    if out is not None:
        return out
    stacked: Design = sp.csr_matrix(sp.vstack(parts, format="csr"))
    return stacked


def _fits_float32(x: Any) -> bool:
    """Whether every value of ``x`` (dense or sparse) is exactly a float32."""
    values = x.data if sp.issparse(x) else np.asarray(x)
    if values.dtype == np.float32:
        return True
    return bool(np.array_equal(values.astype(np.float32), values, equal_nan=True))


__all__ = [
    "BLOCK_ROWS",
    "Design",
    "blocks",
    "design_matrix",
    "fit_preprocessor",
    "sparse_design",
]

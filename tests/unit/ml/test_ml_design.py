"""The block-built design matrix is the whole-frame one, and training on blocks is exact."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.preprocessing import FunctionTransformer
from tests.unit.ml.conftest import SPEC, make_site

from cleanroom.ml import build_preprocessor, model_input, train
from cleanroom.ml import design as design_module
from cleanroom.ml.design import design_matrix, fit_preprocessor, sparse_design
from cleanroom.ml.features import FeatureSpec, labels

# One numeric column without a schema range: "article" learns its categories from the rows.
UNRANGED = replace(SPEC, ranges={k: v for k, v in SPEC.ranges.items() if k != "maxHeartRate"})


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of 37 rows, so that every frame below spans several blocks."""
    monkeypatch.setattr(design_module, "BLOCK_ROWS", 37)


def _frames() -> list[pd.DataFrame]:
    first = make_site(150, seed=1, missing=0.1)
    second = make_site(90, seed=2, missing=0.3)
    second["serumCholestoral"] = np.nan  # a site that never records a column
    return [first, second]


def _dense(x: object) -> np.ndarray:
    return x.toarray() if sp.issparse(x) else np.asarray(x)  # type: ignore[union-attr]


@pytest.mark.usefixtures("small_blocks")
@pytest.mark.parametrize(
    ("spec", "featurization", "scale", "dense"),
    [
        (SPEC, "schema", True, False),
        (SPEC, "schema", False, True),
        (SPEC, "article", True, False),
        (UNRANGED, "article", True, False),
    ],
)
@pytest.mark.parametrize("probe_lacks_a_column", [False, True])
def test_block_built_design_equals_the_whole_frame_fit(
    spec: FeatureSpec, featurization: str, scale: bool, dense: bool, probe_lacks_a_column: bool
) -> None:
    # Reversed, the structure is fitted on rows where one numeric column is always missing.
    frames = _frames()[::-1] if probe_lacks_a_column else _frames()
    whole = pd.concat(frames, ignore_index=True)
    fitted = fit_preprocessor(frames, spec, featurization, scale=scale, dense=dense)  # type: ignore[arg-type]
    built = design_matrix(fitted, frames, spec, featurization)  # type: ignore[arg-type]
    reference = build_preprocessor(
        spec,
        featurization,  # type: ignore[arg-type]
        scale=scale,
        dense=dense,
        sparse=sparse_design(spec, featurization, dense=dense),  # type: ignore[arg-type]
    ).fit_transform(model_input(whole, spec, featurization))  # type: ignore[arg-type]
    assert sp.issparse(built) == sp.issparse(reference)
    assert built.shape == reference.shape
    assert np.array_equal(_dense(built), _dense(reference))
    # And the fitted transformer scores new rows as the whole-frame fit does.
    other = model_input(make_site(50, seed=9), spec, featurization)  # type: ignore[arg-type]
    refit = clone(fitted).fit(model_input(whole, spec, featurization))  # type: ignore[arg-type]
    assert np.array_equal(_dense(fitted.transform(other)), _dense(refit.transform(other)))


def test_kind_of_design_comes_from_the_spec() -> None:
    assert not sparse_design(SPEC, "schema")  # 8 of 18 columns set in every row
    assert sparse_design(SPEC, "article")  # 8 of ~1,100 one-hot columns
    assert not sparse_design(SPEC, "article", dense=True)
    # An unranged column counts its learned categories.
    assert sparse_design(UNRANGED, "article", categories={"maxHeartRate": ["1", "2"]})


@pytest.mark.usefixtures("small_blocks")
@pytest.mark.parametrize(
    ("algorithm", "featurization"),
    [
        ("multinomial_logistic_regression", "schema"),
        ("multinomial_logistic_regression", "article"),
        ("gradient_boosted_trees", "schema"),
    ],
)
def test_training_on_blocks_is_the_whole_frame_pipeline_fit(
    algorithm: str, featurization: str
) -> None:
    """train() on several frames in small blocks = Pipeline.fit on their concatenation
    (exactly for the trees; to rounding for the block-wise L-BFGS)."""
    frames = _frames()
    whole = pd.concat(frames, ignore_index=True)
    settings = {"algorithm": algorithm, "featurization": featurization, "spec": SPEC}
    hyper = {"max_iter": 30} if algorithm == "gradient_boosted_trees" else None
    model = train(frames, hyperparameters=hyper, **settings)  # type: ignore[arg-type]
    reference = clone(model.pipeline).fit(
        model_input(whole, SPEC, featurization),  # type: ignore[arg-type]
        labels(whole, SPEC),
    )
    test = make_site(80, seed=5)
    expected = reference.predict_proba(model_input(test, SPEC, featurization))  # type: ignore[arg-type]
    if algorithm == "gradient_boosted_trees":
        assert np.array_equal(model.predict_proba(test), model.align(expected))
    else:
        # L-BFGS runs block-wise (cleanroom.ml.logistic): the same optimum, summed in
        # another order.
        assert np.allclose(model.predict_proba(test), model.align(expected), rtol=0, atol=1e-7)
    # Same rows as one frame: the same model.
    again = train(whole, hyperparameters=hyper, **settings)  # type: ignore[arg-type]
    assert np.array_equal(again.predict_proba(test), model.predict_proba(test))


@pytest.mark.usefixtures("small_blocks")
def test_scoring_in_blocks_equals_one_call() -> None:
    model = train(_frames(), spec=SPEC)
    test = make_site(200, seed=7)
    whole = model.align(model.pipeline.predict_proba(model_input(test, SPEC)))
    blocked = model.predict_proba(test)
    # The logistic model's logits are one BLAS product per block: OpenBLAS computes the
    # rows past the last multiple of its unroll with another kernel, which may round the
    # last bit differently (blocks of 37 rows here; 65,536 in production).
    assert np.allclose(blocked, whole, rtol=0, atol=1e-13)
    assert np.array_equal(np.argmax(blocked, axis=1), np.argmax(whole, axis=1))
    assert model.predict_proba(test.iloc[:0]).shape == (0, len(SPEC.classes))


def test_compact_design_is_float32_only_when_exact() -> None:
    frames = _frames()
    fitted = fit_preprocessor(frames, SPEC, "schema", scale=True, dense=False)
    compact = design_matrix(fitted, frames, SPEC, "schema", compact=True)
    full = design_matrix(fitted, frames, SPEC, "schema")
    assert compact.dtype == np.float32
    assert full.dtype == np.float64
    assert np.array_equal(compact.astype(np.float64), full)
    article = fit_preprocessor(frames, SPEC, "article", scale=True, dense=False)
    sparse = design_matrix(article, frames, SPEC, "article", compact=True)
    assert sp.issparse(sparse)
    assert sparse.dtype == np.float32


@pytest.mark.usefixtures("small_blocks")
def test_compact_design_falls_back_to_float64_when_float32_would_round() -> None:
    """A transformer whose output float32 cannot hold from the 5th block on: the blocks
    already stored as float32 are widened, and the matrix is exact."""
    frames = _frames()
    frames[0]["age"] = 50  # age / 10 = 5.0, exact in float32, for the first 150 rows
    tenth = ColumnTransformer(
        [("tenth", FunctionTransformer(lambda x: np.asarray(x, np.float64) / 10.0), ["age"])]
    ).fit(model_input(frames[0], SPEC))
    compact = design_matrix(tenth, frames, SPEC, "schema", compact=True)
    assert compact.dtype == np.float64
    whole = pd.concat(frames, ignore_index=True)
    expected = tenth.transform(model_input(whole, SPEC))
    assert not np.array_equal(expected.astype(np.float32), expected, equal_nan=True)
    assert np.array_equal(compact, expected, equal_nan=True)


def test_a_spec_without_categorical_columns_fits_in_float64() -> None:
    """Its stacked matrix is float32 (scaler output only); the fit still runs in float64."""
    numeric = replace(SPEC, categorical={})
    model = train(_frames(), spec=numeric)
    coef = model.pipeline.named_steps["model"].coef_
    assert coef.dtype == np.float64
    assert model.predict_proba(make_site(20, seed=3)).shape == (20, len(SPEC.classes))

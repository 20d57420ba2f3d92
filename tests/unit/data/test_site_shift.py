"""A model trained on one synthetic site alone does worse on the other sites than a pooled one.

Run ``pytest tests/unit/data/test_site_shift.py -q -s`` to print the table that
``docs/data.md`` quotes.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from cleanroom.data.synthetic import ARCHETYPES, generate_from_profiles, generate_sites
from cleanroom.data.uci import load_uci_sites

RECORDS = 3000
_DOC = (Path(__file__).parents[3] / "docs" / "data.md").read_text(encoding="utf-8")
NUMERIC = [
    "age",
    "sex",
    "smoker",
    "bloodPressure",
    "serumCholestoral",
    "fastingBloodSugar",
    "maxHeartRate",
]


def _model() -> Pipeline:
    features = ColumnTransformer(
        [
            (
                "chestPain",
                make_pipeline(
                    SimpleImputer(strategy="most_frequent"),
                    OneHotEncoder(handle_unknown="ignore"),
                ),
                ["chestPain"],
            ),
            # A column a site never records (cholesterol at the referral centre) is
            # dropped by the imputer for that site's own model.
            ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), NUMERIC),
        ]
    )
    return make_pipeline(features, LogisticRegression(max_iter=2000))


def _accuracy(model: Pipeline, rows: pd.DataFrame) -> float:
    return float((model.predict(rows[["chestPain", *NUMERIC]]) == rows["risk"]).mean())


def alone_vs_pooled(sites: dict[str, pd.DataFrame]) -> dict[str, tuple[float, float]]:
    """Per site: (accuracy of its own model, of the pooled model) on the other sites' test rows.

    Each site's rows are split 70/30 at random (seeded); the pooled model trains on the
    union of all training rows.
    """
    train: dict[str, pd.DataFrame] = {}
    test: dict[str, pd.DataFrame] = {}
    for index, (name, frame) in enumerate(sites.items()):
        rows = frame.astype("float64")
        in_train = np.random.default_rng(index).random(len(rows)) < 0.7
        train[name], test[name] = rows[in_train], rows[~in_train]
    pooled_rows = pd.concat(train.values())
    pooled = _model().fit(pooled_rows[["chestPain", *NUMERIC]], pooled_rows["risk"])
    result = {}
    for name in sites:
        own = _model().fit(train[name][["chestPain", *NUMERIC]], train[name]["risk"])
        others = pd.concat([test[o] for o in sites if o != name])
        result[name] = (_accuracy(own, others), _accuracy(pooled, others))
    return result


def _print_table(title: str, result: dict[str, tuple[float, float]]) -> None:
    print(f"\n{title}: accuracy on the other sites' test rows")
    print("| site | trained alone | trained on all sites | gain |")
    print("|---|---|---|---|")
    for name, (alone, pooled) in result.items():
        print(f"| {name} | {alone:.3f} | {pooled:.3f} | {pooled - alone:+.3f} |")


_IMPUTER_WARNING = "ignore:Skipping features without any observed values"


@pytest.mark.filterwarnings(_IMPUTER_WARNING)
def test_one_site_alone_is_worse_on_the_others_than_pooled() -> None:
    result = alone_vs_pooled(generate_sites(4, RECORDS, 0))
    _print_table(f"generate_sites(4, {RECORDS}, 0)", result)
    gains = [pooled - alone for alone, pooled in result.values()]
    assert sum(gain >= 0.03 for gain in gains) >= 3, gains
    assert float(np.mean(gains)) >= 0.05, gains
    # docs/data.md quotes these numbers; keep them in step (BLAS may move a few rows).
    for name, (alone, pooled) in result.items():
        quoted = re.search(rf"\| {name} \| ([0-9.]+) \| ([0-9.]+) \| [+-][0-9.]+ \|", _DOC)
        assert quoted is not None, name
        assert abs(float(quoted.group(1)) - alone) < 0.002, name
        assert abs(float(quoted.group(2)) - pooled) < 0.002, name


@pytest.mark.filterwarnings(_IMPUTER_WARNING)
def test_identical_sites_show_no_gain() -> None:
    # The control: the assertion above would fail if the generator made every site alike.
    alike = [replace(ARCHETYPES[0], name=f"copy-{i}") for i in range(4)]
    result = alone_vs_pooled(generate_from_profiles(alike, records=RECORDS, seed=0))
    _print_table("four copies of hospital-a", result)
    gains = [pooled - alone for alone, pooled in result.values()]
    assert max(abs(gain) for gain in gains) < 0.02, gains
    assert float(np.mean(gains)) < 0.01, gains


@pytest.mark.filterwarnings(_IMPUTER_WARNING)
def test_without_referral_shift_measurement_habits_still_cost_a_site() -> None:
    # Only covariate shift and measurement habits: the Hungarian-like site, whose
    # exercise protocol and assay read differently, still loses on the others.
    shifted = [replace(p, referral_severity=0.0) for p in ARCHETYPES]
    result = alone_vs_pooled(generate_from_profiles(shifted, records=RECORDS, seed=0))
    _print_table("referral_severity = 0 everywhere", result)
    alone, pooled = result["hospital-b"]
    assert pooled - alone >= 0.02


@pytest.mark.filterwarnings(_IMPUTER_WARNING)
def test_the_real_uci_sites_show_the_same_pattern() -> None:
    # Smaller and noisier (37-91 test rows per site), but the referral centre's own
    # model fails on the others here too.
    result = alone_vs_pooled(load_uci_sites())
    _print_table("UCI Heart Disease (real)", result)
    alone, pooled = result["switzerland"]
    assert pooled - alone >= 0.15
    assert float(np.mean([p - a for a, p in result.values()])) > 0.0

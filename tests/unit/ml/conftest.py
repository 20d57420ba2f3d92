"""Small MedicalRecord-shaped frames for the ml tests (fast, deterministic, with gaps)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from cleanroom.ml import FeatureSpec

SPEC = FeatureSpec(
    numeric=("age", "bloodPressure", "serumCholestoral", "maxHeartRate"),
    categorical={
        "sex": (0, 1),
        "smoker": (0, 1),
        "chestPain": (1, 2, 3, 4),
        "fastingBloodSugar": (0, 1),
    },
    label="risk",
    classes=(0, 1, 2, 3, 4),
    ranges={
        "age": (18, 110),
        "bloodPressure": (50, 260),
        "serumCholestoral": (50, 700),
        "maxHeartRate": (40, 230),
    },
)

SiteMaker = Callable[..., pd.DataFrame]


def make_site(
    rows: int, *, seed: int, age_shift: float = 0.0, missing: float = 0.05
) -> pd.DataFrame:
    """MedicalRecord-like rows whose risk depends on the features, with missing values."""
    rng = np.random.default_rng(seed)
    age = np.clip(rng.normal(55 + age_shift, 9, rows).round(), 18, 110)
    sex = rng.integers(0, 2, rows)
    smoker = rng.integers(0, 2, rows)
    chest = rng.integers(1, 5, rows)
    bp = np.clip(rng.normal(132, 17, rows).round(), 50, 260)
    chol = np.clip(rng.normal(245, 50, rows).round(), 50, 700)
    sugar = (rng.random(rows) < 0.15).astype(int)
    hr = np.clip(rng.normal(150 - (age - 55) * 0.8, 20, rows).round(), 40, 230)
    latent = (
        0.06 * (age - 55)
        + 0.8 * sex
        + 0.5 * smoker
        + 1.0 * (chest == 4)
        + 0.02 * (bp - 132)
        + 0.01 * (chol - 245)
        - 0.03 * (hr - 150)
        + rng.logistic(0, 1, rows)
    )
    risk = np.digitize(latent, [1.0, 2.2, 3.2, 4.2])
    frame = pd.DataFrame(
        {
            "risk": pd.array(risk, dtype="Int16"),
            "age": pd.array(age.astype(int), dtype="Int16"),
            "sex": pd.array(sex, dtype="Int8"),
            "smoker": pd.array(smoker, dtype="Int8"),
            "chestPain": pd.array(chest, dtype="Int16"),
            "bloodPressure": pd.array(bp.astype(int), dtype="Int16"),
            "serumCholestoral": pd.array(chol.astype(int), dtype="Int16"),
            "fastingBloodSugar": pd.array(sugar, dtype="Int8"),
            "maxHeartRate": pd.array(hr.astype(int), dtype="Int16"),
        }
    )
    for name in ("smoker", "serumCholestoral", "bloodPressure", "chestPain"):
        gaps = rng.random(rows) < missing
        frame.loc[gaps, name] = pd.NA
    return frame


@pytest.fixture
def spec() -> FeatureSpec:
    return SPEC


@pytest.fixture
def site_maker() -> SiteMaker:
    return make_site


@pytest.fixture
def sites() -> dict[str, pd.DataFrame]:
    """Three sites of different sizes and populations."""
    return {
        "hospital-a": make_site(400, seed=1, age_shift=-6),
        "hospital-b": make_site(250, seed=2, age_shift=0),
        "hospital-c": make_site(150, seed=3, age_shift=8, missing=0.15),
    }

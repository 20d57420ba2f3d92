"""The synthetic multi-site generator: determinism, schema, and how the sites differ."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from cleanroom.data.medical_record import MEDICAL_RECORD_COLUMN_NAMES, check_medical_records
from cleanroom.data.synthetic import (
    ARCHETYPES,
    LABEL_MODEL,
    SiteProfile,
    generate_from_profiles,
    generate_site,
    generate_sites,
    site_name,
    site_profiles,
)
from cleanroom.errors import ConfigurationError

N = 20_000


@pytest.fixture(scope="module")
def sites() -> dict[str, pd.DataFrame]:
    return generate_sites(4, N, 0)


def _share(series: pd.Series, value: int) -> float:
    return float((series.dropna() == value).mean())


def test_names() -> None:
    assert [site_name(i) for i in (0, 1, 25, 26, 27, 701, 702)] == [
        "hospital-a",
        "hospital-b",
        "hospital-z",
        "hospital-aa",
        "hospital-ab",
        "hospital-zz",
        "hospital-aaa",
    ]
    assert [p.name for p in site_profiles(6, seed=3)] == [site_name(i) for i in range(6)]


def test_frames_are_valid_medical_records(sites: dict[str, pd.DataFrame]) -> None:
    assert list(sites) == ["hospital-a", "hospital-b", "hospital-c", "hospital-d"]
    for frame in sites.values():
        assert len(frame) == N
        assert tuple(frame.columns) == MEDICAL_RECORD_COLUMN_NAMES
        check_medical_records(frame)
        assert set(frame["risk"].unique()) == {0, 1, 2, 3, 4}


def test_deterministic_by_seed_and_independent_of_party_count() -> None:
    first = generate_sites(3, 500, 7)
    again = generate_sites(3, 500, 7)
    more = generate_sites(6, 500, 7)
    other = generate_sites(3, 500, 8)
    for name, frame in first.items():
        pd.testing.assert_frame_equal(frame, again[name])
        pd.testing.assert_frame_equal(frame, more[name])
        assert not frame.equals(other[name])
    assert not first["hospital-a"].equals(first["hospital-b"])
    # Perturbed sites beyond the four archetypes depend on the seed, not on N.
    assert site_profiles(6, seed=7)[5] == site_profiles(9, seed=7)[5]
    assert site_profiles(6, seed=7)[5] != site_profiles(6, seed=8)[5]


def test_cleveland_like_site_matches_uci_cleveland(sites: dict[str, pd.DataFrame]) -> None:
    a = sites["hospital-a"]
    # UCI Cleveland: 54/18/12/12/4 % by num; 46 % any disease; mean age 54.4; 68 % men.
    mix = a["risk"].value_counts(normalize=True).sort_index().to_numpy()
    np.testing.assert_allclose(mix, [0.54, 0.18, 0.12, 0.12, 0.04], atol=0.015)
    assert abs(float(a["age"].mean()) - 54.4) < 0.5
    assert abs(float(a["sex"].mean()) - 0.68) < 0.02
    assert abs(_share(a["chestPain"], 4) - 0.47) < 0.02
    assert abs(float(a["bloodPressure"].mean()) - 131.7) < 2
    assert abs(float(a["serumCholestoral"].mean()) - 246.7) < 8
    assert abs(float(a["maxHeartRate"].mean()) - 149.6) < 3


def test_sites_differ_in_what_they_see_and_how_they_measure(
    sites: dict[str, pd.DataFrame],
) -> None:
    a, b, c, d = sites.values()
    # Prevalence follows the case mix: low at the young-adult clinic, high at the
    # referral and geriatric centres (UCI: Cleveland 46 %, Hungarian 36 %, Switzerland
    # 93 %, VA 74 %; the order, not the values).
    prevalence = {name: float((f["risk"] > 0).mean()) for name, f in sites.items()}
    assert prevalence["hospital-b"] < 0.3 < 0.4 < prevalence["hospital-a"] < 0.5
    assert min(prevalence["hospital-c"], prevalence["hospital-d"]) > 0.7
    # Narrow age bands at two sites, the whole range at the general clinic.
    assert (int(b["age"].min()), int(b["age"].max())) == (25, 50)
    assert (int(d["age"].min()), int(d["age"].max())) == (62, 85)
    assert int(a["age"].min()) <= 30
    assert int(a["age"].max()) >= 78
    assert float(d["sex"].mean()) > 0.95 > 0.75 > float(a["sex"].mean()) > float(b["sex"].mean())
    # Referral pattern: the referral centre sees mostly asymptomatic chest pain and poor
    # exercise capacity.
    assert _share(c["chestPain"], 4) > 0.75
    assert _share(b["chestPain"], 2) > 0.35 > 0.2 > _share(a["chestPain"], 2)
    capacity = {n: float((f["maxHeartRate"] / (220 - f["age"])).mean()) for n, f in sites.items()}
    assert capacity["hospital-c"] < capacity["hospital-a"] - 0.1
    # Measurement habits: rounding, one lab's offset, and what goes unrecorded.
    tens = {n: float((f["bloodPressure"].dropna() % 10 == 0).mean()) for n, f in sites.items()}
    assert tens["hospital-b"] > 0.8 > 0.6 > tens["hospital-a"]
    assert bool(c["serumCholestoral"].isna().all())
    assert float(a["serumCholestoral"].isna().mean()) == 0.0
    assert 0.55 < float(c["fastingBloodSugar"].isna().mean()) < 0.67
    for col in ("bloodPressure", "serumCholestoral", "maxHeartRate"):
        assert 0.2 < float(d[col].isna().mean()) < 0.3, col
    # The label is never missing, and smoking status is sometimes unknown.
    assert all(not f["risk"].isna().any() for f in sites.values())
    assert all(f["smoker"].isna().any() for f in sites.values())


def test_the_label_follows_the_clinical_model(sites: dict[str, pd.DataFrame]) -> None:
    a = sites["hospital-a"].astype("float64")
    sick = a["risk"] > 0
    assert float(sick[a["chestPain"] == 4].mean()) > float(sick[a["chestPain"] == 2].mean()) + 0.3
    assert float(sick[a["sex"] == 1].mean()) > float(sick[a["sex"] == 0].mean()) + 0.15
    assert float(a["maxHeartRate"][sick].mean()) < float(a["maxHeartRate"][~sick].mean()) - 5
    assert float(sick[a["smoker"] == 1].mean()) > float(sick[a["smoker"] == 0].mean())
    assert float(sick[a["age"] >= 60].mean()) > float(sick[a["age"] < 50].mean()) + 0.1
    # Non-linear: poor exercise capacity relative to 220 - age weighs heavily, and
    # cholesterol matters only above 240.
    capacity = a["maxHeartRate"] / (220 - a["age"])
    assert float(sick[capacity < 0.7].mean()) > float(sick[capacity > 0.9].mean()) + 0.3
    chol = a["serumCholestoral"]
    low = float(sick[chol.between(150, 190)].mean())
    mid = float(sick[chol.between(200, 240)].mean())
    high = float(sick[chol > 300].mean())
    assert abs(mid - low) < 0.05 < high - mid
    # The label is noisy, and the knob the archetypes leave at 0 shifts it.
    sicker = generate_site(
        replace(ARCHETYPES[0], referral_severity=2.0), records=N, rng=np.random.default_rng(0)
    )
    assert float((sicker["risk"] > 0).mean()) > float(sick.mean()) + 0.25


def test_every_site_shares_one_clinical_truth() -> None:
    for profile in site_profiles(12, seed=0):
        assert profile.referral_severity == 0.0, profile.name
        assert profile.heart_rate_scale == 1.0, profile.name
        assert abs(profile.bp_bias) < 10, profile.name
        assert abs(profile.cholesterol_bias) < 20, profile.name


def test_more_sites_vary_around_the_archetypes() -> None:
    profiles = site_profiles(12, seed=0)
    assert len({p.age_mean for p in profiles}) == 12
    for profile in profiles[4:]:
        base = ARCHETYPES[ord(profile.name[-1]) % 4 - ord("a") % 4]
        assert abs(profile.age_mean - base.age_mean) < 15
        # A narrow site stays narrow.
        assert profile.age_max - profile.age_min <= base.age_max - base.age_min + 1e-9
    frames = generate_sites(12, 300, 0)
    assert len(frames) == 12
    for frame, profile in zip(frames.values(), profiles, strict=True):
        check_medical_records(frame)
        assert (
            profile.age_min
            <= float(frame["age"].min())
            <= float(frame["age"].max())
            <= profile.age_max
        )


def test_large_site_is_vectorized() -> None:
    frame = generate_sites(1, 100_000, 0)["hospital-a"]
    assert len(frame) == 100_000
    check_medical_records(frame)


@pytest.mark.parametrize(
    "change",
    [
        {"male_fraction": 1.5},
        {"missing_cholesterol": -0.1},
        {"chest_pain_mix": (0.5, 0.5, 0.5, 0.5)},
        {"chest_pain_mix": (1.2, -0.2, 0.0, 0.0)},
        {"age_sd": 0.0},
        {"fasting_sugar_rate": 0.0},
        {"heart_rate_scale": 3.0},
        {"age_min": 60.0, "age_max": 50.0},
        {"age_min": 10.0},
        {"age_mean": 30.0, "age_sd": 2.0, "age_min": 60.0, "age_max": 90.0},
        {"name": "../escape"},
    ],
)
def test_bad_profiles_are_refused(change: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        SiteProfile(**{"name": "x", **change})  # type: ignore[arg-type]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ConfigurationError):
        generate_sites(0, 10, 0)
    with pytest.raises(ConfigurationError):
        generate_sites(2, 0, 0)
    with pytest.raises(ConfigurationError):
        generate_sites(2, 10, -1)
    with pytest.raises(ConfigurationError, match="unique"):
        generate_from_profiles([ARCHETYPES[0], ARCHETYPES[0]], records=10, seed=0)
    with pytest.raises(ConfigurationError):
        generate_from_profiles([], records=10, seed=0)


def test_label_model_thresholds_are_ordered() -> None:
    assert list(LABEL_MODEL.thresholds) == sorted(LABEL_MODEL.thresholds)

"""Synthetic MedicalRecords for N hospitals: one clinical truth, different patients.

Every site labels its patients with the same clinical model, :data:`LABEL_MODEL`: an
ordinal logistic model of a latent severity with non-linear terms (risk accelerating
after 55, men's excess risk shrinking after menopause, chest pain type telling more in
older patients, hypertension and cholesterol mattering only above a level, diabetes
weighing more with age, poor exercise capacity relative to 220 − age). What differs
between sites is what they *see* and how they *measure*: age and sex mix (a young-adult
clinic and a geriatric centre see narrow age bands), referral pattern (chest pain mix,
exercise capacity, diabetes and blood pressure of the patients sent), and recording
habits (blood pressure rounded to 10 mm Hg, cholesterol or fasting sugar not measured,
one lab's small calibration offset). Prevalence differs because the case mix does.

So a model trained on one site learns the truth only over that site's part of the input
space and extrapolates badly to the others, while a model trained on all sites learns
it everywhere — and, since the truth is shared, it loses nothing on any one site's own
patients. ``docs/data.md`` gives the equations, the parameters and the measured gains.

:class:`SiteProfile` still has the knobs that break the shared truth
(``referral_severity``, ``heart_rate_scale``, large ``bp_bias``/``cholesterol_bias``);
the archetypes leave them at zero, and ``tests/unit/data/test_site_shift.py`` shows what
they do (a pooled model without a site feature then loses on the shifted site).

Everything is vectorized numpy; a site of 100,000 records takes a fraction of a second.
Determinism: site ``k`` (0-based) of ``generate_sites(parties, records, seed)`` depends
only on ``(k, records, seed)``, not on ``parties``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from cleanroom.data.files import check_site_name
from cleanroom.data.medical_record import MEDICAL_RECORD_COLUMNS, check_medical_records
from cleanroom.errors import ConfigurationError

_Float = npt.NDArray[np.float64]
_Bool = npt.NDArray[np.bool_]

# Bounds every generated age stays in (a site may narrow them).
_AGE_FLOOR: Final = 18.0
_AGE_CEILING: Final = 95.0


@dataclass(frozen=True, kw_only=True)
class LabelModel:
    """The shared clinical model: latent severity → ``risk`` 0..4 (ordinal logistic).

    ``severity = Σ coefficient × term + site.referral_severity + N(0, heterogeneity²)``
    and ``risk = #{k : severity + Logistic(0, 1) > thresholds[k]}``, on the patient's
    *true* values. The terms are listed in ``docs/data.md``; coefficients are on the
    latent (log-odds) scale, near an ordinal logistic fit to the pooled UCI data for
    the linear parts, and the thresholds were calibrated so that the general clinic
    (hospital-a) has UCI Cleveland's label mix (54 / 18 / 12 / 12 / 4 %).
    """

    age_per_decade: float = 0.20
    age_over_55_per_decade: float = 0.70  # risk accelerates after 55 ...
    acceleration_ends_at: float = 70.0  # ... until 70 (the very old are survivors)
    male: float = 1.40
    female_post_menopause_per_decade: float = 0.70  # per decade of a woman's age over 50
    smoker: float = 0.50
    chest_pain: tuple[float, float, float, float] = (0.0, -1.30, -0.30, 1.10)  # codes 1..4
    female_chest_pain_scale: float = 0.5  # chest pain type predicts less in women
    chest_pain_age_per_decade: float = 0.15  # ... and more in older patients (floor 0.2)
    interactions_age_cap: float = 70.0  # the age interactions stop growing here
    bp_per_20: float = 0.10
    hypertension_per_20: float = 0.45  # per 20 mm Hg above 140
    cholesterol_level: float = 240.0  # cholesterol matters only above this
    cholesterol_over_level_per_50: float = 0.45
    fasting_sugar: float = 0.45
    fasting_sugar_age_per_decade: float = 0.25  # diabetes weighs more with age (floor 0)
    heart_rate_per_20: float = -0.20
    chronotropic_incompetence: float = 7.0  # per unit of (0.85 - HR / (220 - age)) when positive
    heterogeneity: float = 0.5
    thresholds: tuple[float, float, float, float] = (2.43, 3.57, 4.57, 6.50)


#: The label model every synthetic site uses.
LABEL_MODEL: Final = LabelModel()


_FRACTION_FIELDS: Final = (
    "male_fraction",
    "smoker_rate",
    "fasting_sugar_rate",
    "bp_round_to_10",
    "missing_smoker",
    "missing_blood_pressure",
    "missing_cholesterol",
    "missing_fasting_sugar",
    "missing_heart_rate",
)


def _normal_cdf(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


@dataclass(frozen=True, kw_only=True)
class SiteProfile:
    """How one hospital's patients and records look.

    Population: age ~ Normal(``age_mean``, ``age_sd``) truncated to
    [``age_min``, ``age_max``] (years; a narrow band for a young-adult clinic or a
    geriatric centre), ``male_fraction``, ``smoker_rate`` (among men; women smoke at 0.6
    times it), ``chest_pain_mix`` (probabilities of codes 1..4: the referral pattern),
    ``fasting_sugar_rate`` (at age 55), ``bp_shift`` and ``cholesterol_shift`` (added to
    everyone's true value), ``heart_rate_fraction`` (mean of max heart rate / (220 −
    age): the exercise capacity of the patients referred). Habits: ``bp_bias`` and
    ``cholesterol_bias`` (added to the recorded value: the device, the assay's
    calibration), ``bp_round_to_10`` (fraction of blood pressures written to the nearest
    10; the rest to the nearest 1) and the ``missing_*`` fractions (missing completely
    at random). The label follows the *true* values; the file holds the *recorded* ones.

    Two knobs break the shared clinical truth and are 0 / 1 in every archetype:
    ``referral_severity`` (a latent shift from findings not in the record) and
    ``heart_rate_scale`` (recorded / true max heart rate, e.g. a bicycle protocol).

    Raises:
        ConfigurationError: a fraction is outside [0, 1], the chest pain mix does not
            sum to 1, the age band holds almost none of the age distribution, or the
            name is not a usable site name.
    """

    name: str
    description: str = ""
    age_mean: float = 54.4
    age_sd: float = 9.0
    age_min: float = 28.0
    age_max: float = 80.0
    male_fraction: float = 0.68
    smoker_rate: float = 0.45
    chest_pain_mix: tuple[float, float, float, float] = (0.08, 0.17, 0.28, 0.47)
    fasting_sugar_rate: float = 0.15
    bp_shift: float = 0.0
    cholesterol_shift: float = 0.0
    heart_rate_fraction: float = 0.90
    referral_severity: float = 0.0
    heart_rate_scale: float = 1.0
    bp_bias: float = 0.0
    cholesterol_bias: float = 0.0
    bp_round_to_10: float = 0.49
    missing_smoker: float = 0.03
    missing_blood_pressure: float = 0.0
    missing_cholesterol: float = 0.0
    missing_fasting_sugar: float = 0.0
    missing_heart_rate: float = 0.0

    def __post_init__(self) -> None:
        check_site_name(self.name)
        for attr in _FRACTION_FIELDS:
            value = getattr(self, attr)
            if not 0.0 <= value <= 1.0:
                raise ConfigurationError(f"{attr} must be in [0, 1]")
        if len(self.chest_pain_mix) != 4 or min(self.chest_pain_mix) < 0:
            raise ConfigurationError("chest_pain_mix needs four non-negative probabilities")
        if not math.isclose(sum(self.chest_pain_mix), 1.0, abs_tol=1e-6):
            raise ConfigurationError("chest_pain_mix must sum to 1")
        if not 0.0 < self.fasting_sugar_rate < 1.0:
            raise ConfigurationError("fasting_sugar_rate must be strictly between 0 and 1")
        if self.age_sd <= 0:
            raise ConfigurationError("age_sd must be positive")
        if not _AGE_FLOOR <= self.age_min < self.age_max <= _AGE_CEILING:
            raise ConfigurationError(
                f"need {_AGE_FLOOR:.0f} <= age_min < age_max <= {_AGE_CEILING:.0f}"
            )
        if self.age_band_mass < 0.05:
            raise ConfigurationError("the age band holds under 5 % of the age distribution")
        if not (0.3 <= self.heart_rate_fraction <= 1.2 and 0.5 <= self.heart_rate_scale <= 1.5):
            raise ConfigurationError("heart_rate_fraction or heart_rate_scale is implausible")

    @property
    def age_band_mass(self) -> float:
        """The share of Normal(``age_mean``, ``age_sd``) inside [``age_min``, ``age_max``]."""
        high = _normal_cdf((self.age_max + 0.5 - self.age_mean) / self.age_sd)
        low = _normal_cdf((self.age_min - 0.5 - self.age_mean) / self.age_sd)
        return high - low


#: The four archetypes the first four sites follow, loosely modelled on the UCI institutions.
ARCHETYPES: Final[tuple[SiteProfile, ...]] = (
    SiteProfile(
        name="hospital-a",
        description="general cardiology clinic (Cleveland-like): mixed referrals, all ages, "
        "complete records",
    ),
    SiteProfile(
        name="hospital-b",
        description="young-adult outpatient clinic (Hungarian-like): ages 25-50, many women "
        "and atypical angina, low prevalence, blood pressure mostly rounded to 10",
        age_mean=40.0,
        age_sd=7.0,
        age_min=25.0,
        age_max=50.0,
        male_fraction=0.60,
        smoker_rate=0.40,
        chest_pain_mix=(0.05, 0.40, 0.30, 0.25),
        fasting_sugar_rate=0.07,
        cholesterol_shift=-10.0,
        heart_rate_fraction=0.92,
        bp_round_to_10=0.85,
        missing_smoker=0.10,
        missing_cholesterol=0.08,
        missing_fasting_sugar=0.03,
    ),
    SiteProfile(
        name="hospital-c",
        description="tertiary referral centre (Switzerland-like): men sent for angiography, "
        "mostly asymptomatic chest pain, poor exercise capacity, cholesterol never recorded",
        age_mean=58.0,
        age_sd=8.0,
        male_fraction=0.92,
        smoker_rate=0.45,
        chest_pain_mix=(0.03, 0.03, 0.14, 0.80),
        fasting_sugar_rate=0.20,
        bp_shift=8.0,
        heart_rate_fraction=0.76,
        bp_round_to_10=0.50,
        missing_smoker=0.15,
        missing_blood_pressure=0.02,
        missing_cholesterol=1.0,
        missing_fasting_sugar=0.61,
        missing_heart_rate=0.01,
    ),
    SiteProfile(
        name="hospital-d",
        description="geriatric veterans' centre (VA Long Beach-like): ages 62-85, men, heavy "
        "smoking, diabetes, a lab that reads cholesterol 8 mg/dl low, a quarter of the "
        "measurements missing",
        age_mean=70.0,
        age_sd=6.0,
        age_min=62.0,
        age_max=85.0,
        male_fraction=0.97,
        smoker_rate=0.55,
        chest_pain_mix=(0.06, 0.10, 0.28, 0.56),
        fasting_sugar_rate=0.30,
        bp_shift=-4.0,
        cholesterol_shift=-5.0,
        heart_rate_fraction=0.84,
        cholesterol_bias=-8.0,
        bp_round_to_10=0.48,
        missing_smoker=0.05,
        missing_blood_pressure=0.25,
        missing_cholesterol=0.25,
        missing_fasting_sugar=0.04,
        missing_heart_rate=0.25,
    ),
)


def site_name(index: int) -> str:
    """The name of site ``index`` (0-based): ``hospital-a`` … ``hospital-z``, ``hospital-aa`` …"""
    if index < 0:
        raise ConfigurationError("site index must be non-negative")
    letters = ""
    number = index + 1
    while number:
        number, rest = divmod(number - 1, 26)
        letters = chr(ord("a") + rest) + letters
    return f"hospital-{letters}"


def _profile_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, index)))


def _records_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0, index)))


def site_profiles(parties: int, *, seed: int = 0) -> tuple[SiteProfile, ...]:
    """The profiles of the first ``parties`` sites.

    Sites a–d are :data:`ARCHETYPES`; site ``k ≥ 4`` perturbs archetype ``k mod 4`` with
    a generator seeded by ``(seed, k)``, so it does not depend on ``parties``.

    Raises:
        ConfigurationError: ``parties`` is below 1 or ``seed`` is negative.
    """
    if parties < 1:
        raise ConfigurationError("parties must be at least 1")
    if seed < 0:
        raise ConfigurationError("seed must be non-negative")
    return tuple(_profile(k, seed) for k in range(parties))


def _profile(index: int, seed: int) -> SiteProfile:
    base = ARCHETYPES[index % len(ARCHETYPES)]
    if index < len(ARCHETYPES):
        return base
    rng = _profile_rng(seed, index)

    def frac(value: float, spread: float, low: float = 0.0, high: float = 1.0) -> float:
        return float(np.clip(value + rng.normal(0.0, spread), low, high))

    def rate(value: float) -> float:
        # Missingness and prevalence scale multiplicatively; an all-missing column stays so.
        return value if value >= 1.0 else float(np.clip(value * rng.uniform(0.5, 1.5), 0, 0.9))

    mix = rng.dirichlet(np.asarray(base.chest_pain_mix) * 60.0 + 0.5)
    # The age band moves with the mean, so a narrow site stays narrow.
    age_move = float(rng.normal(0.0, 3.0))
    return replace(
        base,
        name=site_name(index),
        description=f"variation on {base.name}: {base.description.split(':')[0]}",
        age_mean=base.age_mean + age_move,
        age_sd=base.age_sd * rng.uniform(0.9, 1.1),
        age_min=float(np.clip(base.age_min + age_move, _AGE_FLOOR, base.age_max - 10.0)),
        age_max=float(np.clip(base.age_max + age_move, base.age_min + 10.0, _AGE_CEILING)),
        male_fraction=frac(base.male_fraction, 0.08, 0.3, 0.99),
        smoker_rate=frac(base.smoker_rate, 0.08, 0.05, 0.8),
        chest_pain_mix=(float(mix[0]), float(mix[1]), float(mix[2]), float(mix[3])),
        fasting_sugar_rate=rate(base.fasting_sugar_rate),
        bp_shift=base.bp_shift + rng.normal(0.0, 3.0),
        cholesterol_shift=base.cholesterol_shift + rng.normal(0.0, 8.0),
        heart_rate_fraction=frac(base.heart_rate_fraction, 0.03, 0.6, 1.0),
        cholesterol_bias=base.cholesterol_bias + rng.normal(0.0, 3.0),
        bp_round_to_10=float(rng.uniform(0.3, 0.9)),
        missing_smoker=rate(base.missing_smoker),
        missing_blood_pressure=rate(base.missing_blood_pressure),
        missing_cholesterol=rate(base.missing_cholesterol),
        missing_fasting_sugar=rate(base.missing_fasting_sugar),
        missing_heart_rate=rate(base.missing_heart_rate),
    )


def _expit(x: _Float) -> _Float:
    return 1.0 / (1.0 + np.exp(-x))


def latent_severity(
    *,
    age: _Float,
    male: _Bool,
    smoker: _Bool,
    chest_pain: npt.NDArray[np.int64],
    blood_pressure: _Float,
    cholesterol: _Float,
    fasting_sugar: _Bool,
    heart_rate: _Float,
    model: LabelModel = LABEL_MODEL,
) -> _Float:
    """The deterministic part of the latent severity for true (unrounded, complete) values.

    The same for every site. The site's ``referral_severity`` (0 in the archetypes) and
    the noise are added by the generator.
    """
    female = ~male
    decades = (age - 55.0) / 10.0
    capped = (np.minimum(age, model.interactions_age_cap) - 55.0) / 10.0
    hr_fraction = heart_rate / (220.0 - age)
    chest_pain_weight = np.where(male, 1.0, model.female_chest_pain_scale) * np.maximum(
        0.2, 1.0 + model.chest_pain_age_per_decade * capped
    )
    sugar_weight = np.maximum(
        0.0, model.fasting_sugar + model.fasting_sugar_age_per_decade * capped
    )
    severity = (
        model.age_per_decade * decades
        + model.age_over_55_per_decade
        * np.clip(age - 55.0, 0.0, model.acceleration_ends_at - 55.0)
        / 10.0
        + model.male * male
        + model.female_post_menopause_per_decade * female * np.maximum(0.0, age - 50.0) / 10.0
        + model.smoker * smoker
        + np.asarray(model.chest_pain)[chest_pain - 1] * chest_pain_weight
        + model.bp_per_20 * (blood_pressure - 130.0) / 20.0
        + model.hypertension_per_20 * np.maximum(0.0, blood_pressure - 140.0) / 20.0
        + model.cholesterol_over_level_per_50
        * np.maximum(0.0, cholesterol - model.cholesterol_level)
        / 50.0
        + sugar_weight * fasting_sugar
        + model.heart_rate_per_20 * (heart_rate - 150.0) / 20.0
        + model.chronotropic_incompetence * np.maximum(0.0, 0.85 - hr_fraction)
    )
    return np.asarray(severity, dtype=np.float64)


def _ages(profile: SiteProfile, n: int, rng: np.random.Generator) -> _Float:
    """Whole years from Normal(age_mean, age_sd) truncated to the site's band (by rejection)."""
    kept: list[_Float] = []
    have = 0
    batch = max(64, math.ceil(1.2 * n / profile.age_band_mass))
    while have < n:
        draw = np.rint(rng.normal(profile.age_mean, profile.age_sd, batch))
        draw = draw[(draw >= profile.age_min) & (draw <= profile.age_max)]
        kept.append(draw)
        have += draw.size
    return np.concatenate(kept)[:n]


def generate_site(
    profile: SiteProfile,
    *,
    records: int,
    rng: np.random.Generator,
    model: LabelModel = LABEL_MODEL,
) -> pd.DataFrame:
    """``records`` MedicalRecords of one site, drawn with ``rng``.

    Raises:
        ConfigurationError: ``records`` is below 1.
    """
    if records < 1:
        raise ConfigurationError("records must be at least 1")
    n = records
    age = _ages(profile, n, rng)
    male = rng.random(n) < profile.male_fraction
    smoker = rng.random(n) < profile.smoker_rate * np.where(male, 1.0, 0.6)
    chest_pain = rng.choice(4, size=n, p=np.asarray(profile.chest_pain_mix)) + 1
    sugar_logit = math.log(profile.fasting_sugar_rate / (1.0 - profile.fasting_sugar_rate))
    fasting_sugar = rng.random(n) < _expit(sugar_logit + 0.04 * (age - 55.0))
    blood_pressure = np.clip(
        131.0
        + profile.bp_shift
        + 0.5 * (age - 55.0)
        + 5.0 * fasting_sugar
        + rng.normal(0.0, 16.0, n),
        85.0,
        220.0,
    )
    cholesterol = np.clip(
        (238.0 + profile.cholesterol_shift + 0.6 * (age - 55.0) + 15.0 * ~male)
        * np.exp(rng.normal(-0.018, 0.19, n)),
        110.0,
        600.0,
    )
    heart_rate = np.clip(
        (220.0 - age) * (profile.heart_rate_fraction + rng.normal(0.0, 0.12, n)) - 3.0 * smoker,
        60.0,
        205.0,
    )
    severity = (
        latent_severity(
            age=age,
            male=male,
            smoker=smoker,
            chest_pain=chest_pain,
            blood_pressure=blood_pressure,
            cholesterol=cholesterol,
            fasting_sugar=fasting_sugar,
            heart_rate=heart_rate,
            model=model,
        )
        + profile.referral_severity
        + rng.normal(0.0, model.heterogeneity, n)
        + rng.logistic(0.0, 1.0, n)
    )
    risk = np.searchsorted(np.asarray(model.thresholds), severity, side="left")

    # What the site writes down: its rounding habit, then what it did not measure.
    bp_measured = np.clip(blood_pressure + profile.bp_bias, 85.0, 220.0)
    rounded = rng.random(n) < profile.bp_round_to_10
    bp_recorded = np.where(rounded, np.rint(bp_measured / 10.0) * 10.0, np.rint(bp_measured))
    chol_recorded = np.rint(np.clip(cholesterol + profile.cholesterol_bias, 100.0, 600.0))
    hr_recorded = np.rint(np.clip(heart_rate * profile.heart_rate_scale, 60.0, 205.0))

    def unmeasured(values: _Float, fraction: float) -> _Float:
        return np.where(rng.random(n) < fraction, np.nan, values)

    columns: dict[str, _Float] = {
        "risk": risk.astype(np.float64),
        "age": age,
        "sex": male.astype(np.float64),
        "smoker": unmeasured(smoker.astype(np.float64), profile.missing_smoker),
        "chestPain": chest_pain.astype(np.float64),
        "bloodPressure": unmeasured(bp_recorded, profile.missing_blood_pressure),
        "serumCholestoral": unmeasured(chol_recorded, profile.missing_cholesterol),
        "fastingBloodSugar": unmeasured(
            fasting_sugar.astype(np.float64), profile.missing_fasting_sugar
        ),
        "maxHeartRate": unmeasured(hr_recorded, profile.missing_heart_rate),
    }
    frame = pd.DataFrame(
        {c.name: pd.Series(columns[c.name]).astype(c.pandas_dtype) for c in MEDICAL_RECORD_COLUMNS}
    )
    check_medical_records(frame)
    return frame


def generate_from_profiles(
    profiles: Sequence[SiteProfile],
    *,
    records: int,
    seed: int,
    model: LabelModel = LABEL_MODEL,
) -> dict[str, pd.DataFrame]:
    """``records`` MedicalRecords per profile; profile ``k`` uses a generator seeded ``(seed, k)``.

    Raises:
        ConfigurationError: no profiles, duplicate names, ``records`` below 1 or a
            negative seed.
    """
    if not profiles:
        raise ConfigurationError("at least one site profile is needed")
    if len({p.name for p in profiles}) != len(profiles):
        raise ConfigurationError("site names must be unique")
    if seed < 0:
        raise ConfigurationError("seed must be non-negative")
    return {
        profile.name: generate_site(
            profile, records=records, rng=_records_rng(seed, index), model=model
        )
        for index, profile in enumerate(profiles)
    }


def generate_sites(parties: int, records: int, seed: int) -> dict[str, pd.DataFrame]:
    """``records`` synthetic MedicalRecords for each of ``parties`` hospitals, by site name.

    Deterministic in ``(parties, records, seed)``; site ``k`` depends only on
    ``(k, records, seed)``. Example::

        sites = generate_sites(4, 3000, seed=0)   # hospital-a … hospital-d

    Raises:
        ConfigurationError: ``parties`` or ``records`` below 1, or a negative seed.
    """
    return generate_from_profiles(site_profiles(parties, seed=seed), records=records, seed=seed)


__all__ = [
    "ARCHETYPES",
    "LABEL_MODEL",
    "LabelModel",
    "SiteProfile",
    "generate_from_profiles",
    "generate_site",
    "generate_sites",
    "latent_severity",
    "site_name",
    "site_profiles",
]

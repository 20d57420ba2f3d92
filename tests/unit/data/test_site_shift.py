"""Pooling the synthetic hospitals helps every one of them; identical sites gain nothing.

Each site trains on its own records, one pooled model trains on all of them, and both
are scored on a large fresh sample of each site's patients (same profiles, another
seed), so that differences of a few tenths of a point are measured, not split noise.
The models are the clean room's own (:mod:`cleanroom.ml`: the ``"schema"``
featurization, default hyperparameters).

``pytest tests/unit/data/test_site_shift.py -q -s`` prints the tables that
``docs/data.md`` quotes; ``python tests/unit/data/test_site_shift.py 100000`` measures
the same at 100,000 records per site (minutes, not run by the test suite).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest

from cleanroom.data.synthetic import ARCHETYPES, generate_from_profiles, generate_sites
from cleanroom.data.uci import load_uci_sites
from cleanroom.ml import medical_record_spec, train, train_test_split

RECORDS = 3000
TEST_RECORDS = 10_000
TEST_SEED = 10_000  # the fresh test patients: same profiles, another seed
LR = "multinomial_logistic_regression"
GBT = "gradient_boosted_trees"
_DOC = (Path(__file__).parents[3] / "docs" / "data.md").read_text(encoding="utf-8")


@dataclass(frozen=True)
class Outcome:
    """Micro accuracies of a site's own model and of the pooled model."""

    own_on_own: float
    pooled_on_own: float
    own_on_all: float
    pooled_on_all: float

    @property
    def gain_on_own(self) -> float:
        return self.pooled_on_own - self.own_on_own

    @property
    def gain_on_all(self) -> float:
        return self.pooled_on_all - self.own_on_all


def own_vs_pooled(
    train_sites: Mapping[str, pd.DataFrame],
    test_sites: Mapping[str, pd.DataFrame],
    *,
    algorithm: str,
) -> dict[str, Outcome]:
    """Per site: its own model and the pooled one, on its test rows and on all test rows.

    Accuracy is micro accuracy (``cleanroom.ml.evaluate``'s): each model predicts all test
    rows once, and the site's own rows are a slice of them.
    """
    spec = medical_record_spec()
    all_test = pd.concat(list(test_sites.values()), ignore_index=True)
    truth = all_test["risk"].to_numpy(dtype=np.int64)
    site = np.repeat(np.arange(len(test_sites)), [len(f) for f in test_sites.values()])

    def correct(rows: pd.DataFrame) -> npt.NDArray[np.bool_]:
        return np.asarray(train(rows, spec=spec, algorithm=algorithm).predict(all_test) == truth)

    pooled = correct(pd.concat(list(train_sites.values()), ignore_index=True))
    result = {}
    for index, (name, rows) in enumerate(train_sites.items()):
        own = correct(rows)
        mine = site == index
        result[name] = Outcome(
            own_on_own=float(own[mine].mean()),
            pooled_on_own=float(pooled[mine].mean()),
            own_on_all=float(own.mean()),
            pooled_on_all=float(pooled.mean()),
        )
    return result


def table(title: str, result: Mapping[str, Outcome]) -> str:
    """The markdown table docs/data.md quotes."""
    lines = [
        f"| {title} | own, own rows | pooled, own rows | gain "
        "| own, all rows | pooled, all rows | gain |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, o in result.items():
        lines.append(
            f"| {name} | {o.own_on_own:.3f} | {o.pooled_on_own:.3f} | {o.gain_on_own:+.3f} "
            f"| {o.own_on_all:.3f} | {o.pooled_on_all:.3f} | {o.gain_on_all:+.3f} |"
        )
    return "\n".join(lines)


def _quoted(title: str, result: Mapping[str, Outcome]) -> None:
    # docs/data.md quotes these tables; keep them in step (BLAS may move a few rows).
    start = _DOC.find(f"| {title} |")
    assert start >= 0, title
    block = _DOC[start : _DOC.find("\n\n", start)]
    for name, o in result.items():
        row = re.search(rf"\| {name} \| ([0-9.]+) \| ([0-9.]+) \| [^|]+\| ([0-9.]+) \|", block)
        assert row is not None, (title, name)
        assert abs(float(row.group(1)) - o.own_on_own) < 0.002, (title, name)
        assert abs(float(row.group(2)) - o.pooled_on_own) < 0.002, (title, name)
        assert abs(float(row.group(3)) - o.own_on_all) < 0.002, (title, name)


@pytest.fixture(scope="module")
def test_sites() -> dict[str, pd.DataFrame]:
    return generate_sites(4, TEST_RECORDS, TEST_SEED)


@pytest.fixture(scope="module")
def train_sites() -> dict[str, pd.DataFrame]:
    return generate_sites(4, RECORDS, 0)


def test_pooled_logistic_regression_helps_every_site(
    train_sites: dict[str, pd.DataFrame], test_sites: dict[str, pd.DataFrame]
) -> None:
    result = own_vs_pooled(train_sites, test_sites, algorithm=LR)
    print("\n" + table(f"LR, {RECORDS:,} per site", result))
    # (a) On everyone's patients the pooled model beats every site's own model, by far
    # the young-adult clinic's (a straight line through ages 25-50 misjudges the old).
    assert all(o.gain_on_all > 0.007 for o in result.values()), result
    assert result["hospital-b"].gain_on_all > 0.05
    assert sum(o.gain_on_all for o in result.values()) / 4 > 0.02
    # (b) On a site's own patients it is as good as the site's own model: one clinical
    # truth, so pooling costs nothing (a linear model with 3,000 records is already
    # near its best on its own site; see docs/data.md).
    assert all(o.gain_on_own > -0.01 for o in result.values()), result
    _quoted(f"LR, {RECORDS:,} per site", result)


def test_pooled_trees_help_every_site_on_its_own_patients(
    train_sites: dict[str, pd.DataFrame], test_sites: dict[str, pd.DataFrame]
) -> None:
    result = own_vs_pooled(train_sites, test_sites, algorithm=GBT)
    print("\n" + table(f"GBT, {RECORDS:,} per site", result))
    assert all(o.gain_on_all > 0.02 for o in result.values()), result
    assert all(o.gain_on_own > 0.008 for o in result.values()), result
    _quoted(f"GBT, {RECORDS:,} per site", result)


def test_identical_sites_gain_nothing_on_the_others(test_sites: dict[str, pd.DataFrame]) -> None:
    # The control: the gains above on all rows would vanish if the sites were alike.
    alike = [replace(ARCHETYPES[0], name=f"copy-{i}") for i in range(4)]
    train_alike = generate_from_profiles(alike, records=RECORDS, seed=0)
    test_alike = generate_from_profiles(alike, records=TEST_RECORDS, seed=TEST_SEED)
    result = own_vs_pooled(train_alike, test_alike, algorithm=LR)
    print("\n" + table("four copies of hospital-a, LR", result))
    # Four times the data still buys a linear model a few tenths of a point.
    assert all(abs(o.gain_on_all) < 0.008 for o in result.values()), result
    assert all(abs(o.gain_on_own) < 0.008 for o in result.values()), result
    assert sum(o.gain_on_all for o in result.values()) / 4 < 0.006


def test_a_site_specific_label_shift_makes_pooling_hurt(
    train_sites: dict[str, pd.DataFrame], test_sites: dict[str, pd.DataFrame]
) -> None:
    # The knob the archetypes leave at 0: if the general clinic's patients were sicker
    # than their records say, the pooled model (no site feature) would split the
    # difference and lose on some site's own patients: the own-rows assertion of the
    # logistic regression test would fail for such a generator.
    shifted = replace(ARCHETYPES[0], referral_severity=2.0)
    train_c = generate_from_profiles([shifted, *ARCHETYPES[1:]], records=RECORDS, seed=0)
    test_c = generate_from_profiles(
        [shifted, *ARCHETYPES[1:]], records=TEST_RECORDS, seed=TEST_SEED
    )
    result = own_vs_pooled(train_c, test_c, algorithm=LR)
    print("\n" + table("hospital-a with referral_severity +2.0, LR", result))
    assert min(o.gain_on_own for o in result.values()) < -0.01, result


def test_the_real_uci_sites_have_a_label_shift() -> None:
    # Real multi-site data is not always this kind: the Swiss referral centre's labels
    # depend on findings outside the MedicalRecord, so its own model fails on the others
    # and the pooled model does worse than its own on its patients (few test rows: noisy).
    sites = load_uci_sites()
    halves = {name: train_test_split(frame, label="risk", seed=0) for name, frame in sites.items()}
    result = own_vs_pooled(
        {n: h.train for n, h in halves.items()},
        {n: h.test for n, h in halves.items()},
        algorithm=LR,
    )
    print("\n" + table("UCI Heart Disease (real), LR", result))
    assert result["switzerland"].gain_on_all > 0.15
    assert result["switzerland"].gain_on_own < 0.0


if __name__ == "__main__":  # pragma: no cover - the 100,000-record measurement
    records = int(sys.argv[1]) if len(sys.argv) > 1 else RECORDS
    big_train = generate_sites(4, records, 0)
    big_test = generate_sites(4, TEST_RECORDS, TEST_SEED)
    for algorithm, short in ((LR, "LR"), (GBT, "GBT")):
        measured = own_vs_pooled(big_train, big_test, algorithm=algorithm)
        print(table(f"{short}, {records:,} per site", measured) + "\n", flush=True)

"""The train/test split: disjoint, covering, stratified, stable for a seed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cleanroom.errors import ConfigurationError, TrainingError
from cleanroom.ml import split_indices, train_test_split


@settings(max_examples=150, deadline=None)
@given(
    labels=st.lists(st.integers(0, 4), min_size=0, max_size=300),
    fraction=st.floats(0.0, 0.95),
    seed=st.integers(0, 2**32 - 1),
)
def test_every_row_lands_on_exactly_one_side(labels: list[int], fraction: float, seed: int) -> None:
    train, test = split_indices(labels, test_fraction=fraction, seed=seed)
    assert np.intersect1d(train, test).size == 0
    assert sorted([*train.tolist(), *test.tolist()]) == list(range(len(labels)))
    assert np.all(np.diff(train) > 0)
    assert np.all(np.diff(test) > 0)
    # Every class keeps at least one training row.
    assert set(np.asarray(labels)[train].tolist()) == set(labels)


def test_the_articles_two_tablesamples_overlap_ours_do_not() -> None:
    # What the article did: two independent 80 % and 20 % samples of the same table.
    rng = np.random.default_rng(0)
    n = 10_000
    article_train = np.flatnonzero(rng.random(n) < 0.8)
    article_test = np.flatnonzero(rng.random(n) < 0.2)
    assert np.intersect1d(article_train, article_test).size > 1000
    train, test = split_indices(np.arange(n) % 5, test_fraction=0.2, seed=0)
    assert np.intersect1d(train, test).size == 0
    assert len(test) == 2000


def test_the_same_seed_gives_the_same_split_and_another_seed_another(
    sites: dict[str, pd.DataFrame],
) -> None:
    site = sites["hospital-a"]
    first = train_test_split(site, label="risk", seed=7)
    again = train_test_split(site, label="risk", seed=7)
    other = train_test_split(site, label="risk", seed=8)
    assert first.test.index.equals(again.test.index)
    assert first.train.index.equals(again.train.index)
    assert not first.test.index.equals(other.test.index)
    assert len(first.test) == round(len(site) * 0.2)
    pd.testing.assert_frame_equal(
        pd.concat([first.train, first.test]).sort_index(), site, check_like=False
    )


def test_the_split_is_stratified() -> None:
    labels = np.repeat([0, 1, 2, 3, 4], [500, 200, 150, 100, 50])
    train, test = split_indices(labels, test_fraction=0.2, seed=3)
    assert np.bincount(labels[test]).tolist() == [100, 40, 30, 20, 10]
    assert np.bincount(labels[train]).tolist() == [400, 160, 120, 80, 40]


def test_a_class_with_one_row_stays_in_training() -> None:
    labels = [0] * 9 + [1] * 9 + [4]
    train, test = split_indices(labels, test_fraction=0.5, seed=0)
    assert 18 in train.tolist()
    assert 4 not in np.asarray(labels)[test].tolist()
    assert len(test) == round(19 * 0.5)


def test_largest_remainders_hit_the_exact_test_size() -> None:
    labels = [0] * 7 + [1] * 7 + [2] * 7
    _, test = split_indices(labels, test_fraction=0.2, seed=0)
    assert len(test) == 4  # round(21 · 0.2); each class's quota is 1.4


def test_tiny_frames() -> None:
    assert [a.tolist() for a in split_indices([], seed=0)] == [[], []]
    assert [a.tolist() for a in split_indices([3], seed=0)] == [[0], []]
    train, test = split_indices([3, 3], seed=0)
    assert len(train) == 1
    assert len(test) == 1


def test_labels_need_not_be_integers() -> None:
    train, test = split_indices(["low", "high"] * 10, test_fraction=0.3, seed=0)
    assert len(test) == 6
    assert len(train) == 14


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_bad_fractions_are_refused(fraction: float) -> None:
    with pytest.raises(ConfigurationError):
        split_indices([0, 1], test_fraction=fraction)


def test_negative_seed_missing_label_and_missing_column_are_refused(
    sites: dict[str, pd.DataFrame],
) -> None:
    with pytest.raises(ConfigurationError):
        split_indices([0, 1], seed=-1)
    site = sites["hospital-b"].copy()
    site.loc[3, "risk"] = pd.NA
    with pytest.raises(TrainingError, match="missing label"):
        train_test_split(site, label="risk")
    with pytest.raises(TrainingError, match="missing column"):
        train_test_split(site, label="outcome")

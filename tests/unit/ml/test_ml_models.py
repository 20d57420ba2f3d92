"""Algorithms, hyperparameter validation, deterministic training, class alignment."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pandas as pd
import pytest

from cleanroom.errors import ConfigurationError, TrainingError
from cleanroom.ml import (
    ALGORITHMS,
    DEFAULT_HYPERPARAMETERS,
    FeatureSpec,
    evaluate,
    resolve_hyperparameters,
    train,
)

LR = "multinomial_logistic_regression"
GBT = "gradient_boosted_trees"
FAST_GBT = {"max_iter": 10}


def test_the_algorithms_and_their_defaults() -> None:
    assert ALGORITHMS == (LR, GBT)
    assert resolve_hyperparameters(LR) == dict(DEFAULT_HYPERPARAMETERS[LR])
    assert resolve_hyperparameters(GBT, {"max_depth": 3})["max_depth"] == 3
    assert resolve_hyperparameters(LR, {"C": 2, "solver": "saga"})["C"] == 2.0


@pytest.mark.parametrize(
    ("algorithm", "params", "message"),
    [
        (LR, {"learning_rate": 0.1}, "'learning_rate'"),
        (GBT, {"C": 1.0}, "'C'"),
        (LR, {"penalty": "l1"}, "'penalty'"),
        (LR, {"C": 0}, "'C'"),
        (LR, {"C": "1"}, "'C'"),
        (LR, {"C": float("inf")}, "'C'"),
        (LR, {"max_iter": 0}, "'max_iter'"),
        (LR, {"max_iter": 1.5}, "'max_iter'"),
        (LR, {"max_iter": True}, "'max_iter'"),
        (LR, {"solver": "newton-cg"}, "'solver'"),
        (LR, {"class_weight": "auto"}, "'class_weight'"),
        (GBT, {"early_stopping": "auto"}, "'early_stopping'"),
        (GBT, {"max_leaf_nodes": 1}, "'max_leaf_nodes'"),
        (GBT, {"l2_regularization": -1}, "'l2_regularization'"),
        (GBT, {"max_depth": 0}, "'max_depth'"),
    ],
)
def test_bad_hyperparameters_are_refused_by_name(
    algorithm: str, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        resolve_hyperparameters(algorithm, params)


def test_unknown_algorithm_and_featurization(
    sites: dict[str, pd.DataFrame], spec: FeatureSpec
) -> None:
    frame = sites["hospital-b"]
    with pytest.raises(ConfigurationError, match="unknown algorithm"):
        train(frame, spec=spec, algorithm="sdca")
    with pytest.raises(ConfigurationError, match="unknown featurization"):
        train(frame, spec=spec, featurization="binned")
    with pytest.raises(ConfigurationError, match="'schema' featurization only"):
        train(frame, spec=spec, algorithm=GBT, featurization="article")
    with pytest.raises(ConfigurationError, match="seed"):
        train(frame, spec=spec, seed=-1)
    with pytest.raises(ConfigurationError, match="threads"):
        train(frame, spec=spec, threads=0)


@pytest.mark.parametrize(
    ("algorithm", "featurization", "params"),
    [(LR, "schema", None), (LR, "article", None), (GBT, "schema", FAST_GBT)],
)
def test_training_is_deterministic_and_learns(
    sites: dict[str, pd.DataFrame],
    spec: FeatureSpec,
    algorithm: str,
    featurization: str,
    params: dict[str, Any] | None,
) -> None:
    frame = sites["hospital-a"]
    first = train(
        frame, spec=spec, algorithm=algorithm, featurization=featurization, hyperparameters=params
    )
    second = train(
        frame.copy(),
        spec=spec,
        algorithm=algorithm,
        featurization=featurization,
        hyperparameters=params,
    )
    assert pickle.dumps(first.pipeline[-1]) == pickle.dumps(second.pipeline[-1])
    proba = first.predict_proba(frame)
    assert proba.shape == (len(frame), 5)
    assert np.allclose(proba.sum(axis=1), 1.0)
    # Better than always predicting the most frequent class, on the training rows.
    majority = frame["risk"].value_counts(normalize=True).max()
    assert evaluate(first, frame).micro_accuracy > majority
    assert first.describe()["algorithm"] == algorithm


def test_a_class_absent_from_training_gets_probability_zero(
    sites: dict[str, pd.DataFrame], spec: FeatureSpec
) -> None:
    frame = sites["hospital-a"]
    without_4 = frame[frame["risk"] != 4]
    model = train(without_4, spec=spec)
    assert 4 not in model.model_classes
    proba = model.predict_proba(frame)
    assert proba.shape[1] == 5
    assert np.all(proba[:, 4] == 0)
    assert set(model.predict(frame).tolist()) <= set(model.model_classes)
    # Rows of class 4 are scored with the ε floor, as ML.NET does for unseen labels.
    assert evaluate(model, frame[frame["risk"] == 4]).log_loss == pytest.approx(-np.log(1e-15))


def test_training_guards(sites: dict[str, pd.DataFrame], spec: FeatureSpec) -> None:
    frame = sites["hospital-b"]
    with pytest.raises(TrainingError, match="fewer than two classes"):
        train(frame[frame["risk"] == 0], spec=spec)
    bad = frame.copy()
    bad.loc[bad.index[0], "risk"] = 9
    with pytest.raises(TrainingError, match=r"'risk'.*outside") as info:
        train(bad, spec=spec)
    assert "9" not in str(info.value)
    with pytest.raises(TrainingError, match="age"):
        train(frame.drop(columns=["age"]), spec=spec)


def test_thread_limits_do_not_change_the_model(
    sites: dict[str, pd.DataFrame], spec: FeatureSpec
) -> None:
    frame = sites["hospital-c"]
    one = train(frame, spec=spec, algorithm=GBT, hyperparameters=FAST_GBT, threads=1)
    two = train(frame, spec=spec, algorithm=GBT, hyperparameters=FAST_GBT, threads=2)
    assert np.array_equal(one.predict_proba(frame), two.predict_proba(frame))

"""The collaboration report: each party alone vs the pooled model."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import cleanroom.ml
from cleanroom.errors import ConfigurationError, TrainingError
from cleanroom.ml import (
    FeatureSpec,
    collaboration_report,
    evaluate,
    pool,
    train,
    train_test_split,
)


def _splits(sites: dict[str, pd.DataFrame]) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    halves = {p: train_test_split(df, label="risk", seed=0) for p, df in sites.items()}
    return {p: (h.train, h.test) for p, h in halves.items()}


def test_report_structure_and_arithmetic(sites: dict[str, pd.DataFrame], spec: FeatureSpec) -> None:
    splits = _splits(sites)
    report = collaboration_report(splits, spec=spec)
    assert [p.party for p in report.parties] == list(sites)
    all_test = pool({p: te for p, (_, te) in splits.items()})
    pooled = train(pool({p: tr for p, (tr, _) in splits.items()}), spec=spec)
    assert report.pooled_on_all == evaluate(pooled, all_test)
    assert report.pooled_on_all.rows == len(all_test)
    for outcome in report.parties:
        train_rows, test_rows = splits[outcome.party]
        alone = train(train_rows, spec=spec)
        assert outcome.train_rows == len(train_rows)
        assert outcome.test_rows == len(test_rows)
        assert outcome.alone_on_own == evaluate(alone, test_rows)
        assert outcome.alone_on_all == evaluate(alone, all_test)
        assert outcome.pooled_on_own == evaluate(pooled, test_rows)
        assert outcome.alone_accuracy_by_party[outcome.party] == outcome.alone_on_own.micro_accuracy
        assert set(outcome.alone_accuracy_by_party) == set(sites)
        assert outcome.gain == pytest.approx(
            outcome.pooled_on_own.micro_accuracy - outcome.alone_on_own.micro_accuracy
        )
        assert report.gain_on_all(outcome.party) == pytest.approx(
            report.pooled_on_all.micro_accuracy - outcome.alone_on_all.micro_accuracy
        )
    assert report.mean_alone_accuracy == pytest.approx(
        sum(p.alone_on_own.micro_accuracy for p in report.parties) / 3
    )
    data = json.loads(json.dumps(report.to_dict()))
    assert data["algorithm"] == "multinomial_logistic_regression"
    assert data["parties"][0]["gain_on_all"] == pytest.approx(report.gain_on_all("hospital-a"))
    assert data["pooled_accuracy"] == report.pooled_accuracy
    with pytest.raises(KeyError):
        report.party("hospital-z")


def test_a_given_pooled_model_is_used(sites: dict[str, pd.DataFrame], spec: FeatureSpec) -> None:
    splits = _splits(sites)
    pooled = train(
        pool({p: tr for p, (tr, _) in splits.items()}),
        spec=spec,
        algorithm="gradient_boosted_trees",
        hyperparameters={"max_iter": 5},
    )
    report = collaboration_report(
        splits,
        spec=spec,
        algorithm="gradient_boosted_trees",
        hyperparameters={"max_iter": 5},
        pooled=pooled,
    )
    assert report.algorithm == "gradient_boosted_trees"
    assert report.hyperparameters["max_iter"] == 5
    test = splits["hospital-b"][1]
    assert report.party("hospital-b").pooled_on_own == evaluate(pooled, test)


def test_guards_name_the_party(sites: dict[str, pd.DataFrame], spec: FeatureSpec) -> None:
    splits = _splits(sites)
    with pytest.raises(ConfigurationError):
        collaboration_report({}, spec=spec)
    one_class = splits["hospital-c"][0]
    splits_bad = {
        **splits,
        "hospital-c": (one_class[one_class["risk"] == 0], splits["hospital-c"][1]),
    }
    with pytest.raises(TrainingError, match=r"'hospital-c'.*fewer than two classes"):
        collaboration_report(splits_bad, spec=spec)
    empty_test = {
        **splits,
        "hospital-b": (splits["hospital-b"][0], splits["hospital-b"][1].iloc[:0]),
    }
    with pytest.raises(TrainingError, match="'hospital-b' has no test rows"):
        collaboration_report(empty_test, spec=spec)


def test_public_surface() -> None:
    assert sorted(cleanroom.ml.__all__) == sorted(
        [
            "ALGORITHMS",
            "DEFAULT_HYPERPARAMETERS",
            "FEATURIZATIONS",
            "Algorithm",
            "CollaborationReport",
            "FeatureSpec",
            "Featurization",
            "MulticlassMetrics",
            "PartyOutcome",
            "Split",
            "TrainedModel",
            "build_preprocessor",
            "collaboration_report",
            "evaluate",
            "export_onnx",
            "label_indices",
            "medical_record_spec",
            "model_input",
            "multiclass_metrics",
            "onnx_feeds",
            "onnx_matches",
            "pool",
            "resolve_hyperparameters",
            "run_onnx",
            "score_onnx",
            "split_indices",
            "train",
            "train_test_split",
        ]
    )
    for name in cleanroom.ml.__all__:
        assert getattr(cleanroom.ml, name) is not None

"""ONNX export: inputs named after the schema, identical scores in onnxruntime, same bytes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any

import numpy as np
import onnx
import pandas as pd
import pytest

from cleanroom.errors import ConfigurationError
from cleanroom.ml import (
    FeatureSpec,
    TrainedModel,
    export_onnx,
    onnx_export,
    onnx_matches,
    run_onnx,
    score_onnx,
    train,
)
from cleanroom.ml.onnx_export import GRAPH_NAME

CASES = [
    ("multinomial_logistic_regression", "schema", None),
    ("multinomial_logistic_regression", "article", None),
    ("gradient_boosted_trees", "schema", {"max_iter": 15}),
]


def _model(
    sites: dict[str, pd.DataFrame], spec: FeatureSpec, case: tuple[str, str, Any]
) -> TrainedModel:
    algorithm, featurization, params = case
    return train(
        pd.concat([sites["hospital-a"], sites["hospital-b"]], ignore_index=True),
        spec=spec,
        algorithm=algorithm,
        featurization=featurization,
        hyperparameters=params,
    )


@pytest.mark.parametrize("case", CASES, ids=[f"{a}-{f}" for a, f, _ in CASES])
def test_onnx_scores_like_scikit_learn_and_bytes_are_reproducible(
    sites: dict[str, pd.DataFrame], spec: FeatureSpec, case: tuple[str, str, Any]
) -> None:
    model = _model(sites, spec, case)
    blob = export_onnx(model)
    # Retrain from scratch: the same inputs give the same model bytes.
    assert export_onnx(_model(sites, spec, case)) == blob
    unseen = sites["hospital-c"]  # 15 % of some columns missing
    assert unseen.isna().any().any()
    assert onnx_matches(model, blob, unseen)
    labels, proba = run_onnx(blob, model, unseen)
    assert np.array_equal(labels, model.predict(unseen))
    assert np.max(np.abs(proba - model.predict_proba(unseen))) <= 1e-5


def test_rows_with_every_feature_missing_and_unknown_codes(
    sites: dict[str, pd.DataFrame], spec: FeatureSpec
) -> None:
    for case in CASES:
        model = _model(sites, spec, case)
        rows = sites["hospital-c"].iloc[:4].copy()
        for name in spec.feature_columns:
            rows[name] = pd.array([None] * 4, dtype="Int16")
        rows.loc[rows.index[0], "chestPain"] = 7  # outside the schema's categories
        assert onnx_matches(model, export_onnx(model), rows)


def test_graph_inputs_outputs_and_metadata(
    sites: dict[str, pd.DataFrame], spec: FeatureSpec
) -> None:
    model = _model(sites, spec, CASES[0])
    proto = onnx.load_from_string(export_onnx(model))
    onnx.checker.check_model(proto)
    kinds = {i.name: i.type.tensor_type.elem_type for i in proto.graph.input}
    assert list(kinds) == list(spec.feature_columns)
    assert kinds["age"] == onnx.TensorProto.FLOAT
    assert kinds["chestPain"] == onnx.TensorProto.STRING
    assert [o.name for o in proto.graph.output] == ["label", "probabilities"]
    assert proto.graph.name == GRAPH_NAME
    assert proto.doc_string == ""
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["cleanroom.model_classes"]) == [0, 1, 2, 3, 4]
    assert json.loads(meta["cleanroom.spec"])["label"] == "risk"
    assert meta["cleanroom.algorithm"] == "multinomial_logistic_regression"


def test_a_different_model_does_not_match(
    sites: dict[str, pd.DataFrame], spec: FeatureSpec
) -> None:
    model = _model(sites, spec, CASES[0])
    other = train(sites["hospital-c"], spec=spec)
    assert not onnx_matches(model, export_onnx(other), sites["hospital-b"])
    # A tolerance too tight for float32 arithmetic is reported, not hidden.
    assert not onnx_matches(model, export_onnx(model), sites["hospital-b"], tolerance=0.0)


def test_the_export_shim_leaves_skl2onnx_as_it_was(
    sites: dict[str, pd.DataFrame], spec: FeatureSpec
) -> None:
    from skl2onnx.operator_converters import random_forest

    before = random_forest.add_tree_to_attribute_pairs_hist_gradient_boosting
    export_onnx(_model(sites, spec, CASES[2]))
    assert random_forest.add_tree_to_attribute_pairs_hist_gradient_boosting is before


def test_a_recipient_scores_with_the_onnx_bytes_alone(
    sites: dict[str, pd.DataFrame], spec: FeatureSpec
) -> None:
    for case in CASES:
        model = _model(sites, spec, case)
        blob = export_onnx(model)
        rows = sites["hospital-c"]
        labels, proba = score_onnx(blob, rows)
        expected_labels, expected_proba = run_onnx(blob, model, rows)
        assert np.array_equal(labels, expected_labels)
        assert np.array_equal(proba, expected_proba)


def test_scoring_needs_the_cleanroom_metadata(
    sites: dict[str, pd.DataFrame], spec: FeatureSpec
) -> None:
    proto = onnx.load_from_string(export_onnx(_model(sites, spec, CASES[0])))
    del proto.metadata_props[:]
    with pytest.raises(ConfigurationError, match="metadata"):
        score_onnx(proto.SerializeToString(), sites["hospital-c"])


def test_the_spec_round_trips_through_a_dict(spec: FeatureSpec) -> None:
    again = FeatureSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec
    assert hash(again) == hash(spec)
    with pytest.raises(ConfigurationError, match="not a feature spec"):
        FeatureSpec.from_dict({"numeric": ["age"]})


@pytest.mark.parametrize("case", CASES, ids=[f"{a}-{f}" for a, f, _ in CASES])
def test_scoring_in_blocks_equals_one_call(
    monkeypatch: pytest.MonkeyPatch,
    sites: dict[str, pd.DataFrame],
    spec: FeatureSpec,
    case: tuple[str, str, Any],
) -> None:
    """onnxruntime runs ONNX_BLOCK_ROWS rows at a time; the blocks change no label."""
    model = _model(sites, spec, case)
    blob = export_onnx(model)
    rows = sites["hospital-c"]
    whole_labels, whole_proba = run_onnx(blob, model, rows)
    monkeypatch.setattr(onnx_export, "ONNX_BLOCK_ROWS", 7)
    labels, proba = run_onnx(blob, model, rows)
    assert len(rows) > 7
    assert np.array_equal(labels, whole_labels)
    # onnxruntime's tree kernels sum in float32 in an order that depends on the batch.
    assert np.allclose(proba, whole_proba, rtol=0, atol=1e-6)
    empty_labels, empty_proba = run_onnx(blob, model, rows.iloc[:0])
    assert empty_labels.shape == (0,)
    assert empty_proba.shape == (0, len(spec.classes))


_EXPORT_IN_A_PROCESS = """
import hashlib, sys
from cleanroom.data import generate_sites
from cleanroom.ml import export_onnx, medical_record_spec, train
frames = list(generate_sites(2, 300, seed=0).values())
sys.stdout.write(hashlib.sha256(export_onnx(train(frames, spec=medical_record_spec()))).hexdigest())
"""


def test_the_same_bytes_in_processes_with_different_string_hash_seeds() -> None:
    # skl2onnx lists the model's opsets in the iteration order of a set of (domain,
    # version) pairs, which follows the process's string hash seed: before the opsets were
    # sorted, seeds 10 and 11 gave different bytes for the same model (so did two jobs).
    digests = set()
    for seed in ("10", "11"):
        run = subprocess.run(
            [sys.executable, "-c", _EXPORT_IN_A_PROCESS],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        )
        assert re.fullmatch(r"[0-9a-f]{64}", run.stdout), run.stderr[-2000:]
        digests.add(run.stdout)
    assert len(digests) == 1


def test_opsets_are_listed_in_domain_order(
    sites: dict[str, pd.DataFrame], spec: FeatureSpec
) -> None:
    for case in CASES:
        proto = onnx.load_from_string(export_onnx(_model(sites, spec, case)))
        domains = [opset.domain for opset in proto.opset_import]
        assert domains == sorted(domains)
        assert {"", "ai.onnx.ml"} <= set(domains)

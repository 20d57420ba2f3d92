"""The whole fitted pipeline as ONNX, deterministic bytes, checked against scikit-learn.

The ONNX model has one input per feature column, named after the schema column, shaped
``[N, 1]``: ``tensor(float)`` for numeric columns under the ``"schema"`` featurization
(``NaN`` = missing), ``tensor(string)`` otherwise (the category code, ``""`` = missing).
It has two outputs: ``label`` (``int64 [N]``) and ``probabilities`` (``float [N, C]``,
no ZipMap), one column per class the estimator saw in training — listed, with the spec,
in the model's ``metadata_props`` (``cleanroom.model_classes``, ``cleanroom.spec``).

Determinism: skl2onnx names the graph with a random ``uuid4`` unless given a name, so we
pass a fixed one; ``doc_string`` is empty; the producer version is skl2onnx's (pinned by
the lock file); opsets are fixed (:data:`TARGET_OPSET`). The same fitted pipeline thus
always serializes to the same bytes, and since training is deterministic, the same
inputs give the same model bytes.

Compatibility shim: skl2onnx 1.20 passes a Python ``bool`` for the missing-value flag of
HistGradientBoosting leaves, which onnx ≥ 1.17's ``make_attribute`` refuses ("Expected
an int, got a boolean"). :func:`export_onnx` converts those flags to ``int`` for the
duration of the conversion (a scoped patch of one skl2onnx helper, nothing global stays
changed). The flag never matters here: missing values are imputed before the trees.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import pandas as pd
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType, StringTensorType

from cleanroom.errors import ConfigurationError, TrainingError
from cleanroom.ml.design import blocks
from cleanroom.ml.features import FeatureSpec, Featurization, check_featurization, model_input
from cleanroom.ml.models import TrainedModel

#: ONNX opsets of every exported model (default domain, ``ai.onnx.ml``).
TARGET_OPSET: Final[dict[str, int]] = {"": 17, "ai.onnx.ml": 3}
#: The graph name of every exported model (skl2onnx would otherwise pick a random one).
GRAPH_NAME: Final = "cleanroom"
#: Default tolerance of :func:`onnx_matches` on probabilities.
PROBABILITY_TOLERANCE: Final = 1e-5
#: Rows scored per onnxruntime call (bounds the graph's dense one-hot intermediate).
ONNX_BLOCK_ROWS: Final = 8192

_PATCH_LOCK = threading.Lock()


@contextlib.contextmanager
def _hist_gradient_boosting_int_flags() -> Iterator[None]:
    """Make skl2onnx emit ``int`` missing-value flags for HistGradientBoosting trees."""
    from skl2onnx.operator_converters import random_forest

    name = "add_tree_to_attribute_pairs_hist_gradient_boosting"
    original = getattr(random_forest, name)

    def fixed(attr_pairs: dict[str, list[Any]], *args: Any, **kwargs: Any) -> None:
        original(attr_pairs, *args, **kwargs)
        key = "nodes_missing_value_tracks_true"
        attr_pairs[key] = [int(v) for v in attr_pairs[key]]

    with _PATCH_LOCK:
        setattr(random_forest, name, fixed)
        try:
            yield
        finally:
            setattr(random_forest, name, original)


def _sort_opsets(proto: onnx.ModelProto) -> None:
    """List ``proto``'s opsets in domain order, in place.

    skl2onnx lists them in the iteration order of a set of ``(domain, version)`` pairs,
    which follows the process's string hash seed: without this, two processes (two enclave
    jobs) export different bytes for the same model.
    """
    opsets = sorted((opset.domain, opset.version) for opset in proto.opset_import)
    del proto.opset_import[:]
    proto.opset_import.extend(onnx.helper.make_opsetid(d, v) for d, v in opsets)


def export_onnx(model: TrainedModel) -> bytes:
    """The ONNX serialization of ``model``'s whole pipeline (preprocessing + estimator).

    Raises:
        TrainingError: skl2onnx cannot convert the pipeline.
    """
    initial_types: list[tuple[str, Any]] = []
    for name, kind in model.spec.input_kinds(model.featurization).items():
        tensor = FloatTensorType([None, 1]) if kind == "float" else StringTensorType([None, 1])
        initial_types.append((name, tensor))
    estimator = model.pipeline.steps[-1][1]
    try:
        with _hist_gradient_boosting_int_flags():
            proto = convert_sklearn(
                model.pipeline,
                initial_types=initial_types,
                options={id(estimator): {"zipmap": False}},
                target_opset=dict(TARGET_OPSET),
                name=GRAPH_NAME,
                doc_string="",
            )
    except (RuntimeError, ValueError, TypeError, NotImplementedError) as exc:
        raise TrainingError(f"ONNX conversion failed: {type(exc).__name__}") from None
    _sort_opsets(proto)
    metadata = {
        "cleanroom.algorithm": model.algorithm,
        "cleanroom.featurization": model.featurization,
        "cleanroom.model_classes": json.dumps(list(model.model_classes)),
        "cleanroom.spec": json.dumps(model.spec.to_dict(), sort_keys=True),
    }
    onnx.helper.set_model_props(proto, metadata)
    return bytes(proto.SerializeToString(deterministic=True))


def onnx_feeds(model: TrainedModel, frame: pd.DataFrame) -> dict[str, npt.NDArray[Any]]:
    """The ONNX input tensors for the rows of ``frame`` (see the module docstring)."""
    return _feeds(frame, model.spec, model.featurization)


def _feeds(
    frame: pd.DataFrame, spec: FeatureSpec, featurization: Featurization
) -> dict[str, npt.NDArray[Any]]:
    x = model_input(frame, spec, featurization)
    feeds: dict[str, npt.NDArray[Any]] = {}
    for name, kind in spec.input_kinds(featurization).items():
        column = x[name].to_numpy()
        if kind == "float":
            feeds[name] = column.astype(np.float32).reshape(-1, 1)
        else:
            feeds[name] = column.astype(object).reshape(-1, 1)
    return feeds


def _run(
    session: ort.InferenceSession,
    frame: pd.DataFrame,
    spec: FeatureSpec,
    featurization: Featurization,
    model_classes: tuple[int, ...],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    labels = np.zeros(len(frame), dtype=np.int64)
    aligned = np.zeros((len(frame), len(spec.classes)), dtype=np.float64)
    columns = [spec.classes.index(c) for c in model_classes]
    start = 0
    # In blocks: the graph's one-hot output is dense (the article featurization's ~1,100
    # float columns a row), so a whole test set at once would take gigabytes at scale.
    for block in blocks([frame], ONNX_BLOCK_ROWS):
        label, probabilities = session.run(
            ["label", "probabilities"], _feeds(block, spec, featurization)
        )
        stop = start + len(block)
        labels[start:stop] = np.asarray(label, dtype=np.int64).reshape(-1)
        aligned[start:stop, columns] = probabilities
        start = stop
    return labels, aligned


def run_onnx(
    onnx_bytes: bytes, model: TrainedModel, frame: pd.DataFrame
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Score ``frame`` with the ONNX model in onnxruntime (CPU).

    Returns the ``label`` output and the probabilities aligned to ``model.spec.classes``.
    """
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    return _run(session, frame, model.spec, model.featurization, model.model_classes)


def score_onnx(
    onnx_bytes: bytes, frame: pd.DataFrame
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Score ``frame`` with an exported model alone, as a recipient would.

    The spec, featurization and classes come from the model's ``metadata_props``, so
    only the ONNX bytes and a frame with the schema's columns are needed. Returns the
    ``label`` output and the probabilities aligned to the spec's classes.

    Raises:
        ConfigurationError: the model lacks cleanroom metadata.
        TrainingError: a feature column is absent from ``frame``.
    """
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    try:
        spec = FeatureSpec.from_dict(json.loads(meta["cleanroom.spec"]))
        featurization = check_featurization(meta["cleanroom.featurization"])
        model_classes = tuple(int(c) for c in json.loads(meta["cleanroom.model_classes"]))
    except (KeyError, ValueError, TypeError):
        raise ConfigurationError("the ONNX model has no cleanroom metadata") from None
    return _run(session, frame, spec, featurization, model_classes)


def onnx_matches(
    model: TrainedModel,
    onnx_bytes: bytes,
    frame: pd.DataFrame,
    *,
    tolerance: float = PROBABILITY_TOLERANCE,
) -> bool:
    """Whether the ONNX model scores ``frame`` as ``model`` does.

    True when, on every row, the predicted classes are equal (the ONNX ``label`` output
    and the argmax of its probabilities both equal scikit-learn's prediction) and every
    probability is within ``tolerance``.
    """
    label, onnx_proba = run_onnx(onnx_bytes, model, frame)
    sk_proba = model.predict_proba(frame)
    classes = np.asarray(model.spec.classes, dtype=np.int64)
    sk_label = classes[np.argmax(sk_proba, axis=1)]
    return bool(
        onnx_proba.shape == sk_proba.shape
        and np.array_equal(label, sk_label)
        and np.array_equal(classes[np.argmax(onnx_proba, axis=1)], sk_label)
        and np.all(np.abs(onnx_proba - sk_proba) <= tolerance)
    )


__all__ = [
    "GRAPH_NAME",
    "PROBABILITY_TOLERANCE",
    "TARGET_OPSET",
    "export_onnx",
    "onnx_feeds",
    "onnx_matches",
    "run_onnx",
    "score_onnx",
]

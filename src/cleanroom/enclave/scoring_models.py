"""The model the enclave serves, the request model generated from its schema, and scoring.

:class:`ScoringModel` is plain data (ONNX bytes, classes, feature spec, metrics, receipt):
the training job builds it from its result, or :meth:`ScoringModel.load` reads it from a
directory (``model.onnx`` + ``model.json``). :func:`record_model` generates the pydantic
request model from the dataset schema — field names, types, categories and ranges come
from the schema, so another schema needs no code change. :class:`OnnxScorer` turns
validated records into ONNX feeds and probabilities with onnxruntime.

``model.json`` (version 1)::

    {"version": 1, "metrics": {"micro_accuracy": 0.91, ...}, "receipt": {...} | null,
     "schema": <DatasetSchema JSON> | null}

Everything else (algorithm, featurization, classes, spec) is read from the ONNX model's
``metadata_props`` written by :func:`cleanroom.ml.export_onnx`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr
from pydantic import create_model as _create_model

from cleanroom.errors import ConfigurationError, ScoringError
from cleanroom.ml.features import FeatureSpec, check_featurization
from cleanroom.store.schema import ColumnSpec, DatasetSchema

MODEL_FILE: Final = "model.onnx"
METADATA_FILE: Final = "model.json"
METADATA_VERSION: Final = 1
_INT_TYPES: Final = frozenset({"bit", "tinyint", "smallint", "int", "bigint"})
_FLOAT_TYPES: Final = frozenset({"real", "float", "decimal", "numeric", "money", "smallmoney"})


def _frozen(value: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    if value is None:
        return None
    try:
        # A JSON round trip: the value must be JSON data, and later edits to the
        # caller's dict cannot change what the enclave serves.
        copy = json.loads(json.dumps(dict(value), allow_nan=False))
    except (TypeError, ValueError):
        raise ConfigurationError("metrics and receipt must be JSON objects") from None
    return MappingProxyType(copy)


@dataclass(frozen=True, kw_only=True)
class ScoringModel:
    """A trained model as the enclave serves it. Build from plain values.

    - ``onnx``: the model bytes (:func:`cleanroom.ml.export_onnx`); scored by onnxruntime.
    - ``spec`` / ``featurization``: the feature spec and featurization it was trained with.
    - ``model_classes``: the classes the estimator saw (the ONNX probability columns);
      defaults to ``spec.classes``.
    - ``algorithm``: the contract's algorithm name.
    - ``metrics``: JSON metrics of the pooled model on the held-out test rows; must hold
      ``micro_accuracy`` (a fraction). Every allowed caller sees them (``GET /model``).
    - ``receipt``: the training receipt (opaque JSON), or ``None``.
    - ``schema``: the dataset schema the request model is generated from; ``None`` derives
      it from ``spec`` (numeric columns as numbers in their ranges, categories as codes).

    :attr:`model_id` is the SHA-256 (hex) of ``onnx``.

    Example::

        model = ScoringModel.from_onnx(onnx_bytes, metrics=pooled.to_dict(), receipt=receipt,
                                       schema=medical_record_schema())
    """

    onnx: bytes = field(repr=False)
    spec: FeatureSpec
    algorithm: str
    metrics: Mapping[str, Any]
    featurization: str = "schema"
    model_classes: tuple[int, ...] | None = None
    receipt: Mapping[str, Any] | None = None
    schema: DatasetSchema | None = None
    model_id: str = field(init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.onnx, bytes) or not self.onnx:
            raise ConfigurationError("a scoring model needs its ONNX bytes")
        check_featurization(self.featurization)
        object.__setattr__(self, "model_id", hashlib.sha256(self.onnx).hexdigest())
        metrics = _frozen(self.metrics)
        assert metrics is not None
        accuracy = metrics.get("micro_accuracy")
        if (
            isinstance(accuracy, bool)
            or not isinstance(accuracy, int | float)
            or not 0.0 <= accuracy <= 1.0
        ):
            raise ConfigurationError("metrics must hold micro_accuracy, a fraction in [0, 1]")
        object.__setattr__(self, "metrics", metrics)
        object.__setattr__(self, "receipt", _frozen(self.receipt))
        classes = self.spec.classes if self.model_classes is None else self.model_classes
        classes = tuple(int(c) for c in classes)
        if not classes or not set(classes) <= set(self.spec.classes):
            raise ConfigurationError("model_classes must be classes of the spec")
        object.__setattr__(self, "model_classes", classes)
        if self.schema is not None:
            names = set(self.schema.column_names)
            missing = [c for c in self.spec.feature_columns if c not in names]
            if missing:
                raise ConfigurationError(f"the schema lacks feature column(s): {missing}")

    @property
    def classes(self) -> tuple[int, ...]:
        """The class labels, in the order of every probability vector (``spec.classes``)."""
        return self.spec.classes

    @property
    def accuracy_percent(self) -> float:
        """Pooled micro accuracy on the held-out test rows, in percent (as the article)."""
        return round(100.0 * float(self.metrics["micro_accuracy"]), 2)

    @classmethod
    def from_onnx(
        cls,
        onnx_bytes: bytes,
        *,
        metrics: Mapping[str, Any],
        receipt: Mapping[str, Any] | None = None,
        schema: DatasetSchema | None = None,
    ) -> ScoringModel:
        """Read spec, algorithm, featurization and classes from the model's metadata."""
        import onnx

        try:
            proto = onnx.load_from_string(onnx_bytes)
            props = {p.key: p.value for p in proto.metadata_props}
            raw = json.loads(props["cleanroom.spec"])
            spec = FeatureSpec(
                numeric=tuple(raw["numeric"]),
                categorical={k: tuple(v) for k, v in raw["categorical"].items()},
                label=raw["label"],
                classes=tuple(raw["classes"]),
                ranges={k: (v[0], v[1]) for k, v in raw.get("ranges", {}).items()},
            )
            model_classes = tuple(int(c) for c in json.loads(props["cleanroom.model_classes"]))
            algorithm = props["cleanroom.algorithm"]
            featurization = props["cleanroom.featurization"]
        except ConfigurationError:
            raise
        except Exception as error:  # noqa: BLE001 -- onnx raises its own DecodeError, and KeyError/TypeError
            raise ConfigurationError(
                f"not a cleanroom ONNX model (its metadata is missing: {type(error).__name__})"
            ) from None
        return cls(
            onnx=onnx_bytes,
            spec=spec,
            algorithm=algorithm,
            featurization=featurization,
            model_classes=model_classes,
            metrics=metrics,
            receipt=receipt,
            schema=schema,
        )

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``model.onnx`` and ``model.json`` into ``directory`` (created if absent)."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        (path / MODEL_FILE).write_bytes(self.onnx)
        metadata = {
            "version": METADATA_VERSION,
            "metrics": dict(self.metrics),
            "receipt": None if self.receipt is None else dict(self.receipt),
            "schema": None if self.schema is None else self.schema.to_dict(),
        }
        (path / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> ScoringModel:
        """Read a model written by :meth:`save` (``ConfigurationError`` if malformed)."""
        path = Path(directory)
        try:
            onnx_bytes = (path / MODEL_FILE).read_bytes()
            metadata = json.loads((path / METADATA_FILE).read_text(encoding="utf-8"))
        except OSError as error:
            raise ConfigurationError(
                f"cannot read the model in {path} ({error.strerror})"
            ) from None
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ConfigurationError(f"{path / METADATA_FILE} is not JSON") from None
        if not isinstance(metadata, dict) or metadata.get("version") != METADATA_VERSION:
            raise ConfigurationError(f"{path / METADATA_FILE} is not model metadata version 1")
        schema = metadata.get("schema")
        return cls.from_onnx(
            onnx_bytes,
            metrics=metadata.get("metrics") or {},
            receipt=metadata.get("receipt"),
            schema=None if schema is None else DatasetSchema.from_dict(schema),
        )


# -- the request model ------------------------------------------------------------------


def _code(token: str) -> int | str:
    try:
        return int(token)
    except ValueError:
        return token


def _column_annotation(column: ColumnSpec, *, bit_as_bool: bool) -> tuple[Any, dict[str, Any]]:
    """The pydantic type and Field arguments of one schema column."""
    name = column.column_type.name
    constraints: dict[str, Any] = {}
    annotation: Any
    if name == "bit":
        # The store keeps bits as bools; the article sends sex as 0/1 and smoker as a bool.
        allowed = (0, 1) if column.categories is None else column.categories
        codes = tuple(sorted({int(c) for c in allowed if c is not None}))
        annotation = Literal[codes]
        if bit_as_bool and codes == (0, 1):
            annotation = annotation | StrictBool
    elif column.categories is not None:
        codes = tuple(c for c in column.categories if c is not None)
        annotation = Literal[codes]
    elif name in _INT_TYPES:
        annotation = StrictInt
    elif name in _FLOAT_TYPES:
        annotation = StrictFloat | StrictInt
    else:
        annotation = StrictStr
        if column.column_type.length is not None:
            constraints["max_length"] = column.column_type.length
    if column.categories is None and name != "bit":
        if column.minimum is not None:
            constraints["ge"] = column.minimum
        if column.maximum is not None:
            constraints["le"] = column.maximum
    return annotation, constraints


def _spec_annotation(spec: FeatureSpec, name: str) -> tuple[Any, dict[str, Any]]:
    if name in spec.categorical:
        codes = tuple(_code(t) for t in spec.categorical[name])
        return Literal[codes], {}
    constraints: dict[str, Any] = {}
    if name in spec.ranges:
        constraints = {"ge": spec.ranges[name][0], "le": spec.ranges[name][1]}
    return StrictFloat | StrictInt, constraints


def record_model(model: ScoringModel) -> type[BaseModel]:
    """The pydantic model of one record to score, generated from the model's schema.

    One required field per feature column, named exactly as the column (``chestPain``),
    typed by the column's SQL type (integers stay integers; a ``bit`` also takes
    ``true``/``false`` as the article's ``smoker`` does), limited to its categories or its
    ``min``/``max``. A nullable column takes ``null`` (a value not measured) but must still
    be present. The label (``risk``), if sent, is ignored; any other field is an error.
    """
    fields: dict[str, Any] = {}
    spec = model.spec
    for index, name in enumerate(spec.feature_columns):
        if model.schema is not None:
            column = model.schema.column(name)
            annotation, constraints = _column_annotation(column, bit_as_bool=True)
            nullable = column.nullable
        else:
            annotation, constraints = _spec_annotation(spec, name)
            nullable = True
        if nullable:
            annotation = annotation | None
        # Internal names avoid clashes with BaseModel attributes; the alias is the column.
        fields[f"f{index}"] = (annotation, Field(..., alias=name, **constraints))
    label = spec.label
    fields["label_ignored"] = (
        Any,
        Field(default=None, alias=label, exclude=True, description="Ignored if sent."),
    )
    config = ConfigDict(extra="forbid", strict=True, populate_by_name=False, frozen=True)
    title = model.schema.table if model.schema is not None else "Record"
    record: type[BaseModel] = _create_model(_title(title), __config__=config, **fields)
    return record


def _title(table: str) -> str:
    singular = table[:-1] if table.endswith("s") and len(table) > 1 else table
    return singular[:1].upper() + singular[1:]


def batch_model(record: type[BaseModel], *, max_records: int) -> type[BaseModel]:
    """``{"records": [record, ...]}`` with 1 to ``max_records`` records."""
    config = ConfigDict(extra="forbid", strict=True, frozen=True)
    batch: type[BaseModel] = _create_model(
        f"{record.__name__}Batch",
        __config__=config,
        records=(list[record], Field(..., min_length=1, max_length=max_records)),  # type: ignore[valid-type]
    )
    return batch


# -- scoring ----------------------------------------------------------------------------


def _token(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True, slots=True)
class Scores:
    """Predicted class and per-class probabilities of some records."""

    predicted: tuple[int, ...]
    probabilities: npt.NDArray[np.float64]


class OnnxScorer:
    """Scores validated records with the model's ONNX bytes in onnxruntime (CPU).

    One ``InferenceSession`` (thread-safe for ``run``), one thread per request: the enclave
    serves many small requests, and intra-op threads would only contend for the cores.
    """

    def __init__(self, model: ScoringModel) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(
                model.onnx, options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # noqa: BLE001 -- onnxruntime's own exception types
            raise ConfigurationError(
                f"onnxruntime cannot load the model ({type(error).__name__})"
            ) from None
        outputs = {o.name for o in self._session.get_outputs()}
        if not {"label", "probabilities"} <= outputs:
            raise ConfigurationError("the ONNX model lacks 'label'/'probabilities' outputs")
        self._kinds = model.spec.input_kinds(check_featurization(model.featurization))
        inputs = {i.name for i in self._session.get_inputs()}
        if inputs != set(self._kinds):
            raise ConfigurationError("the ONNX model's inputs are not the spec's feature columns")
        self._classes = np.asarray(model.classes, dtype=np.int64)
        assert model.model_classes is not None
        self._columns = [model.classes.index(c) for c in model.model_classes]

    def feeds(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, npt.NDArray[Any]]:
        """ONNX input tensors (``[N, 1]``) for rows given as ``{column: value}``."""
        feeds: dict[str, npt.NDArray[Any]] = {}
        for name, kind in self._kinds.items():
            values = [row[name] for row in rows]
            if kind == "float":
                feeds[name] = np.array(
                    [math.nan if v is None else float(v) for v in values], dtype=np.float32
                ).reshape(-1, 1)
            else:
                feeds[name] = np.array([_token(v) for v in values], dtype=object).reshape(-1, 1)
        return feeds

    def score(self, rows: Sequence[Mapping[str, Any]]) -> Scores:
        """Predicted class (the most probable, the first on a tie) and probabilities."""
        try:
            _label, raw = self._session.run(["label", "probabilities"], self.feeds(rows))
        except Exception as error:  # noqa: BLE001 -- onnxruntime's own types; never quote inputs
            raise ScoringError(f"the model failed to score ({type(error).__name__})") from None
        probabilities = np.zeros((len(rows), len(self._classes)), dtype=np.float64)
        probabilities[:, self._columns] = np.asarray(raw, dtype=np.float64)
        if not np.isfinite(probabilities).all():
            raise ScoringError("the model returned a non-finite probability")
        predicted = self._classes[np.argmax(probabilities, axis=1)]
        return Scores(tuple(int(c) for c in predicted), probabilities)


__all__ = [
    "METADATA_FILE",
    "MODEL_FILE",
    "OnnxScorer",
    "Scores",
    "ScoringModel",
    "batch_model",
    "record_model",
]

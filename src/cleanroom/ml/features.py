"""From a schema description to a scikit-learn preprocessing step with a fixed shape.

A :class:`FeatureSpec` says which columns are numeric, which are categorical (and their
categories), which column is the label and which classes it may take. Everything that
determines the width of the design matrix comes from the spec, never from the data, so
every party's model — and the pooled one — has the same inputs and the same shape.

Two featurizations:

``"schema"`` (the default)
    numeric columns: median imputation (learned on the training rows), a "present"
    indicator per numeric column (1 if the value was given, 0 if it was missing) and,
    for linear models, standardization; categorical columns: one-hot over the schema's
    categories, where a missing or unknown category is the all-zero vector.

``"article"``
    the MSDN article's pipeline: one-hot of *every* feature, numeric ones included, each
    integer value its own category (the schema's ``minimum..maximum`` when the spec has
    a range for the column, otherwise the values seen in training). It has one weight
    per age, per blood pressure, per heart rate…, which is why it overfits small sites.

The model's input is a DataFrame (and the ONNX model's inputs are tensors) named after
the schema columns: numeric columns as float (``NaN`` = missing), categorical columns —
and every column under ``"article"`` — as strings (the category's code, e.g. ``"4"``;
the empty string = missing). :func:`model_input` builds it from a decrypted frame.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import Binarizer, OneHotEncoder, StandardScaler

from cleanroom.errors import ConfigurationError, TrainingError

#: How features are built from the schema columns (see the module docstring).
Featurization = Literal["schema", "article"]
FEATURIZATIONS: Final[tuple[str, ...]] = ("schema", "article")

#: The kind of tensor (and DataFrame column) the model takes for one input column.
InputKind = Literal["float", "string"]

#: The string that stands for a missing categorical value in the model input.
MISSING_TOKEN: Final = ""

# A value no real measurement takes: missing numerics are filled with it, then the
# Binarizer turns "above _PRESENT_THRESHOLD" into the present indicator. Built from two
# operators skl2onnx converts exactly (SimpleImputer's add_indicator has no converter).
_ABSENT_FILL: Final = -1.0e30
_PRESENT_THRESHOLD: Final = -1.0e29


class SchemaColumn(Protocol):
    """What :meth:`FeatureSpec.from_columns` reads from a column description.

    :class:`cleanroom.data.medical_record.Column` fits: ``kind`` is ``"label"``,
    ``"categorical"``, ``"binary"`` or ``"numeric"``; ``categories`` holds codes or
    ``(code, meaning)`` pairs; ``minimum``/``maximum`` bound a numeric column.
    """

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def categories(self) -> Sequence[Any]: ...


def _token(value: object) -> str:
    """The string form of a category code: integers (also ``4.0``) without a decimal point."""
    if isinstance(value, bool | np.bool_):
        return str(int(value))
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    return str(value)


@dataclass(frozen=True, kw_only=True)
class FeatureSpec:
    """Which columns a model reads and what they may hold; fixes the model's shape.

    ``numeric`` and ``categorical`` name the feature columns (in input order: numeric
    first, then categorical); ``categorical`` maps each to its allowed categories (as
    strings, see :func:`model_input`); ``label`` is the label column, ``classes`` its
    allowed values in the order every probability vector and confusion matrix uses;
    ``ranges`` optionally bounds integer numeric columns (used by ``"article"``).

    Example::

        spec = FeatureSpec(numeric=("age",), categorical={"chestPain": ("1", "2", "3", "4")},
                           label="risk", classes=(0, 1, 2, 3, 4))

    Raises:
        ConfigurationError: a column appears twice, the label is also a feature, there
            are fewer than two classes, a categorical column has no categories, or a
            range is empty.
    """

    numeric: tuple[str, ...]
    categorical: Mapping[str, tuple[str, ...]]
    label: str
    classes: tuple[int, ...]
    ranges: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        categorical = {
            str(name): tuple(_token(c) for c in cats) for name, cats in self.categorical.items()
        }
        object.__setattr__(self, "numeric", tuple(str(n) for n in self.numeric))
        object.__setattr__(self, "categorical", MappingProxyType(categorical))
        object.__setattr__(self, "classes", tuple(int(c) for c in self.classes))
        ranges = {str(k): (int(lo), int(hi)) for k, (lo, hi) in self.ranges.items()}
        object.__setattr__(self, "ranges", MappingProxyType(ranges))
        names = [*self.numeric, *categorical]
        if len(set(names)) != len(names):
            raise ConfigurationError("a feature column is listed twice")
        if not names:
            raise ConfigurationError("a feature spec needs at least one feature column")
        if self.label in names:
            raise ConfigurationError(f"the label {self.label!r} is also a feature column")
        if len(set(self.classes)) != len(self.classes) or len(self.classes) < 2:
            raise ConfigurationError("the label needs at least two distinct classes")
        for name, cats in categorical.items():
            if not cats or len(set(cats)) != len(cats):
                raise ConfigurationError(f"column {name!r}: categories must be distinct, not empty")
        for name, (lo, hi) in ranges.items():
            if name not in self.numeric:
                raise ConfigurationError(f"range given for {name!r}, which is not numeric")
            if lo > hi:
                raise ConfigurationError(f"column {name!r}: empty range")

    def __hash__(self) -> int:
        # The generated hash would fail on the mapping fields; hash their frozen items.
        return hash(
            (
                self.numeric,
                tuple(self.categorical.items()),
                self.label,
                self.classes,
                tuple(self.ranges.items()),
            )
        )

    @classmethod
    def from_columns(cls, columns: Iterable[SchemaColumn]) -> FeatureSpec:
        """The spec of a schema given as column descriptions (see :class:`SchemaColumn`).

        ``"binary"`` columns are categorical with their two codes. A numeric column with
        integer ``minimum``/``maximum`` attributes gets a range.

        Raises:
            ConfigurationError: no label column, more than one, or an unknown kind.
        """
        numeric: list[str] = []
        categorical: dict[str, tuple[str, ...]] = {}
        ranges: dict[str, tuple[int, int]] = {}
        labels: list[tuple[str, tuple[int, ...]]] = []
        for col in columns:
            codes = tuple(c[0] if isinstance(c, tuple) else c for c in col.categories)
            if col.kind == "label":
                labels.append((col.name, tuple(int(c) for c in codes)))
            elif col.kind in ("categorical", "binary"):
                categorical[col.name] = tuple(_token(c) for c in codes)
            elif col.kind == "numeric":
                numeric.append(col.name)
                lo, hi = getattr(col, "minimum", None), getattr(col, "maximum", None)
                if isinstance(lo, int) and isinstance(hi, int):
                    ranges[col.name] = (lo, hi)
            else:
                raise ConfigurationError(f"column {col.name!r} has unknown kind {col.kind!r}")
        if len(labels) != 1:
            raise ConfigurationError("the schema needs exactly one label column")
        label, classes = labels[0]
        return cls(
            numeric=tuple(numeric),
            categorical=categorical,
            label=label,
            classes=classes,
            ranges=ranges,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpec:
        """The inverse of :meth:`to_dict` (e.g. read back from ONNX metadata).

        Raises:
            ConfigurationError: a key is missing or a value does not validate.
        """
        try:
            return cls(
                numeric=tuple(data["numeric"]),
                categorical={k: tuple(v) for k, v in data["categorical"].items()},
                label=str(data["label"]),
                classes=tuple(data["classes"]),
                ranges={k: (v[0], v[1]) for k, v in data.get("ranges", {}).items()},
            )
        except (KeyError, TypeError, AttributeError, IndexError):
            raise ConfigurationError("not a feature spec") from None

    @property
    def feature_columns(self) -> tuple[str, ...]:
        """Every feature column, in model input order (numeric, then categorical)."""
        return (*self.numeric, *self.categorical)

    def input_kinds(self, featurization: Featurization = "schema") -> dict[str, InputKind]:
        """The tensor kind of each model input under ``featurization``."""
        check_featurization(featurization)
        kinds: dict[str, InputKind] = {}
        for name in self.numeric:
            kinds[name] = "float" if featurization == "schema" else "string"
        for name in self.categorical:
            kinds[name] = "string"
        return kinds

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (for receipts and reports)."""
        return {
            "numeric": list(self.numeric),
            "categorical": {k: list(v) for k, v in self.categorical.items()},
            "label": self.label,
            "classes": list(self.classes),
            "ranges": {k: list(v) for k, v in self.ranges.items()},
        }


def medical_record_spec() -> FeatureSpec:
    """The spec of the article's MedicalRecord (:mod:`cleanroom.data.medical_record`)."""
    from cleanroom.data.medical_record import MEDICAL_RECORD_COLUMNS

    return FeatureSpec.from_columns(MEDICAL_RECORD_COLUMNS)


def check_featurization(featurization: str) -> Featurization:
    """``featurization`` if it is one of :data:`FEATURIZATIONS`.

    Raises:
        ConfigurationError: it is not.
    """
    if featurization == "schema":
        return "schema"
    if featurization == "article":
        return "article"
    raise ConfigurationError(
        f"unknown featurization {featurization!r}; choose one of {', '.join(FEATURIZATIONS)}"
    )


def _require_columns(frame: pd.DataFrame, names: Iterable[str]) -> None:
    missing = [name for name in names if name not in frame.columns]
    if missing:
        raise TrainingError(f"missing column(s): {', '.join(missing)}")


def as_float(series: pd.Series[Any], name: str) -> npt.NDArray[np.float64]:
    """The column as float64 (``NaN`` = missing).

    Raises:
        TrainingError: the values are not numbers (names the column, not a value).
    """
    try:
        return series.to_numpy(dtype="float64", na_value=np.nan)
    except (TypeError, ValueError):
        raise TrainingError(f"column {name!r}: values are not numbers") from None


def as_tokens(series: pd.Series[Any]) -> npt.NDArray[np.object_]:
    """Category codes as strings; missing values as :data:`MISSING_TOKEN`."""
    missing = series.isna().to_numpy()
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        values = series.to_numpy(dtype="float64", na_value=np.nan)
        whole = ~missing & (values == np.round(values))
        tokens = np.full(len(series), MISSING_TOKEN, dtype=object)
        if whole.any():
            # One shared str object per distinct code: 8 bytes a cell, not ~50.
            distinct, inverse = np.unique(values[whole].astype(np.int64), return_inverse=True)
            shared = np.array([str(int(v)) for v in distinct], dtype=object)
            tokens[whole] = shared[inverse]
        other = ~missing & ~whole
        if other.any():
            tokens[other] = values[other].astype(str)
        return tokens
    tokens = np.array([_token(v) for v in series.to_numpy(dtype=object)], dtype=object)
    tokens[missing] = MISSING_TOKEN
    return tokens


def model_input(
    frame: pd.DataFrame, spec: FeatureSpec, featurization: Featurization = "schema"
) -> pd.DataFrame:
    """The model's input frame: the spec's feature columns, typed as the model expects.

    Float columns are ``float32`` (the ONNX model's input type; integers up to 2**24 are
    exact), string columns are ``object`` arrays of codes. Extra columns (the label, too)
    are ignored.

    Raises:
        TrainingError: a feature column is absent or a numeric column holds non-numbers.
    """
    _require_columns(frame, spec.feature_columns)
    out: dict[str, Any] = {}
    for name, kind in spec.input_kinds(featurization).items():
        if kind == "float":
            out[name] = as_float(frame[name], name).astype(np.float32)
        else:
            out[name] = as_tokens(frame[name])
    return pd.DataFrame(out, index=frame.index)


def label_indices(frame: pd.DataFrame, spec: FeatureSpec) -> npt.NDArray[np.int64]:
    """The label of every row as an index into ``spec.classes``.

    Raises:
        TrainingError: the label column is absent, a label is missing, or a label is
            outside the spec's classes (the message names the column, never the value).
    """
    _require_columns(frame, (spec.label,))
    values = as_float(frame[spec.label], spec.label)
    if np.isnan(values).any():
        raise TrainingError(f"column {spec.label!r}: {int(np.isnan(values).sum())} missing labels")
    classes = np.asarray(spec.classes, dtype=np.float64)
    order = np.argsort(classes, kind="stable")
    pos = np.searchsorted(classes[order], values)
    pos = np.clip(pos, 0, len(classes) - 1)
    index = order[pos]
    unknown = classes[index] != values
    if unknown.any():
        raise TrainingError(
            f"column {spec.label!r}: {int(unknown.sum())} label(s) outside the schema's classes"
        )
    return index.astype(np.int64)


def labels(frame: pd.DataFrame, spec: FeatureSpec) -> npt.NDArray[np.int64]:
    """The label of every row as a class value (validated like :func:`label_indices`)."""
    return np.asarray(spec.classes, dtype=np.int64)[label_indices(frame, spec)]


def _numeric_categories(
    spec: FeatureSpec, name: str, learned: Mapping[str, Sequence[str]]
) -> list[list[str]] | str:
    """Every integer of the column's range, the given categories, or "learn them"."""
    if name in spec.ranges:
        lo, hi = spec.ranges[name]
        return [[str(v) for v in range(lo, hi + 1)]]
    if name in learned:
        return [list(learned[name])]
    return "auto"


def build_preprocessor(
    spec: FeatureSpec,
    featurization: Featurization = "schema",
    *,
    scale: bool = True,
    dense: bool = False,
    categories: Mapping[str, Sequence[str]] | None = None,
    sparse: bool | None = None,
) -> ColumnTransformer:
    """An unfitted ColumnTransformer from the model input to the design matrix.

    ``scale`` standardizes numeric columns (for linear models; trees do without, which
    also keeps their thresholds exact in float32 ONNX). ``dense`` forces a dense output
    (HistGradientBoosting does not take sparse input). ``sparse`` fixes the output's kind
    (True: CSR, False: dense); left ``None``, the one-hot block stays sparse when the
    fitted matrix is mostly zeros (scikit-learn's ``sparse_threshold``). ``categories``
    gives the categories of ``"article"`` numeric columns without a schema range, which
    are otherwise learned by ``fit`` (see :mod:`cleanroom.ml.design`).
    """
    check_featurization(featurization)
    transformers: list[tuple[str, Any, list[str]]] = []
    categorical = list(spec.categorical)
    cat_categories = [list(spec.categorical[name]) for name in categorical]
    if featurization == "schema":
        numeric = list(spec.numeric)
        if numeric:
            # keep_empty_features: a site that never records a column (some hospitals do
            # not measure cholesterol) must still give a model of the same shape.
            steps: list[tuple[str, Any]] = [
                ("impute", SimpleImputer(strategy="median", keep_empty_features=True))
            ]
            if scale:
                steps.append(("scale", StandardScaler()))
            transformers.append(("numeric", Pipeline(steps), numeric))
            present = Pipeline(
                [
                    (
                        "fill",
                        SimpleImputer(
                            strategy="constant", fill_value=_ABSENT_FILL, keep_empty_features=True
                        ),
                    ),
                    ("present", Binarizer(threshold=_PRESENT_THRESHOLD)),
                ]
            )
            transformers.append(("present", present, numeric))
    else:
        for name in spec.numeric:
            encoder = OneHotEncoder(
                categories=_numeric_categories(spec, name, categories or {}),
                handle_unknown="ignore",
                sparse_output=not dense,
                dtype=np.float64,
            )
            transformers.append((f"onehot_{name}", encoder, [name]))
    if categorical:
        encoder = OneHotEncoder(
            categories=cat_categories,
            handle_unknown="ignore",
            sparse_output=not dense,
            dtype=np.float64,
        )
        transformers.append(("categorical", encoder, categorical))
    if dense or sparse is False:
        threshold = 0.0
    elif sparse:
        threshold = 1.0
    else:
        threshold = 0.3
    return ColumnTransformer(
        transformers,
        remainder="drop",
        sparse_threshold=threshold,
        verbose_feature_names_out=True,
    )


__all__ = [
    "FEATURIZATIONS",
    "MISSING_TOKEN",
    "FeatureSpec",
    "Featurization",
    "InputKind",
    "SchemaColumn",
    "as_float",
    "as_tokens",
    "build_preprocessor",
    "check_featurization",
    "label_indices",
    "labels",
    "medical_record_spec",
    "model_input",
]

"""FeatureSpec, the model input, labels, and the fixed shape of the design matrix."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from cleanroom.errors import ConfigurationError, TrainingError
from cleanroom.ml import FeatureSpec, build_preprocessor, label_indices, model_input
from cleanroom.ml.features import labels


@dataclass(frozen=True)
class Col:
    name: str
    kind: str
    categories: tuple[object, ...] = ()
    minimum: int | None = None
    maximum: int | None = None


def test_spec_from_column_descriptions() -> None:
    spec = FeatureSpec.from_columns(
        [
            Col("risk", "label", ((0, "none"), (1, "some"), (2, "severe"))),
            Col("age", "numeric", minimum=18, maximum=110),
            Col("weight", "numeric"),
            Col("sex", "binary", ((0, "female"), (1, "male"))),
            Col("pain", "categorical", (1, 2, 3)),
        ]
    )
    assert spec.numeric == ("age", "weight")
    assert dict(spec.categorical) == {"sex": ("0", "1"), "pain": ("1", "2", "3")}
    assert spec.label == "risk"
    assert spec.classes == (0, 1, 2)
    assert dict(spec.ranges) == {"age": (18, 110)}
    assert spec.feature_columns == ("age", "weight", "sex", "pain")
    assert spec.input_kinds("schema")["age"] == "float"
    assert set(spec.input_kinds("article").values()) == {"string"}


def test_medical_record_spec() -> None:
    from cleanroom.ml import medical_record_spec

    spec = medical_record_spec()
    assert spec.label == "risk"
    assert spec.classes == (0, 1, 2, 3, 4)
    assert spec.numeric == ("age", "bloodPressure", "serumCholestoral", "maxHeartRate")
    assert dict(spec.categorical)["chestPain"] == ("1", "2", "3", "4")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"numeric": ("a", "a")}, "twice"),
        ({"numeric": ("y",)}, "also a feature"),
        ({"classes": (1,)}, "two distinct"),
        ({"categorical": {"c": ()}}, "categories"),
        ({"ranges": {"c": (0, 1)}}, "not numeric"),
        ({"ranges": {"a": (5, 1)}}, "empty range"),
        ({"numeric": (), "categorical": {}}, "at least one"),
    ],
)
def test_bad_specs_are_refused(kwargs: dict[str, object], message: str) -> None:
    base: dict[str, object] = {
        "numeric": ("a",),
        "categorical": {"c": ("x",)},
        "label": "y",
        "classes": (0, 1),
    }
    with pytest.raises(ConfigurationError, match=message):
        FeatureSpec(**{**base, **kwargs})  # type: ignore[arg-type]


def test_from_columns_needs_one_label_and_known_kinds() -> None:
    with pytest.raises(ConfigurationError, match="exactly one label"):
        FeatureSpec.from_columns([Col("a", "numeric")])
    with pytest.raises(ConfigurationError, match="unknown kind"):
        FeatureSpec.from_columns([Col("y", "label", (0, 1)), Col("a", "text")])


def test_model_input_types_and_tokens(spec: FeatureSpec) -> None:
    frame = pd.DataFrame(
        {
            "age": pd.array([63, None], dtype="Int16"),
            "bloodPressure": [145.0, np.nan],
            "serumCholestoral": pd.array([233, 250], dtype="Int16"),
            "maxHeartRate": [150, 160],
            "sex": pd.array([1, None], dtype="Int8"),
            "smoker": [1.0, np.nan],
            "chestPain": ["4", None],
            "fastingBloodSugar": [True, False],
            "risk": [0, 1],
            "ignored": ["x", "y"],
        }
    )
    x = model_input(frame, spec)
    assert list(x.columns) == list(spec.feature_columns)
    assert x["age"].dtype == np.float32
    assert np.isnan(x["age"].iloc[1])
    assert x["sex"].tolist() == ["1", ""]
    assert x["smoker"].tolist() == ["1", ""]
    assert x["chestPain"].tolist() == ["4", ""]
    assert x["fastingBloodSugar"].tolist() == ["1", "0"]
    fractional = model_input(frame.assign(chestPain=[2.5, 4.0]), spec)
    assert fractional["chestPain"].tolist() == ["2.5", "4"]
    article = model_input(frame, spec, "article")
    assert article["age"].tolist() == ["63", ""]
    assert article["bloodPressure"].tolist() == ["145", ""]


def test_model_input_names_the_missing_or_bad_column(spec: FeatureSpec) -> None:
    frame = pd.DataFrame({name: [1] for name in spec.feature_columns})
    with pytest.raises(TrainingError, match="maxHeartRate"):
        model_input(frame.drop(columns=["maxHeartRate"]), spec)
    frame["age"] = ["old"]
    with pytest.raises(TrainingError, match="'age'"):
        model_input(frame, spec)


def test_labels_are_checked_without_echoing_values(spec: FeatureSpec) -> None:
    frame = pd.DataFrame({"risk": [4, 0, 2]})
    assert label_indices(frame, spec).tolist() == [4, 0, 2]
    assert labels(frame, spec).tolist() == [4, 0, 2]
    with pytest.raises(TrainingError, match="outside") as info:
        label_indices(pd.DataFrame({"risk": [1, 977]}), spec)
    assert "977" not in str(info.value)
    with pytest.raises(TrainingError, match="outside"):
        label_indices(pd.DataFrame({"risk": [1.5]}), spec)
    with pytest.raises(TrainingError, match="missing label"):
        label_indices(pd.DataFrame({"risk": pd.array([1, None], dtype="Int16")}), spec)


def test_every_party_gets_the_same_width(spec: FeatureSpec, site_maker) -> None:  # type: ignore[no-untyped-def]
    one = site_maker(60, seed=1)
    two = site_maker(60, seed=2)
    two["chestPain"] = pd.array([2] * 60, dtype="Int16")  # a site that sees one pain type
    two["serumCholestoral"] = pd.array([None] * 60, dtype="Int16")  # and never measures it
    for featurization in ("schema", "article"):
        widths = set()
        for frame in (one, two):
            pre = build_preprocessor(spec, featurization)  # type: ignore[arg-type]
            widths.add(pre.fit_transform(model_input(frame, spec, featurization)).shape[1])
        assert len(widths) == 1
    # schema: 4 scaled numerics + 4 present flags + 2 + 2 + 4 + 2 one-hot columns
    assert build_preprocessor(spec).fit_transform(model_input(one, spec)).shape[1] == 18


def test_unknown_and_missing_categories_encode_as_zeros(spec: FeatureSpec, site_maker) -> None:  # type: ignore[no-untyped-def]
    train = site_maker(80, seed=4)
    pre = build_preprocessor(spec).fit(model_input(train, spec))
    rows = train.iloc[:2].copy()
    rows["chestPain"] = pd.array([9, None], dtype="Int16")
    out = np.asarray(pre.transform(model_input(rows, spec)))
    names = list(pre.get_feature_names_out())
    pain = [i for i, n in enumerate(names) if "chestPain" in n]
    assert len(pain) == 4
    assert np.all(out[:, pain] == 0)
    present = [i for i, n in enumerate(names) if n.startswith("present__")]
    rows2 = train.iloc[:1].copy()
    rows2["age"] = pd.array([None], dtype="Int16")
    flags = np.asarray(pre.transform(model_input(rows2, spec)))[0, present]
    assert flags.tolist() == [0.0, 1.0, 1.0, 1.0]

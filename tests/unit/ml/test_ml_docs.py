"""docs/ml.md: its example runs, and it documents every algorithm, featurization and metric."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from cleanroom.ml import ALGORITHMS, DEFAULT_HYPERPARAMETERS, FEATURIZATIONS, MulticlassMetrics

DOC = Path(__file__).resolve().parents[3] / "docs" / "ml.md"


def test_the_example_runs() -> None:
    example = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert example is not None
    exec(compile(example.group(1), str(DOC), "exec"), {})  # noqa: S102


def test_every_algorithm_hyperparameter_featurization_and_metric_is_documented() -> None:
    text = DOC.read_text()
    for name in (*ALGORITHMS, *FEATURIZATIONS):
        assert f"`{name}`" in text or f'"{name}"' in text, name
    for algorithm, params in DEFAULT_HYPERPARAMETERS.items():
        for key in params:
            assert f"`{key}`" in text, (algorithm, key)
    for field in fields(MulticlassMetrics):
        if field.name not in ("classes", "rows", "top_k"):
            assert f"| `{field.name}` |" in text, field.name

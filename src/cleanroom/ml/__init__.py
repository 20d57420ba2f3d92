"""The training computation the parties came for, on already-decrypted pandas frames.

- :mod:`~cleanroom.ml.features` — :class:`FeatureSpec` (from the schema; fixes every
  model's shape), the ``"schema"`` and ``"article"`` featurizations, the model input.
- :mod:`~cleanroom.ml.split` — a seeded, disjoint, stratified train/test split.
- :mod:`~cleanroom.ml.models` — the algorithms a contract may name, validated
  hyperparameters, deterministic :func:`train`.
- :mod:`~cleanroom.ml.metrics` — ML.NET's multiclass metric set.
- :mod:`~cleanroom.ml.collaboration` — each party alone vs the pooled model.
- :mod:`~cleanroom.ml.onnx_export` — the whole pipeline as deterministic ONNX bytes,
  checked against onnxruntime.

Example::

    from cleanroom.ml import (medical_record_spec, train_test_split, train, evaluate,
                              collaboration_report, export_onnx, onnx_matches)

    spec = medical_record_spec()
    halves = {p: train_test_split(df, label=spec.label, seed=0) for p, df in sites.items()}
    report = collaboration_report({p: (h.train, h.test) for p, h in halves.items()}, spec=spec)

See ``docs/ml.md``.
"""

from cleanroom.ml.collaboration import (
    CollaborationReport,
    PartyOutcome,
    collaboration_report,
    pool,
)
from cleanroom.ml.features import (
    FEATURIZATIONS,
    FeatureSpec,
    Featurization,
    build_preprocessor,
    label_indices,
    medical_record_spec,
    model_input,
)
from cleanroom.ml.metrics import MulticlassMetrics, evaluate, multiclass_metrics
from cleanroom.ml.models import (
    ALGORITHMS,
    DEFAULT_HYPERPARAMETERS,
    Algorithm,
    TrainedModel,
    resolve_hyperparameters,
    train,
)
from cleanroom.ml.onnx_export import (
    export_onnx,
    onnx_feeds,
    onnx_matches,
    run_onnx,
    score_onnx,
)
from cleanroom.ml.split import Split, split_indices, train_test_split

__all__ = [
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

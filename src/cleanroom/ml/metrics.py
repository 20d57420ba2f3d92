"""The metric set of ML.NET's multiclass evaluator, computed the way ML.NET computes it.

For *n* test rows with true class *yᵢ* and predicted probabilities *pᵢ* (one column per
class, in the spec's fixed order):

- **ranking**: the classes of a row sorted by descending probability, ties broken by the
  lower class position (ML.NET sorts with a stable ``OrderByDescending``); the predicted
  class is the first of that ranking;
- **micro accuracy**: the fraction of rows whose predicted class is the true one;
- **macro accuracy**: the mean, over classes that occur in the test rows, of the
  fraction of that class's rows predicted correctly (per-class recall);
- **log-loss**: the mean of ``−ln(max(ε, pᵢ[yᵢ]))`` with ``ε = 1e-15``;
- **log-loss reduction** (RIG): ``(H − LL) / H`` where ``H = −Σ_c q_c ln q_c`` is the
  log-loss of always predicting the test rows' own class frequencies ``q`` (the
  "prior" of ML.NET's ``MulticlassClassificationMetrics.LogLossReduction``). 1 is
  perfect, 0 is no better than the prior, negative is worse. ``None`` when the test rows
  hold a single class (``H = 0``). ML.NET's internal counter reports it ×100; the public
  API and this module report the fraction;
- **top-K accuracy**: the fraction of rows whose true class is among the first *K* of
  the ranking;
- **per-class log-loss**: the mean log-loss of the rows of each class (0 for a class with
  no rows);
- **confusion matrix**: ``confusion_matrix[true][predicted]`` row counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from cleanroom.errors import ConfigurationError, TrainingError
from cleanroom.ml.features import label_indices
from cleanroom.ml.models import TrainedModel

#: Probabilities are clipped to at least this before taking the log (as in ML.NET).
EPSILON: Final = 1e-15
#: K of the top-K accuracy unless asked otherwise.
DEFAULT_TOP_K: Final = 2


@dataclass(frozen=True, kw_only=True)
class MulticlassMetrics:
    """The multiclass evaluation of one model on one set of rows (module docstring)."""

    classes: tuple[int, ...]
    rows: int
    micro_accuracy: float
    macro_accuracy: float
    log_loss: float
    log_loss_reduction: float | None
    top_k: int
    top_k_accuracy: float
    per_class_log_loss: tuple[float, ...]
    confusion_matrix: tuple[tuple[int, ...], ...]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (lists for tuples)."""
        return {
            "classes": list(self.classes),
            "rows": self.rows,
            "micro_accuracy": self.micro_accuracy,
            "macro_accuracy": self.macro_accuracy,
            "log_loss": self.log_loss,
            "log_loss_reduction": self.log_loss_reduction,
            "top_k": self.top_k,
            "top_k_accuracy": self.top_k_accuracy,
            "per_class_log_loss": list(self.per_class_log_loss),
            "confusion_matrix": [list(row) for row in self.confusion_matrix],
        }


def multiclass_metrics(
    true_index: npt.ArrayLike,
    probabilities: npt.ArrayLike,
    *,
    classes: tuple[int, ...],
    top_k: int = DEFAULT_TOP_K,
) -> MulticlassMetrics:
    """Evaluate probabilities against true classes given as indices into ``classes``.

    Raises:
        ConfigurationError: ``top_k`` is not between 1 and the number of classes.
        TrainingError: no rows, shapes disagree, an index is out of range, or a
            probability is not finite.
    """
    k = len(classes)
    if not 1 <= top_k <= k:
        raise ConfigurationError(f"top_k must be between 1 and {k}")
    y = np.asarray(true_index, dtype=np.int64)
    p = np.asarray(probabilities, dtype=np.float64)
    n = len(y)
    if n == 0:
        raise TrainingError("no rows to evaluate")
    if p.shape != (n, k):
        raise TrainingError(f"probabilities have shape {p.shape}, expected ({n}, {k})")
    if y.min() < 0 or y.max() >= k:
        raise TrainingError("a true class index is out of range")
    if not np.isfinite(p).all():
        raise TrainingError("a predicted probability is not finite")

    ranking = np.argsort(-p, axis=1, kind="stable")
    predicted = ranking[:, 0]
    correct = predicted == y
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (y, predicted), 1)
    class_rows = confusion.sum(axis=1)

    present = class_rows > 0
    recall = np.divide(np.diag(confusion), class_rows, where=present, out=np.zeros(k))
    macro = float(recall[present].mean())

    row_loss = -np.log(np.clip(p[np.arange(n), y], EPSILON, 1.0))
    log_loss = float(row_loss.mean())
    per_class_sum = np.bincount(y, weights=row_loss, minlength=k)
    per_class = np.divide(per_class_sum, class_rows, where=present, out=np.zeros(k))

    q = class_rows[present] / n
    entropy = float(-(q * np.log(q)).sum())
    reduction = None if entropy <= 0.0 else (entropy - log_loss) / entropy

    top_hit = (ranking[:, :top_k] == y[:, None]).any(axis=1)
    return MulticlassMetrics(
        classes=tuple(classes),
        rows=n,
        micro_accuracy=float(correct.mean()),
        macro_accuracy=macro,
        log_loss=log_loss,
        log_loss_reduction=None if reduction is None or math.isnan(reduction) else reduction,
        top_k=top_k,
        top_k_accuracy=float(top_hit.mean()),
        per_class_log_loss=tuple(float(v) for v in per_class),
        confusion_matrix=tuple(tuple(int(v) for v in row) for row in confusion),
    )


def evaluate(
    model: TrainedModel, frame: pd.DataFrame, *, top_k: int = DEFAULT_TOP_K
) -> MulticlassMetrics:
    """Score ``model`` on the rows of ``frame`` (features and label per the model's spec).

    Example::

        metrics = evaluate(model, test_rows)
        metrics.micro_accuracy, metrics.to_dict()

    Raises:
        ConfigurationError: a bad ``top_k``.
        TrainingError: a column is absent, a label is missing or outside the classes,
            or there are no rows.
    """
    y = label_indices(frame, model.spec)
    return multiclass_metrics(
        y, model.predict_proba(frame), classes=model.spec.classes, top_k=top_k
    )


__all__ = ["DEFAULT_TOP_K", "EPSILON", "MulticlassMetrics", "evaluate", "multiclass_metrics"]

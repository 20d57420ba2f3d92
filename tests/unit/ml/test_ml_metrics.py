"""ML.NET's multiclass metrics: a hand-computed known answer, cross-checks, edge cases."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, log_loss

from cleanroom.errors import ConfigurationError, TrainingError
from cleanroom.ml import multiclass_metrics

Y = [0, 1, 2, 2]
P = [
    [0.7, 0.2, 0.1],
    [0.3, 0.3, 0.4],  # true 1, predicted 2; 0 and 1 tie for second place
    [0.1, 0.1, 0.8],
    [0.5, 0.5, 0.0],  # tie: predicted 0 (first); true class has probability 0 → ε
]


def test_known_answer() -> None:
    m = multiclass_metrics(Y, P, classes=(0, 1, 2), top_k=2)
    eps_loss = -math.log(1e-15)
    losses = [-math.log(0.7), -math.log(0.3), -math.log(0.8), eps_loss]
    entropy = -(0.25 * math.log(0.25) * 2 + 0.5 * math.log(0.5))
    assert m.rows == 4
    assert m.micro_accuracy == 0.5
    assert m.macro_accuracy == pytest.approx((1 + 0 + 0.5) / 3)
    assert m.log_loss == pytest.approx(sum(losses) / 4)
    assert m.log_loss_reduction == pytest.approx((entropy - sum(losses) / 4) / entropy)
    # Top-2: row 0 yes; row 1 ranks [2, 0, 1] so no; row 2 yes; row 3 ranks [0, 1, 2] so no.
    assert m.top_k_accuracy == 0.5
    assert m.per_class_log_loss == pytest.approx(
        (losses[0], losses[1], (losses[2] + losses[3]) / 2)
    )
    assert m.confusion_matrix == ((1, 0, 0), (0, 0, 1), (1, 0, 1))


def test_agrees_with_scikit_learn_on_random_predictions() -> None:
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(5), size=500)
    y = rng.integers(0, 5, 500)
    m = multiclass_metrics(y, p, classes=(0, 1, 2, 3, 4), top_k=3)
    assert m.micro_accuracy == pytest.approx(float(np.mean(p.argmax(1) == y)))
    assert m.macro_accuracy == pytest.approx(balanced_accuracy_score(y, p.argmax(1)))
    assert m.log_loss == pytest.approx(log_loss(y, p, labels=[0, 1, 2, 3, 4]))
    assert np.array_equal(np.array(m.confusion_matrix), confusion_matrix(y, p.argmax(1)))
    top3 = np.argsort(-p, axis=1)[:, :3]
    assert m.top_k_accuracy == pytest.approx(float(np.mean((top3 == y[:, None]).any(1))))


def test_macro_accuracy_skips_classes_absent_from_the_test_rows() -> None:
    m = multiclass_metrics(
        [0, 0, 1], [[0.9, 0.1, 0], [0.2, 0.8, 0], [0.1, 0.9, 0]], classes=(0, 1, 2)
    )
    assert m.macro_accuracy == pytest.approx((0.5 + 1.0) / 2)
    assert m.per_class_log_loss[2] == 0.0


def test_a_perfect_model_and_the_prior() -> None:
    y = [0, 1, 1, 2]
    perfect = multiclass_metrics(y, np.eye(3)[y], classes=(0, 1, 2))
    assert perfect.log_loss == pytest.approx(0.0, abs=1e-12)
    assert perfect.log_loss_reduction == pytest.approx(1.0)
    prior = multiclass_metrics(y, [[0.25, 0.5, 0.25]] * 4, classes=(0, 1, 2))
    assert prior.log_loss_reduction == pytest.approx(0.0, abs=1e-12)
    worse = multiclass_metrics(y, [[0.8, 0.1, 0.1]] * 4, classes=(0, 1, 2))
    assert worse.log_loss_reduction is not None
    assert worse.log_loss_reduction < 0


def test_reduction_is_undefined_for_a_single_class_and_to_dict_is_json() -> None:
    m = multiclass_metrics([1, 1], [[0.2, 0.8], [0.4, 0.6]], classes=(0, 1))
    assert m.log_loss_reduction is None
    data = json.loads(json.dumps(m.to_dict()))
    assert data["log_loss_reduction"] is None
    assert data["confusion_matrix"] == [[0, 0], [0, 2]]
    assert data["classes"] == [0, 1]


def test_bad_inputs() -> None:
    with pytest.raises(ConfigurationError):
        multiclass_metrics(Y, P, classes=(0, 1, 2), top_k=4)
    with pytest.raises(ConfigurationError):
        multiclass_metrics(Y, P, classes=(0, 1, 2), top_k=0)
    with pytest.raises(TrainingError, match="no rows"):
        multiclass_metrics([], np.zeros((0, 3)), classes=(0, 1, 2))
    with pytest.raises(TrainingError, match="shape"):
        multiclass_metrics(Y, np.zeros((4, 2)), classes=(0, 1, 2))
    with pytest.raises(TrainingError, match="out of range"):
        multiclass_metrics([0, 3], np.full((2, 3), 1 / 3), classes=(0, 1, 2))
    with pytest.raises(TrainingError, match="finite"):
        multiclass_metrics([0], [[np.nan, 0.5, 0.5]], classes=(0, 1, 2))

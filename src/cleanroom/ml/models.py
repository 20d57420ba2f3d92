"""The algorithms a contract may name, their hyperparameters, and training.

``"multinomial_logistic_regression"``
    the maximum-entropy model that ML.NET's ``SdcaMaximumEntropy`` trainer fits in the
    article: scikit-learn's ``LogisticRegression`` (softmax over classes, L2 penalty),
    solved by L-BFGS (or SAGA), ``random_state=0``. L-BFGS runs over blocks of a float32
    design matrix (:mod:`cleanroom.ml.logistic`: scikit-learn's objective and optimizer
    settings, its memory per row cut to the matrix); SAGA is scikit-learn's own fit.
``"gradient_boosted_trees"``
    scikit-learn's ``HistGradientBoostingClassifier`` (one tree per class per round,
    softmax), ``random_state=0``, early stopping off unless asked for.

Training is deterministic: the same rows, spec, algorithm, hyperparameters and seed give
the same fitted model and the same ONNX bytes. Numerical libraries run on ``threads``
threads (default 1): besides keeping results reproducible across machines, OpenMP
spin-waiting makes HistGradientBoosting many times *slower* with more threads than free
cores, which is the common case on a shared enclave host.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from cleanroom.errors import ConfigurationError, TrainingError
from cleanroom.ml.design import blocks, design_matrix, fit_preprocessor
from cleanroom.ml.features import (
    FeatureSpec,
    Featurization,
    check_featurization,
    labels,
    model_input,
)
from cleanroom.ml.logistic import fit_logistic

Algorithm = Literal["multinomial_logistic_regression", "gradient_boosted_trees"]

_LR: Final = "multinomial_logistic_regression"
_GBT: Final = "gradient_boosted_trees"

#: Default hyperparameters per algorithm; a contract may override any of these keys.
DEFAULT_HYPERPARAMETERS: Final[Mapping[str, Mapping[str, Any]]] = MappingProxyType(
    {
        _LR: MappingProxyType(
            {"C": 1.0, "max_iter": 1000, "tol": 1e-4, "solver": "lbfgs", "class_weight": None}
        ),
        _GBT: MappingProxyType(
            {
                "learning_rate": 0.1,
                "max_iter": 100,
                "max_leaf_nodes": 31,
                "max_depth": None,
                "min_samples_leaf": 20,
                "l2_regularization": 0.0,
                "early_stopping": False,
                "class_weight": None,
            }
        ),
    }
)

#: The algorithm names a contract may use.
ALGORITHMS: Final[tuple[str, ...]] = tuple(DEFAULT_HYPERPARAMETERS)


def check_algorithm(algorithm: str) -> Algorithm:
    """``algorithm`` if it is one of :data:`ALGORITHMS`.

    Raises:
        ConfigurationError: it is not.
    """
    if algorithm == _LR:
        return _LR
    if algorithm == _GBT:
        return _GBT
    raise ConfigurationError(
        f"unknown algorithm {algorithm!r}; choose one of {', '.join(ALGORITHMS)}"
    )


def _positive_float(key: str, value: Any, *, zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"hyperparameter {key!r} must be a number")
    number = float(value)
    if not np.isfinite(number) or number < 0 or (number == 0 and not zero):
        raise ConfigurationError(f"hyperparameter {key!r} must be {'≥' if zero else '>'} 0")
    return number


def _int_at_least(key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"hyperparameter {key!r} must be an integer")
    if value < minimum:
        raise ConfigurationError(f"hyperparameter {key!r} must be ≥ {minimum}")
    return int(value)


def _choice(key: str, value: Any, choices: tuple[Any, ...]) -> Any:
    # Identity for None, equality for strings only (so 0 or True never match a choice).
    if not any(value is c or (isinstance(value, str) and value == c) for c in choices):
        raise ConfigurationError(f"hyperparameter {key!r} must be one of {choices!r}")
    return value


def _check_value(key: str, value: Any) -> Any:
    if key in ("C", "tol", "learning_rate"):
        return _positive_float(key, value)
    if key == "l2_regularization":
        return _positive_float(key, value, zero=True)
    if key == "max_iter":
        return _int_at_least(key, value, 1)
    if key == "max_leaf_nodes":
        return _int_at_least(key, value, 2)
    if key == "min_samples_leaf":
        return _int_at_least(key, value, 1)
    if key == "max_depth":
        return None if value is None else _int_at_least(key, value, 1)
    if key == "solver":
        return _choice(key, value, ("lbfgs", "saga"))
    if key == "class_weight":
        return _choice(key, value, (None, "balanced"))
    if key == "early_stopping":
        if not isinstance(value, bool):
            raise ConfigurationError(f"hyperparameter {key!r} must be true or false")
        return value
    raise ConfigurationError(f"hyperparameter {key!r} has no validation rule")  # unreachable


def resolve_hyperparameters(
    algorithm: str, hyperparameters: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The full, validated hyperparameters: the defaults of ``algorithm`` overridden.

    Example::

        resolve_hyperparameters("multinomial_logistic_regression", {"C": 0.5})

    Raises:
        ConfigurationError: unknown algorithm, unknown key (named in the message) or a
            value of the wrong type or range.
    """
    name = check_algorithm(algorithm)
    defaults = DEFAULT_HYPERPARAMETERS[name]
    resolved = dict(defaults)
    for key, value in (hyperparameters or {}).items():
        if key not in defaults:
            raise ConfigurationError(
                f"unknown hyperparameter {key!r} for {name}; known: {', '.join(sorted(defaults))}"
            )
        resolved[key] = _check_value(key, value)
    return resolved


def _estimator(algorithm: Algorithm, params: Mapping[str, Any], seed: int) -> Any:
    if algorithm == _LR:
        return LogisticRegression(
            C=params["C"],
            max_iter=params["max_iter"],
            tol=params["tol"],
            solver=params["solver"],
            class_weight=params["class_weight"],
            random_state=seed,
        )
    return HistGradientBoostingClassifier(
        learning_rate=params["learning_rate"],
        max_iter=params["max_iter"],
        max_leaf_nodes=params["max_leaf_nodes"],
        max_depth=params["max_depth"],
        min_samples_leaf=params["min_samples_leaf"],
        l2_regularization=params["l2_regularization"],
        early_stopping=params["early_stopping"],
        class_weight=params["class_weight"],
        random_state=seed,
    )


@contextlib.contextmanager
def _threads(threads: int | None) -> Iterator[None]:
    if threads is None:
        yield
        return
    with threadpool_limits(limits=threads):
        yield


@dataclass(frozen=True, eq=False)
class TrainedModel:
    """A fitted pipeline (preprocessing + estimator) with what it was trained under.

    :meth:`predict_proba` always returns one column per ``spec.classes`` entry, in that
    order; a class absent from the training rows gets probability 0 (the fitted
    estimator, and so the ONNX model, has only the classes it saw: ``model_classes``).
    """

    spec: FeatureSpec
    featurization: Featurization
    algorithm: Algorithm
    hyperparameters: Mapping[str, Any]
    seed: int
    pipeline: Pipeline
    threads: int | None = 1

    @property
    def model_classes(self) -> tuple[int, ...]:
        """The classes the estimator saw in training (its probability columns)."""
        return tuple(int(c) for c in self.pipeline.classes_)

    def align(self, probabilities: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.float64]:
        """Estimator-ordered probabilities → one column per ``spec.classes`` entry."""
        out = np.zeros((probabilities.shape[0], len(self.spec.classes)), dtype=np.float64)
        columns = [self.spec.classes.index(c) for c in self.model_classes]
        out[:, columns] = probabilities
        return out

    def predict_proba(self, frame: pd.DataFrame) -> npt.NDArray[np.float64]:
        """Class probabilities of every row of ``frame`` (columns: ``spec.classes``).

        Rows are scored :data:`~cleanroom.ml.design.BLOCK_ROWS` at a time: the memory
        depends on the blocks, the probabilities only in the last bit (the logistic
        model's logits are a BLAS product per block, whose edge rows may be rounded by
        another kernel; trees score row by row and are exact).
        """
        out = np.empty((len(frame), len(self.spec.classes)), dtype=np.float64)
        start = 0
        for block in blocks([frame]):
            x = model_input(block, self.spec, self.featurization)
            with _threads(self.threads):
                raw = self.pipeline.predict_proba(x)
            out[start : start + len(block)] = self.align(np.asarray(raw, dtype=np.float64))
            start += len(block)
        return out

    def predict(self, frame: pd.DataFrame) -> npt.NDArray[np.int64]:
        """The most probable class of every row (the first one on a tie)."""
        proba = self.predict_proba(frame)
        classes: npt.NDArray[np.int64] = np.asarray(self.spec.classes, dtype=np.int64)
        predicted: npt.NDArray[np.int64] = classes[np.argmax(proba, axis=1)]
        return predicted

    def describe(self) -> dict[str, Any]:
        """Algorithm, featurization, hyperparameters, seed and spec (for receipts)."""
        return {
            "algorithm": self.algorithm,
            "featurization": self.featurization,
            "hyperparameters": dict(self.hyperparameters),
            "seed": self.seed,
            "model_classes": list(self.model_classes),
            "spec": self.spec.to_dict(),
        }


def train(
    frame: pd.DataFrame | Sequence[pd.DataFrame],
    *,
    spec: FeatureSpec,
    algorithm: str = _LR,
    hyperparameters: Mapping[str, Any] | None = None,
    featurization: str = "schema",
    seed: int = 0,
    threads: int | None = 1,
) -> TrainedModel:
    """Fit ``algorithm`` on the rows of ``frame`` (feature columns and label per ``spec``).

    ``frame`` may be a sequence of frames (e.g. every party's training rows): their rows
    are used in order, without concatenating them. The design matrix is built in blocks
    (:mod:`cleanroom.ml.design`): the working memory is the matrix itself and the
    estimator's own, not the several whole-set intermediates of ``Pipeline.fit``.

    Example::

        model = train(pooled_train, spec=medical_record_spec(),
                      algorithm="gradient_boosted_trees", hyperparameters={"max_iter": 50})

    Raises:
        ConfigurationError: unknown algorithm, featurization or hyperparameter, a bad
            value, a negative seed, ``threads`` below 1, or trees with ``"article"``.
        TrainingError: a column is absent, a label is missing or outside the classes, the
            rows hold fewer than two classes, or the estimator fails.
    """
    name = check_algorithm(algorithm)
    feats = check_featurization(featurization)
    params = resolve_hyperparameters(name, hyperparameters)
    if name == _GBT and feats == "article":
        # One-hot of every numeric value gives trees ~1,000 dense binary columns: hours
        # of training for a design trees do not need (they split numeric values directly).
        raise ConfigurationError(
            "gradient_boosted_trees takes the 'schema' featurization only, not 'article'"
        )
    if seed < 0:
        raise ConfigurationError("seed must be non-negative")
    if threads is not None and threads < 1:
        raise ConfigurationError("threads must be at least 1 (or None for all cores)")
    frames = [frame] if isinstance(frame, pd.DataFrame) else list(frame)
    y = np.concatenate([labels(part, spec) for part in frames]) if frames else np.empty(0)
    if len(np.unique(y)) < 2:
        raise TrainingError("the training rows hold fewer than two classes")
    frames = [part for part in frames if len(part)]
    # L-BFGS logistic regression streams over blocks of a float32 design matrix
    # (cleanroom.ml.logistic); SAGA and the trees take scikit-learn's own fit.
    streamed = name == _LR and params["solver"] == "lbfgs"
    try:
        with _threads(threads):
            preprocessor = fit_preprocessor(
                frames, spec, feats, scale=name == _LR, dense=name == _GBT
            )
            x = design_matrix(preprocessor, frames, spec, feats, compact=streamed)
            if streamed:
                estimator = fit_logistic(
                    x,
                    y,
                    C=params["C"],
                    max_iter=params["max_iter"],
                    tol=params["tol"],
                    class_weight=params["class_weight"],
                    seed=seed,
                )
            else:
                estimator = _estimator(name, params, seed).fit(x, y)
            del x
    except (ValueError, ArithmeticError, MemoryError) as exc:
        # The estimator's message may quote data; say only which estimator failed.
        raise TrainingError(f"{name} failed to fit: {type(exc).__name__}") from None
    pipeline = Pipeline([("features", preprocessor), ("model", estimator)])
    return TrainedModel(
        spec=spec,
        featurization=feats,
        algorithm=name,
        hyperparameters=MappingProxyType(params),
        seed=seed,
        pipeline=pipeline,
        threads=threads,
    )


__all__ = [
    "ALGORITHMS",
    "DEFAULT_HYPERPARAMETERS",
    "Algorithm",
    "TrainedModel",
    "check_algorithm",
    "resolve_hyperparameters",
    "train",
]

"""What each party gained by pooling: the article's "90 % alone, 96 % together", measured.

Given every party's ``(train, test)`` rows, :func:`collaboration_report` trains

- for each party, a model on that party's training rows alone, and scores it on its own
  test rows, on every other party's test rows and on all test rows together;
- one pooled model on all training rows, scored on each party's test rows and on all.

A party's **gain** is the pooled model's micro accuracy on that party's own test rows
minus its own model's (the quantity a hospital cares about: "how much better are my
patients' predictions because I joined"). ``gain_on_all`` is the same on everyone's test
rows (how much better the pooled model generalizes than a single site's). The article's
headline pair is ``mean_alone_accuracy`` (the mean of each party's own model on its own
test rows) against ``pooled_accuracy`` (the pooled model on all test rows).

Every model uses the same spec, featurization, algorithm, hyperparameters and seed, so
the comparison isolates the data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from cleanroom.errors import ConfigurationError, TrainingError
from cleanroom.ml.features import FeatureSpec, label_indices
from cleanroom.ml.metrics import DEFAULT_TOP_K, MulticlassMetrics, multiclass_metrics
from cleanroom.ml.models import TrainedModel, train


@dataclass(frozen=True, kw_only=True)
class PartyOutcome:
    """One party's side of the collaboration report."""

    party: str
    train_rows: int
    test_rows: int
    alone_on_own: MulticlassMetrics
    alone_on_all: MulticlassMetrics
    #: Micro accuracy of this party's own model on each party's test rows.
    alone_accuracy_by_party: Mapping[str, float]
    pooled_on_own: MulticlassMetrics

    @property
    def gain(self) -> float:
        """Pooled minus alone micro accuracy, on this party's test rows."""
        return self.pooled_on_own.micro_accuracy - self.alone_on_own.micro_accuracy

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "party": self.party,
            "train_rows": self.train_rows,
            "test_rows": self.test_rows,
            "alone_on_own": self.alone_on_own.to_dict(),
            "alone_on_all": self.alone_on_all.to_dict(),
            "alone_accuracy_by_party": dict(self.alone_accuracy_by_party),
            "pooled_on_own": self.pooled_on_own.to_dict(),
            "gain": self.gain,
        }


@dataclass(frozen=True, kw_only=True)
class CollaborationReport:
    """Per-party alone-vs-pooled metrics, and the pooled model on all test rows."""

    algorithm: str
    featurization: str
    hyperparameters: Mapping[str, Any]
    seed: int
    parties: tuple[PartyOutcome, ...]
    pooled_on_all: MulticlassMetrics

    @property
    def mean_alone_accuracy(self) -> float:
        """Mean over parties of their own model's accuracy on their own test rows."""
        return sum(p.alone_on_own.micro_accuracy for p in self.parties) / len(self.parties)

    @property
    def pooled_accuracy(self) -> float:
        """The pooled model's micro accuracy on all test rows."""
        return self.pooled_on_all.micro_accuracy

    def gain_on_all(self, party: str) -> float:
        """Pooled minus ``party``'s own model's micro accuracy, on all test rows."""
        outcome = self.party(party)
        return self.pooled_on_all.micro_accuracy - outcome.alone_on_all.micro_accuracy

    def party(self, name: str) -> PartyOutcome:
        """The outcome of the party called ``name``.

        Raises:
            KeyError: no such party.
        """
        for outcome in self.parties:
            if outcome.party == name:
                return outcome
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "algorithm": self.algorithm,
            "featurization": self.featurization,
            "hyperparameters": dict(self.hyperparameters),
            "seed": self.seed,
            "parties": [
                {**p.to_dict(), "gain_on_all": self.gain_on_all(p.party)} for p in self.parties
            ],
            "pooled_on_all": self.pooled_on_all.to_dict(),
            "mean_alone_accuracy": self.mean_alone_accuracy,
            "pooled_accuracy": self.pooled_accuracy,
        }


def pool(frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """The rows of every party, concatenated in the mapping's order (a fresh index)."""
    if not frames:
        raise ConfigurationError("no parties")
    return pd.concat(list(frames.values()), ignore_index=True)


def collaboration_report(
    splits: Mapping[str, tuple[pd.DataFrame, pd.DataFrame]],
    *,
    spec: FeatureSpec,
    algorithm: str = "multinomial_logistic_regression",
    hyperparameters: Mapping[str, Any] | None = None,
    featurization: str = "schema",
    seed: int = 0,
    top_k: int = DEFAULT_TOP_K,
    pooled: TrainedModel | None = None,
    threads: int | None = 1,
) -> CollaborationReport:
    """Train alone and pooled models and score them (module docstring).

    ``splits`` maps each party to its ``(train, test)`` rows. Pass ``pooled`` to reuse a
    pooled model already trained on exactly the concatenated training rows with the same
    settings (the enclave job trains it once for its sealed output).

    Example::

        halves = {p: train_test_split(df, label="risk") for p, df in sites.items()}
        report = collaboration_report({p: (h.train, h.test) for p, h in halves.items()},
                                      spec=medical_record_spec())
        report.mean_alone_accuracy, report.pooled_accuracy

    Raises:
        ConfigurationError: no parties, or a setting is invalid.
        TrainingError: a party's rows cannot train a model (the message names the
            party) or a party has no test rows.
    """
    if not splits:
        raise ConfigurationError("no parties")
    settings: dict[str, Any] = {
        "spec": spec,
        "algorithm": algorithm,
        "hyperparameters": hyperparameters,
        "featurization": featurization,
        "seed": seed,
        "threads": threads,
    }
    for party, (_, test) in splits.items():
        if len(test) == 0:
            raise TrainingError(f"party {party!r} has no test rows")
    if pooled is None:
        pooled = train([tr for tr, _ in splits.values()], **settings)
    # Each model scores each party's test rows once; "all test rows" is their union.
    labels = {p: label_indices(te, spec) for p, (_, te) in splits.items()}
    all_labels = np.concatenate(list(labels.values()))

    def scored(model: TrainedModel) -> dict[str, npt.NDArray[np.float64]]:
        return {p: model.predict_proba(te) for p, (_, te) in splits.items()}

    def metrics(y: npt.NDArray[np.int64], proba: npt.NDArray[np.float64]) -> MulticlassMetrics:
        return multiclass_metrics(y, proba, classes=spec.classes, top_k=top_k)

    pooled_scores = scored(pooled)
    outcomes: list[PartyOutcome] = []
    for party, (train_rows, test_rows) in splits.items():
        try:
            alone = train(train_rows, **settings)
        except TrainingError as exc:
            raise TrainingError(f"party {party!r}: {exc}") from None
        scores = scored(alone)
        by_party = {other: metrics(labels[other], scores[other]) for other in splits}
        outcomes.append(
            PartyOutcome(
                party=party,
                train_rows=len(train_rows),
                test_rows=len(test_rows),
                alone_on_own=by_party[party],
                alone_on_all=metrics(all_labels, np.concatenate(list(scores.values()))),
                alone_accuracy_by_party={o: m.micro_accuracy for o, m in by_party.items()},
                pooled_on_own=metrics(labels[party], pooled_scores[party]),
            )
        )
    return CollaborationReport(
        algorithm=pooled.algorithm,
        featurization=pooled.featurization,
        hyperparameters=pooled.hyperparameters,
        seed=seed,
        parties=tuple(outcomes),
        pooled_on_all=metrics(all_labels, np.concatenate(list(pooled_scores.values()))),
    )


__all__ = ["CollaborationReport", "PartyOutcome", "collaboration_report", "pool"]

"""Result types of a classified document; `to_dict()` gives the JSON shape of `POST /classify`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# A document-level actor label needs a mean net score (support - oppose) at least this far from zero.
SUMMARY_THRESHOLD = 0.15


@dataclass
class Prediction:
    label: str
    scores: dict[str, float]


@dataclass
class MentionOut:
    text: str
    start: int
    end: int


@dataclass
class PairResult:
    actor: str
    mentions: list[MentionOut]
    stance: Prediction
    mentioned: bool = True


@dataclass
class SentenceResult:
    index: int
    text: str
    start: int
    end: int
    sentiment: Prediction
    actors: list[PairResult] = field(default_factory=list)


@dataclass
class ActorSummary:
    actor: str
    type: str
    mentions: int
    support: int
    oppose: int
    neutral: int
    net: float
    label: str


@dataclass
class DocumentResult:
    model: dict[str, str]
    sentences: list[SentenceResult]
    actors: list[ActorSummary]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarise(name: str, kind: str, n_mentions: int, pairs: list[PairResult]) -> ActorSummary:
    """Counts of each stance label, the mean net score, and an overall label for one actor."""
    counts = {"support": 0, "oppose": 0, "neutral": 0}
    for pair in pairs:
        counts[pair.stance.label] = counts.get(pair.stance.label, 0) + 1
    nets = [p.stance.scores.get("support", 0.0) - p.stance.scores.get("oppose", 0.0) for p in pairs]
    net = round(sum(nets) / len(nets), 4) if nets else 0.0
    label = "support" if net >= SUMMARY_THRESHOLD else "oppose" if net <= -SUMMARY_THRESHOLD else "neutral"
    return ActorSummary(name, kind, n_mentions, counts["support"], counts["oppose"], counts["neutral"], net, label)

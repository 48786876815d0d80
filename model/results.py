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
class RelationResult:
    holder: str
    target: str
    label: str
    scores: dict[str, float]
    sentence_index: int


@dataclass
class RelationSummary:
    holder: str
    target: str
    sentences: list[int]
    support: int
    oppose: int
    neutral: int
    net: float
    label: str


@dataclass
class SentenceResult:
    index: int
    text: str
    start: int
    end: int
    sentiment: Prediction
    actors: list[PairResult] = field(default_factory=list)
    relations: list[RelationResult] | None = None


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
    relations: list[RelationSummary] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape; `relations` keys appear only when relations were asked for."""
        data = asdict(self)
        if self.relations is None:
            del data["relations"]
            for sentence in data["sentences"]:
                del sentence["relations"]
        return data


def _tally(predictions: list[Prediction]) -> tuple[dict[str, int], float, str]:
    """Counts of each label, the mean net score (support − oppose) and the overall label."""
    counts = {"support": 0, "oppose": 0, "neutral": 0}
    for p in predictions:
        counts[p.label] = counts.get(p.label, 0) + 1
    nets = [p.scores.get("support", 0.0) - p.scores.get("oppose", 0.0) for p in predictions]
    net = round(sum(nets) / len(nets), 4) if nets else 0.0
    label = "support" if net >= SUMMARY_THRESHOLD else "oppose" if net <= -SUMMARY_THRESHOLD else "neutral"
    return counts, net, label


def summarise(name: str, kind: str, n_mentions: int, pairs: list[PairResult]) -> ActorSummary:
    """The document summary of one actor over the sentences that scored it."""
    counts, net, label = _tally([p.stance for p in pairs])
    return ActorSummary(name, kind, n_mentions, counts["support"], counts["oppose"], counts["neutral"], net, label)


def summarise_relations(relations: list[RelationResult]) -> list[RelationSummary]:
    """One entry per ordered (holder, target) over the document's sentences."""
    grouped: dict[tuple[str, str], list[RelationResult]] = {}
    for r in relations:
        grouped.setdefault((r.holder, r.target), []).append(r)
    out = []
    for (holder, target), items in grouped.items():
        counts, net, label = _tally([Prediction(r.label, r.scores) for r in items])
        sentences = [r.sentence_index for r in items]
        out.append(RelationSummary(holder, target, sentences, counts["support"], counts["oppose"], counts["neutral"], net, label))
    return out

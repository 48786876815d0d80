"""Label maps shared by training, inference and the service."""

from __future__ import annotations

STANCE_LABELS: tuple[str, ...] = ("support", "oppose", "neutral")
SENTIMENT_LABELS: tuple[str, ...] = ("positive", "negative", "neutral")
# Directed relation holder → target.
RELATION_LABELS: tuple[str, ...] = ("support", "oppose", "neutral")

# NewsMTSC polarity codes: 2.0 negative, 4.0 neutral, 6.0 positive.
NEWSMTSC_POLARITY_TO_STANCE: dict[float, str] = {2.0: "oppose", 4.0: "neutral", 6.0: "support"}


def label_index(labels: tuple[str, ...]) -> dict[str, int]:
    """Map each label name to its position."""
    return {name: i for i, name in enumerate(labels)}

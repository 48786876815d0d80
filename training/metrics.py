"""Classification metrics, temperature scaling and calibration error."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import torch


def classification_report(gold: Sequence[int], pred: Sequence[int], labels: Sequence[str]) -> dict[str, Any]:
    """macro-F1, accuracy, per-class precision/recall/F1/support, confusion (rows gold, columns predicted), n."""
    k = len(labels)
    confusion = [[0] * k for _ in range(k)]
    for g, p in zip(gold, pred, strict=True):
        confusion[g][p] += 1
    per_class: dict[str, dict[str, float]] = {}
    f1s = []
    for i, name in enumerate(labels):
        tp = confusion[i][i]
        predicted = sum(confusion[r][i] for r in range(k))
        actual = sum(confusion[i])
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4), "support": actual}
        f1s.append(f1)
    n = len(gold)
    return {
        "macro_f1": round(sum(f1s) / k, 4) if k else 0.0,
        "accuracy": round(sum(confusion[i][i] for i in range(k)) / n, 4) if n else 0.0,
        "per_class": per_class,
        "confusion": confusion,
        "labels": list(labels),
        "n": n,
    }


def expected_calibration_error(probs: torch.Tensor, gold: torch.Tensor, bins: int = 15) -> float:
    """ECE with equal-width confidence bins."""
    if len(gold) == 0:
        return 0.0
    confidence, predicted = probs.max(dim=-1)
    correct = (predicted == gold).float()
    edges = torch.linspace(0, 1, bins + 1)
    ece = torch.zeros(())
    for lo, hi in pairwise(edges):
        in_bin = (confidence > lo) & (confidence <= hi)
        if in_bin.any():
            ece += in_bin.float().mean() * (confidence[in_bin].mean() - correct[in_bin].mean()).abs()
    return round(float(ece), 4)


def fit_temperature(logits: torch.Tensor, gold: torch.Tensor) -> float:
    """The temperature that minimises dev NLL (grid search, then a fine step; deterministic)."""
    if len(gold) == 0:
        return 1.0

    def nll(t: float) -> float:
        return float(torch.nn.functional.cross_entropy(logits / t, gold))

    grid = [0.5 + 0.05 * i for i in range(71)]
    best = min(grid, key=nll)
    fine = [best - 0.05 + 0.005 * i for i in range(21)]
    return round(min((t for t in fine if t > 0), key=nll), 3)

"""Evaluate a model on labelled data: one report per head, in the shape `stance evaluate --json` prints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from model.predictor import StancePredictor
from training.data import LabelledData, load_file
from training.trainer import evaluate_sentiment, evaluate_stance


def evaluate_data(predictor: StancePredictor, data: LabelledData) -> dict[str, Any]:
    """{"stance": report | None, "sentiment": report | None}."""
    return {
        "stance": evaluate_stance(predictor, data.stance)[0] if data.stance else None,
        "sentiment": evaluate_sentiment(predictor, data.sentiment)[0] if data.sentiment else None,
    }


def evaluate_file(predictor: StancePredictor, path: str | Path, fmt: str = "auto") -> dict[str, Any]:
    return evaluate_data(predictor, load_file(path, fmt))


def format_report(name: str, report: dict[str, Any]) -> str:
    """A readable block: headline scores, per-class table and confusion matrix."""
    labels = report["labels"]
    lines = [f"{name}: macro-F1 {report['macro_f1']:.4f}  accuracy {report['accuracy']:.4f}  n {report['n']}"]
    lines.append(f"  {'class':<10} {'precision':>9} {'recall':>7} {'f1':>7} {'support':>8}")
    for label in labels:
        c = report["per_class"][label]
        lines.append(f"  {label:<10} {c['precision']:>9.4f} {c['recall']:>7.4f} {c['f1']:>7.4f} {c['support']:>8}")
    lines.append("  confusion (rows gold, columns predicted): " + " ".join(f"{lab:>8}" for lab in labels))
    for label, row in zip(labels, report["confusion"], strict=True):
        lines.append(f"  {label:>41} " + " ".join(f"{v:>8}" for v in row))
    return "\n".join(lines)

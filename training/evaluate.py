"""Evaluate models on labelled data: one report per head, in the shape `stance evaluate --json` prints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from model.errors import InvalidInputError
from model.predictor import StancePredictor
from training.data import LabelledData, load_file
from training.metrics import classification_report
from training.trainer import evaluate_sentiment, evaluate_stance


def evaluate_data(predictor: StancePredictor, data: LabelledData, errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """{"stance": report | None, "sentiment": report | None, "relations": report (when the data has relation rows)}.

    Misclassified stance and sentiment items are appended to `errors`.
    """
    out: dict[str, Any] = {"stance": None, "sentiment": None}
    if data.relations:
        labels = predictor.config.relation_labels
        if not labels:
            raise InvalidInputError("the data has relation rows but this model has no relation head")
        probs = predictor.relation_probabilities([e.relation for e in data.relations])
        out["relations"] = classification_report(
            [labels.index(e.label) for e in data.relations], probs.argmax(-1).tolist(), labels
        )
    heads = (
        ("stance", data.stance, evaluate_stance, predictor.config.stance_labels),
        ("sentiment", data.sentiment, evaluate_sentiment, predictor.config.sentiment_labels),
    )
    for head, examples, evaluate, labels in heads:
        if not examples:
            continue
        report, logits, gold = evaluate(predictor, examples)
        out[head] = report
        if errors is not None:
            probs = torch.softmax(logits / predictor.config.temperature[head], dim=-1)
            for example, row, g in zip(examples, probs.tolist(), gold.tolist(), strict=True):
                predicted = max(range(len(labels)), key=lambda i: row[i])
                if predicted != g:
                    item = {"head": head, "text": example.pair.text if head == "stance" else example.text}
                    if head == "stance":
                        item |= {"actor": example.pair.actor, "mentions": [list(m) for m in example.pair.mentions]}
                    item |= {
                        "gold": labels[g],
                        "predicted": labels[predicted],
                        "scores": dict(zip(labels, (round(p, 4) for p in row), strict=True)),
                    }
                    errors.append(item)
    return out


def evaluate_file(
    predictor: StancePredictor, path: str | Path, fmt: str = "auto", errors: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return evaluate_data(predictor, load_file(path, fmt), errors)


def compare(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """Deltas (second − first) of macro-F1, accuracy and per-class precision/recall/F1, per head."""
    delta: dict[str, Any] = {}
    for head in ("stance", "sentiment"):
        a, b = first.get(head), second.get(head)
        if a is None or b is None:
            delta[head] = None
            continue
        delta[head] = {
            "macro_f1": round(b["macro_f1"] - a["macro_f1"], 4),
            "accuracy": round(b["accuracy"] - a["accuracy"], 4),
            "per_class": {
                label: {k: round(b["per_class"][label][k] - a["per_class"][label][k], 4) for k in ("precision", "recall", "f1")}
                for label in a["labels"]
            },
        }
    return delta


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


def format_delta(head: str, delta: dict[str, Any]) -> str:
    lines = [f"{head} delta (second − first): macro-F1 {delta['macro_f1']:+.4f}  accuracy {delta['accuracy']:+.4f}"]
    for label, d in delta["per_class"].items():
        lines.append(f"  {label:<10} precision {d['precision']:+.4f}  recall {d['recall']:+.4f}  f1 {d['f1']:+.4f}")
    return "\n".join(lines)

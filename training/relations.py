"""Train the relation head (holder → target: support / oppose / neutral) on a finished model.

The encoder and the other heads stay frozen, so stance and sentiment do not move and the default path
keeps its speed: the head reads the target's marked stance pass, pooled at the sentence, the target's
markers and the holder's tokens. Features are computed once and cached, then the head trains on them.

    python -m training.relations --model model/default \\
        --train ../shared/data/directed_sentiment_news/train.txt --dev ../shared/data/directed_sentiment_news/valid.txt \\
        --out model/default
"""

from __future__ import annotations

import argparse
import copy
import random
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model.io import read_json, sha256_file
from model.labels import RELATION_LABELS
from model.predictor import StancePredictor
from training.data import RelationExample, load_file
from training.metrics import classification_report, expected_calibration_error, fit_temperature
from training.pipeline import model_card
from training.trainer import Log, _stderr, class_weights

# Neutral training pairs kept per support/oppose pair (the rest of the neutral pairs are dropped, seeded).
NEUTRAL_PER_OTHER = 2.0


def balance(examples: Sequence[RelationExample], neutral_per_other: float, seed: int) -> list[RelationExample]:
    """All support/oppose pairs and at most `neutral_per_other` times as many neutral ones (seeded sample)."""
    others = [e for e in examples if e.label != "neutral"]
    neutral = [e for e in examples if e.label == "neutral"]
    keep = min(len(neutral), int(len(others) * neutral_per_other)) if others else len(neutral)
    return others + random.Random(seed).sample(neutral, keep)


def train_relation_head(
    predictor: StancePredictor,
    train: Sequence[RelationExample],
    dev: Sequence[RelationExample],
    epochs: int = 40,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 13,
    log: Log = _stderr,
) -> dict[str, Any]:
    """Fit a fresh relation head on cached features; keeps the best dev epoch and fits a temperature."""
    predictor.add_relation_head(RELATION_LABELS)
    labels = predictor.config.relation_labels
    log(f"computing features for {len(train)} training and {len(dev)} dev pairs")
    x_train = predictor.relation_features([e.relation for e in train])
    y_train = torch.tensor([labels.index(e.label) for e in train])
    x_dev = predictor.relation_features([e.relation for e in dev])
    y_dev = torch.tensor([labels.index(e.label) for e in dev])
    # The same head without the holder's part of the features: is reading the holder worth it?
    hidden = x_train.shape[1] // 3
    no_holder = _fit(
        predictor, _drop_holder(x_train, hidden), y_train, _drop_holder(x_dev, hidden), y_dev, epochs, lr, batch_size, seed
    )[0]
    log(f"input form [sentence; target markers] without the holder: dev macro-F1 {no_holder['macro_f1']:.4f}")
    predictor.add_relation_head(RELATION_LABELS)
    report, history, logits = _fit(predictor, x_train, y_train, x_dev, y_dev, epochs, lr, batch_size, seed)
    temperature = fit_temperature(logits, y_dev)
    predictor.config.temperature["relation"] = temperature
    log(f"relation dev macro-F1 {report['macro_f1']:.4f} (best epoch {max(history, key=lambda h: h['macro_f1'])['epoch']})")
    return {
        "dev": report,
        "history": history,
        "input_forms": {
            "sentence+target markers+holder tokens": report["macro_f1"],
            "sentence+target markers": no_holder["macro_f1"],
        },
        "calibration": {
            "temperature": temperature,
            "ece_before": expected_calibration_error(torch.softmax(logits, -1), y_dev),
            "ece_after": expected_calibration_error(torch.softmax(logits / temperature, -1), y_dev),
        },
        "train_pairs": dict(Counter(e.label for e in train)),
    }


def _drop_holder(features: torch.Tensor, hidden: int) -> torch.Tensor:
    out = features.clone()
    out[:, 2 * hidden :] = 0.0
    return out


def _fit(
    predictor: StancePredictor,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_dev: torch.Tensor,
    y_dev: torch.Tensor,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
) -> tuple[dict[str, Any], list[dict[str, Any]], torch.Tensor]:
    """Train the predictor's relation head on features; keep the best dev epoch, rounded to fp16 as stored."""
    torch.manual_seed(seed)
    labels = predictor.config.relation_labels
    head = predictor.network.relation_head
    device = predictor.device
    x_train, y_train, x_dev = x_train.to(device), y_train.to(device), x_dev.to(device)
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.01)
    loss_fn = nn.CrossEntropyLoss(weight=class_weights(y_train.tolist(), len(labels)).to(device))
    best, best_state, history = -1.0, None, []
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(1, epochs + 1):
        head.train()
        order = torch.randperm(len(y_train), generator=generator).to(device)
        for i in range(0, len(order), batch_size):
            batch = order[i : i + batch_size]
            loss = loss_fn(head(x_train[batch]), y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        head.eval()
        with torch.no_grad():
            predicted = head(x_dev).argmax(-1).tolist()
        report = classification_report(y_dev.tolist(), predicted, labels)
        history.append({"epoch": epoch, "macro_f1": report["macro_f1"]})
        if report["macro_f1"] > best:
            best, best_state = report["macro_f1"], copy.deepcopy(head.state_dict())
    head.load_state_dict(best_state)
    head.eval()
    with torch.no_grad():
        head.half().float()  # the folder stores fp16: report what is stored
        logits = head(x_dev).cpu()
    return classification_report(y_dev.tolist(), logits.argmax(-1).tolist(), labels), history, logits


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.relations", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="finished model folder (its encoder stays frozen)")
    parser.add_argument("--train", action="append", required=True, help="directed TSV or labelled rows with relations")
    parser.add_argument("--dev", action="append", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument(
        "--neutral-per-other", type=float, default=NEUTRAL_PER_OTHER, help="neutral training pairs per support/oppose pair"
    )
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    args = parser.parse_args(argv)

    predictor = StancePredictor.load(args.model).to(args.device)
    train = [e for path in args.train for e in load_file(path).relations]
    dev = [e for path in args.dev for e in load_file(path).relations]
    result = train_relation_head(
        predictor, balance(train, args.neutral_per_other, args.seed), dev, args.epochs, args.lr, seed=args.seed
    )
    folder = Path(args.model)
    metrics = read_json(folder / "metrics.json") if (folder / "metrics.json").is_file() else {}
    record = read_json(folder / "training.json") if (folder / "training.json").is_file() else {}
    metrics["relations"] = result
    record["relations"] = {
        "command": ["python", "-m", "training.relations", *(argv if argv is not None else sys.argv[1:])],
        "data": {"train": args.train, "dev": args.dev, "sha256": {p: sha256_file(p) for p in [*args.train, *args.dev]}},
        "config": {"epochs": args.epochs, "lr": args.lr, "neutral_per_other": args.neutral_per_other, "seed": args.seed},
    }
    card = model_card(predictor.config, record, metrics)
    predictor.save(args.out, extra={"metrics.json": metrics, "training.json": record, "README.md": card})
    print(f"relation macro-F1 on {', '.join(args.dev)}: {result['dev']['macro_f1']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

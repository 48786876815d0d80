"""Training speed: one epoch over 10,000 stance pairs from the base encoder on this machine.

Pairs come from NewsMTSC train (repeated past its 8,739 targets to reach 10,000), so lengths are real news
lengths. No sentiment rows and no dev evaluation: the figure is the training loop alone. Writes
benchmarks/results/train_epoch.json.

    .venv/bin/python benchmarks/train_epoch.py [--pairs 10000] [--data ../shared/data/newsmtsc/train.jsonl]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import time
from pathlib import Path

import torch

from model.predictor import ModelConfig, StancePredictor
from training.config import TrainConfig
from training.data import LabelledData, load_file
from training.trainer import train

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "newsmtsc" / "train.jsonl"))
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    examples = list(itertools.islice(itertools.cycle(load_file(args.data).stance), args.pairs))
    predictor = StancePredictor.from_base(ModelConfig())
    config = TrainConfig(epochs=1, batch_size=args.batch_size, sentiment_weight=0.0)
    lines: list[str] = []
    started = time.perf_counter()
    train(predictor, LabelledData(stance=examples), LabelledData(), config, log=lines.append)
    elapsed = time.perf_counter() - started
    result = {
        "pairs": len(examples),
        "batch_size": args.batch_size,
        "seconds": round(elapsed, 1),
        "minutes": round(elapsed / 60, 2),
        "pairs_per_s": round(len(examples) / elapsed, 1),
        "target_minutes": 5,
        "threads": torch.get_num_threads(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__},
        "last_progress_line": lines[-1] if lines else None,
    }
    out = ROOT / "benchmarks" / "results" / "train_epoch.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

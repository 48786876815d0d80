"""Training settings: one validated dataclass."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from model.encoding import INPUT_FORMATS
from model.network import STANCE_POOLINGS

# How the relation head (holder → target) learns: on a frozen encoder after the other heads, or in the same loop.
RELATION_TRAINING = ("separate", "joint")


@dataclass
class TrainConfig:
    """Hyperparameters of one training run. Invalid values raise ValueError at construction."""

    input_format: str = "markers"
    stance_pooling: str = "sentence+actor"
    max_length: int = 128
    epochs: int = 3
    lr: float = 5e-5
    head_lr: float = 1e-3
    batch_size: int = 16
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    layer_decay: float = 1.0
    dropout: float = 0.1
    sentiment_weight: float = 0.5
    relation_training: str = "separate"
    relation_weight: float = 0.5  # joint only: weight of the relation loss beside stance (1.0) and sentiment
    seed: int = 13
    patience: int = 2
    threads: int = 0
    device: str = "cpu"  # cpu, cuda, cuda:N or auto (cuda when available)
    # Stance loss weights: inverse class frequency to this power (0: plain cross-entropy, 1: fully balanced).
    class_balance: float = 0.0
    # Stance pairs whose sentence has another labelled actor appear this many times per epoch (NewsMTSC's
    # devtest_mt is all such sentences; its train split has 22% of them).
    multi_actor_repeat: int = 1
    # Adversarial training (FGM): each batch is also trained with its word embeddings moved along the loss
    # gradient, by this L2 norm per example. 0: off. Doubles the cost of a step.
    adversarial: float = 0.0

    def __post_init__(self) -> None:
        checks = {
            "input_format": self.input_format in INPUT_FORMATS,
            "stance_pooling": self.stance_pooling in STANCE_POOLINGS,
            "max_length": 16 <= self.max_length <= 512,
            "epochs": self.epochs >= 1,
            "lr": 0 < self.lr < 1,
            "head_lr": 0 < self.head_lr < 1,
            "batch_size": self.batch_size >= 1,
            "weight_decay": self.weight_decay >= 0,
            "warmup_ratio": 0 <= self.warmup_ratio < 1,
            "layer_decay": 0 < self.layer_decay <= 1,
            "dropout": 0 <= self.dropout < 1,
            "sentiment_weight": self.sentiment_weight >= 0,
            "relation_training": self.relation_training in RELATION_TRAINING,
            "relation_weight": self.relation_weight >= 0,
            "patience": self.patience >= 1,
            "threads": self.threads >= 0,
            "device": re.fullmatch(r"cpu|auto|cuda(:\d+)?", self.device) is not None,
            "class_balance": 0 <= self.class_balance <= 1,
            "multi_actor_repeat": self.multi_actor_repeat >= 1,
            "adversarial": self.adversarial >= 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid training settings: {', '.join(f'{b}={getattr(self, b)!r}' for b in bad)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

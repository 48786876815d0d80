"""actor-stance model package: text pipeline, encoder and heads, load/save."""

from __future__ import annotations

import os
from pathlib import Path

# oneDNN keeps up to 1,024 compiled kernels, and torch's ideep layer up to 1,024 matmul descriptors per thread
# (about 250 kB each), one per input shape: varied batch shapes made a serving process grow by 20-40% under load
# (benchmarks/results/memory.json, benchmarks/PROFILE.md). Smaller caches bound that at no measured cost.
# Both are read at first use, so they apply here, before any scoring; values set by the user win.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "64")
os.environ.setdefault("LRU_CACHE_CAPACITY", "256")

from model.errors import (
    DataFormatError,
    InputTooLargeError,
    InvalidInputError,
    ModelLoadError,
    ModelNotReadyError,
    StanceError,
)
from model.predictor import ModelConfig, PairInput, StancePredictor


def default_model_path() -> Path:
    """The model folder shipped with the package."""
    return Path(__file__).resolve().parent / "default"


__all__ = [
    "DataFormatError",
    "InputTooLargeError",
    "InvalidInputError",
    "ModelConfig",
    "ModelLoadError",
    "ModelNotReadyError",
    "PairInput",
    "StanceError",
    "StancePredictor",
    "default_model_path",
]

"""actor-stance model package: text pipeline, encoder and heads, load/save."""

from __future__ import annotations

import os
from pathlib import Path

# oneDNN keeps up to 1,024 compiled kernels, one per input shape, and varied batch shapes made a serving
# process grow by 20-40% under load (benchmarks/results/memory.json). 64 bounds that at no measured cost.
# Read at oneDNN's first use, so it applies here, before any scoring; a value set by the user wins.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "64")

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

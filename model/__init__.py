"""actor-stance model package: text pipeline, encoder and heads, load/save."""

from __future__ import annotations

from pathlib import Path

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

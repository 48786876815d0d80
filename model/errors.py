"""Domain errors. The service and the CLI map each type to a status code or exit code."""

from __future__ import annotations


class StanceError(Exception):
    """Base class of every error the model package raises on purpose."""

    error_type = "stance_error"


class InvalidInputError(StanceError, ValueError):
    """The caller's input cannot be processed (empty text, bad actor, bad row)."""

    error_type = "invalid_input"


class InputTooLargeError(StanceError):
    """The input is over a configured limit."""

    error_type = "too_large"


class ComputeBudgetError(StanceError):
    """The work would take longer than the configured compute budget."""

    error_type = "timeout"


class ModelNotReadyError(StanceError):
    """No model is loaded yet."""

    error_type = "not_ready"


class ModelLoadError(StanceError):
    """A model folder is missing, incomplete or corrupt."""

    error_type = "model_load"


class DataFormatError(InvalidInputError):
    """A labelled data file has a bad row; the message names the file and line."""

    error_type = "data_format"

    def __init__(self, path: str, line: int | None, message: str) -> None:
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {message}")
        self.detail = message
        self.path = path
        self.line = line

"""Service settings: environment variables prefixed STANCE_ (see the README)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from model import default_model_path


class Settings(BaseSettings):
    """Every knob of the HTTP service."""

    model_config = SettingsConfigDict(env_prefix="STANCE_", protected_namespaces=())

    model_dir: Path = Field(default_factory=default_model_path, description="model folder to serve")
    max_text_chars: int = Field(100_000, ge=1, description="longest text accepted per document")
    max_actors: int = Field(50, ge=0, description="most explicit actors per document")
    threads: int = Field(0, ge=0, description="torch threads for inference (0: torch's default)")

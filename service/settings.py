"""Service settings: environment variables prefixed STANCE_ (see the README)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from model import default_model_path
from model.predictor import COMPILE_HELP, DEFAULT_COMPILE, DEFAULT_PRECISION, INT8_KERNEL_HELP, PRECISION_HELP


class Settings(BaseSettings):
    """Every knob of the HTTP service."""

    model_config = SettingsConfigDict(env_prefix="STANCE_", protected_namespaces=())

    model_dir: Path = Field(default_factory=default_model_path, description="model folder to serve")
    max_text_chars: int = Field(100_000, ge=1, description="longest text accepted per document")
    max_batch_documents: int = Field(64, ge=1, description="most documents per POST /classify/batch")
    max_actors: int = Field(50, ge=0, description="most explicit actors per document")
    max_body_bytes: int = Field(8_000_000, ge=1024, description="largest request body, enforced while reading it")
    batch_max_documents: int = Field(32, ge=1, description="micro-batching: most documents scored together")
    batch_wait_ms: float = Field(5.0, ge=0, description="micro-batching: how long to wait for more requests")
    api_key: SecretStr | None = Field(None, description="bearer key for /admin routes; admin is off without it")
    threads: int = Field(0, ge=0, description="torch threads for inference (0: torch's default)")
    precision: Literal["auto", "fp32", "bf16", "int8"] = Field(DEFAULT_PRECISION, description=PRECISION_HELP)
    compile: Literal["auto", "on", "off"] = Field(
        DEFAULT_COMPILE, description=f"{COMPILE_HELP}; compiles in the background while the service already answers"
    )
    int8_kernel: Literal["auto", "amx", "onednn", "int_mm", "fbgemm"] = Field("auto", description=INT8_KERNEL_HELP)
    request_timeout_s: float = Field(60.0, gt=0, description="compute budget per request; over it the answer is 503")
    cors_origins: list[str] = Field(default_factory=list, description="origins allowed by CORS; empty: CORS off")
    feedback_db: Path = Field(Path("stance-feedback.sqlite3"), description="SQLite file for POST /feedback")

    def limits(self) -> dict[str, int]:
        return {
            "max_text_chars": self.max_text_chars,
            "max_batch_documents": self.max_batch_documents,
            "max_actors": self.max_actors,
            "max_body_bytes": self.max_body_bytes,
        }

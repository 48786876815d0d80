"""Model folder load/save: compact weights, JSON config beside them, and file hashes checked at load."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from model.errors import ModelLoadError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
TOKENIZER_DIR = "tokenizer"
WORD_EMBEDDINGS = "encoder.embeddings.word_embeddings.weight"
# Rows of the (otherwise frozen) word embeddings that training may change: the entity markers.
TRAINED_ROWS = "trained_word_embedding_rows"


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelLoadError(f"model folder is missing {path.name}: {path.parent}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path} is not valid JSON: {exc}") from exc


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False, ensure_ascii=False) + "\n", encoding="utf-8")


def pack_state(state: dict[str, torch.Tensor], base: dict[str, torch.Tensor] | None, rows: list[int]) -> dict[str, torch.Tensor]:
    """fp16 tensors of what differs from `base`: everything but the frozen word embeddings, plus their trained rows."""
    packed: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if base is not None and name == WORD_EMBEDDINGS:
            packed[TRAINED_ROWS] = tensor[rows].detach().to("cpu", torch.float16).contiguous()
        elif tensor.is_floating_point():
            packed[name] = tensor.detach().to("cpu", torch.float16).contiguous()
        else:
            packed[name] = tensor.detach().cpu().contiguous()
    return packed


def unpack_state(
    packed: dict[str, torch.Tensor], base: dict[str, torch.Tensor] | None, rows: list[int]
) -> dict[str, torch.Tensor]:
    """Inverse of `pack_state`, in fp32."""
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in packed.items() if k != TRAINED_ROWS}
    if base is not None:
        embeddings = base[WORD_EMBEDDINGS].clone().float()
        if TRAINED_ROWS in packed:
            embeddings[rows] = packed[TRAINED_ROWS].float()
        state[WORD_EMBEDDINGS] = embeddings
    return state


def save_weights(path: Path, packed: dict[str, torch.Tensor]) -> None:
    save_file(packed, str(path))


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except FileNotFoundError as exc:
        raise ModelLoadError(f"model folder is missing {path.name}: {path.parent}") from exc
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise ModelLoadError(f"cannot read weights {path}: {exc}") from exc


def verify_hashes(folder: Path, expected: dict[str, str]) -> None:
    """Raise ModelLoadError unless every recorded file exists with its recorded sha256."""
    for name, digest in expected.items():
        file = folder / name
        if not file.is_file():
            raise ModelLoadError(f"model folder is missing {name}: {folder}")
        actual = sha256_file(file)
        if actual != digest:
            raise ModelLoadError(f"{file} is corrupt: sha256 {actual[:12]}… does not match the recorded {digest[:12]}…")


def atomic_folder(target: Path, write: Callable[[Path], None]) -> None:
    """Write a folder with `write(tmp)` in a sibling temporary folder, then swap it in.

    The target appears complete or not at all; on any failure the temporary folder is removed
    and a previous folder at `target` is left untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        write(tmp)
        # mkdtemp makes the folder private; the model is meant to be read by other users (a service account).
        os.chmod(tmp, 0o755)
        for path in tmp.rglob("*"):
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

"""Shared fixtures: a tiny random-weight BERT predictor that builds in well under a second."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# The service and `stance score` compile the encoder by default (20-40 s a model); tests that want it ask for it.
os.environ.setdefault("STANCE_COMPILE", "off")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def build_tiny_predictor(input_format: str = "markers", seed: int = 0, stance_pooling: str = "sentence+actor"):
    import torch
    from transformers import AutoTokenizer, BertConfig

    from model.bert import BertEncoder
    from model.predictor import ModelConfig, StancePredictor, base_model_path

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(str(base_model_path()))
    encoder = BertEncoder(
        BertConfig(
            vocab_size=tokenizer.vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=512,
        )
    )
    config = ModelConfig(
        name="tiny-test", version="0.0.1", input_format=input_format, max_length=64, stance_pooling=stance_pooling
    )
    return StancePredictor.from_encoder(encoder, tokenizer, config)


@pytest.fixture(scope="session")
def tiny_predictor():
    return build_tiny_predictor()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_predictor):
    folder = tmp_path_factory.mktemp("models") / "tiny"
    tiny_predictor.save(folder, extra={"metrics.json": {"note": "random weights"}})
    return folder


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_relation_predictor():
    """The tiny predictor with an (untrained) relation head."""
    from model.labels import RELATION_LABELS

    predictor = build_tiny_predictor(seed=1)
    predictor.add_relation_head(RELATION_LABELS)
    predictor.network.eval()
    return predictor

"""The BERT encoder, written out: transformers' `BertModel` (encoder only, no pooler) with the same parameter names and
the same arithmetic, without importing transformers' modeling code.

That import (`masking_utils`, `core_model_loading`, and through them `torch.distributed.tensor` and `torch._dynamo`)
was half of `stance serve`'s cold start: 5.9 s to /ready with it, 3.0 s without (benchmarks/results/inference*.json,
benchmarks/PROFILE.md). The outputs equal `BertModel`'s bit for bit, in scoring and in training with dropout (same
SDPA call, mask and dropout order); tests/model/test_bert.py checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertConfig

from model import fused_attention, io
from model.errors import ModelLoadError
from model.quant import NormedRows, QuantizedRows, hidden_state

ATTENTIONS = ("sdpa", "eager", "fused")


@dataclass
class EncoderOutput:
    last_hidden_state: torch.Tensor


class Embeddings(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        positions = torch.arange(config.max_position_embeddings).expand((1, -1))
        self.register_buffer("position_ids", positions, persistent=False)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        x = x + self.position_embeddings(self.position_ids[:, : input_ids.shape[1]])
        return self.dropout(self.LayerNorm(x))


class SelfAttention(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.heads = config.num_attention_heads
        self.head_size = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_size**-0.5
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)
        # Query, key and value as one layer whose output is the three side by side; set in place of the three by
        # `model.quant.quantize_encoder`.
        self.qkv: nn.Module | None = None
        # Set by `model.quant.fuse_attention` where the int8 `qkv` runs the whole attention in one kernel and hands
        # the attention-output layer its input already quantised (with that layer's smoothing).
        self.emit_codes = False
        self.next_scale: torch.Tensor | None = None

    def project(self, hidden: torch.Tensor | NormedRows) -> list[torch.Tensor]:
        """The query, key and value projections of `hidden` (`NormedRows` only where `qkv` is an int8 layer)."""
        if self.qkv is not None:
            return list(self.qkv(hidden).chunk(3, dim=-1))
        return [proj(hidden) for proj in (self.query, self.key, self.value)]

    def forward(
        self, hidden: torch.Tensor | NormedRows, mask: torch.Tensor | None, attention: str
    ) -> torch.Tensor | QuantizedRows:
        if self.emit_codes and attention == "fused" and mask is not None and not self.training:
            return self.qkv.attention(hidden, mask, self.heads, self.scaling, self.next_scale)
        projections = self.project(hidden)
        hidden = hidden_state(hidden)
        # The fused kernel is fp32 and scoring only: under bf16 autocast or in training, eager attention serves.
        if attention == "fused" and mask is not None and projections[0].dtype == torch.float32 and not self.training:
            return fused_attention.attention(*projections, mask, self.heads, self.scaling)
        shape = (*hidden.shape[:-1], -1, self.head_size)
        query, key, value = (x.view(shape).transpose(1, 2) for x in projections)
        if attention == "sdpa":
            p = self.dropout.p if self.training else 0.0
            out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=p, scale=self.scaling)
        else:
            if torch.compiler.is_compiling():
                # A contiguous key lets the compiled graph hand the score matmul a transposed view; otherwise inductor
                # writes the key transposed in 16 x 16 tiles, a kernel 2-7x slower (benchmarks/PROFILE.md). Eager, it
                # would change the matmul's summation order on some CPUs, and so its last bits against transformers'.
                key = key.contiguous()
            scores = torch.matmul(query, key.transpose(2, 3)) * self.scaling
            if mask is not None:
                scores = scores + mask
            out = torch.matmul(self.dropout(F.softmax(scores, dim=-1)), value)
        return out.transpose(1, 2).reshape(*hidden.shape[:-1], -1).contiguous()


class DenseNorm(nn.Module):
    """Projection, dropout, residual and LayerNorm: BERT's attention output and feed-forward output."""

    def __init__(self, width: int, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(width, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        # Set by `model.quant.fuse_norms` where the int8 layer that reads this step's result takes it already
        # quantised from the same kernel (`NormedRows`), with that layer's input smoothing.
        self.next_codes = False
        self.next_scale: torch.Tensor | None = None

    def forward(self, x: torch.Tensor | QuantizedRows, residual: torch.Tensor | NormedRows) -> torch.Tensor | NormedRows:
        residual = hidden_state(residual)
        if self.next_codes:
            return self.dense.normed(x, residual, self.LayerNorm, self.next_scale)
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class Attention(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.self = SelfAttention(config)
        self.output = DenseNorm(config.hidden_size, config)

    def forward(self, hidden: torch.Tensor | NormedRows, mask: torch.Tensor | None, attention: str) -> torch.Tensor | NormedRows:
        return self.output(self.self(hidden, mask, attention), hidden)


class Intermediate(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        if config.hidden_act != "gelu":
            raise ModelLoadError(f"only hidden_act 'gelu' is supported, not {config.hidden_act!r}")
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.intermediate_act_fn(self.dense(x))


class Layer(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.attention = Attention(config)
        self.intermediate = Intermediate(config)
        self.output = DenseNorm(config.intermediate_size, config)

    def forward(self, hidden: torch.Tensor | NormedRows, mask: torch.Tensor | None, attention: str) -> torch.Tensor | NormedRows:
        attended = self.attention(hidden, mask, attention)
        return self.output(self.intermediate(attended), attended)


class Layers(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(Layer(config) for _ in range(config.num_hidden_layers))


class BertEncoder(nn.Module):
    """BERT's embeddings and layers; `forward(...).last_hidden_state` as from `BertModel(add_pooling_layer=False)`.

    `attention` is "sdpa" (torch's fused kernel, as transformers uses by default), "eager" (matmul and softmax,
    which compiles into faster code at our lengths) or "fused" (`model.fused_attention`, our CPU kernel, for fp32
    scoring; eager attention serves in training and under bf16). `StancePredictor.compile` picks fused where its
    kernel builds, else eager.
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        if getattr(config, "position_embedding_type", "absolute") != "absolute" or getattr(config, "is_decoder", False):
            raise ModelLoadError("only absolute position embeddings and encoders are supported")
        self.config = config
        self.attention = "sdpa"
        self.embeddings = Embeddings(config)
        self.encoder = Layers(config)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        """transformers' BERT initialisation, for encoders built from a config (the tests' tiny one)."""
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=self.config.initializer_range)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            nn.init.zeros_(module.weight[module.padding_idx])
        if isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    @classmethod
    def from_pretrained(cls, path: str | Path) -> BertEncoder:
        """The encoder of a transformers BERT folder (config.json, model.safetensors), in eval mode."""
        folder = Path(path)
        try:
            config = BertConfig.from_pretrained(str(folder))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot read the BERT config in {folder}: {exc}") from exc
        encoder = cls(config)
        raw = io.load_weights(folder / "model.safetensors")
        # The file may carry a "bert." prefix, the pooler or a pretraining head, and the position ids buffer.
        names = {k: k.removeprefix("bert.") for k in raw}
        state = {names[k]: v for k, v in raw.items() if not names[k].startswith(("pooler.", "cls.", "embeddings.position_ids"))}
        try:
            encoder.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ModelLoadError(f"weights in {folder} do not fit a BERT encoder: {exc}") from exc
        return encoder.eval()

    def set_attention(self, attention: str) -> None:
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, not {attention!r}")
        self.attention = attention

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> EncoderOutput:
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        hidden = self.embeddings(input_ids, token_type_ids)
        mask = self._mask(attention_mask, hidden.dtype)
        for layer in self.encoder.layer:
            hidden = layer(hidden, mask, self.attention)
        return EncoderOutput(hidden)

    def _mask(self, attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor | None:
        """As transformers builds it: for SDPA, none where nothing is padded (so the flash kernel runs), else a
        boolean (batch, 1, query, key) mask; for eager, 0 where attended and the dtype's minimum where padded."""
        keys = attention_mask.bool()[:, None, None, :]
        if self.attention == "sdpa":
            if bool(attention_mask.all()):
                return None
            return keys.expand(-1, 1, attention_mask.shape[1], -1)
        return torch.zeros(keys.shape, dtype=dtype, device=keys.device).masked_fill(~keys, torch.finfo(dtype).min)

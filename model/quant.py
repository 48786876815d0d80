"""int8 linear layers for CPU scoring: int8 weights with one scale per output channel, int8 activations with one
scale and offset per token, multiplied by `torch._int_mm` (the CPU's int8 dot-product instructions).

Per-token activation scales are what keep every linear layer accurate enough to quantise: torch's dynamic
quantisation takes one scale per batch, and quantising the feed-forward layers that way moved 3.5% of devtest_mt's
labels (benchmarks/PROFILE.md). A token's result also no longer depends on the other tokens in its batch, so padding
cannot change it. The per-token offset (the middle of the token's range) gives the 256 steps to the range the token
uses: GELU outputs, for one, hardly go below zero. The offset's share of the product is added back exactly, as
offset times each output channel's weight sum.

A few input channels of a BERT layer carry much larger values than the rest (set by the LayerNorm before it),
which per-token scales alone do not fix. As in SmoothQuant (Xiao et al., 2023), each such linear layer divides its
input channel c by s_c and multiplies the weights' column c by s_c, which is exact before rounding, with
s_c = a_c ** ALPHA / w_c ** (1 - ALPHA): a_c = |gamma_c| + |beta_c| of that LayerNorm stands in for the
activation range (no calibration data needed), w_c is the largest weight in column c.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.bert.modeling_bert import eager_attention_forward

INT8_MAX = 127
# Every variant in benchmarks/results/int8_variants.json moves about 1% of labels, within noise of each other; 0.3
# kept devtest_mt's macro-F1 closest to fp32's (-0.11 points); it moved 22 of the 3,583 pairs (the variants: 20-24).
ALPHA = 0.3


class Int8Linear(nn.Module):
    """A drop-in, inference-only replacement for `nn.Linear` (see the module docstring)."""

    def __init__(self, linear: nn.Linear, smooth: torch.Tensor | None = None) -> None:
        super().__init__()
        weight = linear.weight.detach().float()
        if smooth is not None:
            weight = weight * smooth
        # 1 / s per input channel, applied to the input before it is quantised; None when not smoothed.
        self.register_buffer("input_scale", None if smooth is None else 1.0 / smooth)
        scale = weight.abs().amax(dim=1).clamp(min=torch.finfo(torch.float32).tiny) / INT8_MAX
        # Stored as (in, out) so the matmul needs no transpose.
        self.register_buffer("weight_int8", (weight / scale[:, None]).round().to(torch.int8).t().contiguous())
        self.register_buffer("weight_scale", scale)
        # Each output channel's sum of its (dequantised) weights, for the activations' per-token offset.
        self.register_buffer("weight_sum", self.weight_int8.float().sum(dim=0) * scale)
        bias = linear.bias.detach().float().clone() if linear.bias is not None else None
        self.register_buffer("bias", bias)
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        rows = x.reshape(-1, shape[-1]).float()
        if self.input_scale is not None:
            rows = rows * self.input_scale
        low, high = torch.aminmax(rows, dim=1, keepdim=True)
        offset = (high + low) / 2
        scale = ((high - low) / 2).clamp(min=torch.finfo(torch.float32).tiny) / INT8_MAX
        out = torch._int_mm(torch.round((rows - offset) / scale).to(torch.int8), self.weight_int8).float()
        out = out * scale * self.weight_scale + offset * self.weight_sum
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def smoothing(norm: nn.LayerNorm, linears: list[nn.Linear], alpha: float = ALPHA) -> torch.Tensor:
    """The per-channel s of the linear layers that read `norm`'s output (see the module docstring)."""
    tiny = 1e-5
    activation = (norm.weight.abs() + norm.bias.abs()).detach().float().clamp(min=tiny)
    weight = torch.stack([lin.weight.detach().float().abs().amax(dim=0) for lin in linears]).amax(dim=0).clamp(min=tiny)
    return activation**alpha / weight ** (1 - alpha)


class Int8SelfAttention(nn.Module):
    """BERT self-attention with query, key and value as one int8 GEMM (encoder only: no cache, no cross-attention).

    The three share their input and its smoothing and each output channel keeps its own weight scale, so the fused
    product equals the three separate ones exactly; one wider GEMM runs faster than three narrow ones.
    """

    def __init__(self, attention: nn.Module, smooth: torch.Tensor | None = None) -> None:
        super().__init__()
        parts = [attention.query, attention.key, attention.value]
        fused = nn.Linear(parts[0].in_features, sum(p.out_features for p in parts))
        with torch.no_grad():
            fused.weight.copy_(torch.cat([p.weight for p in parts]))
            fused.bias.copy_(torch.cat([p.bias for p in parts]))
        self.qkv = Int8Linear(fused, smooth)
        # Read by transformers' attention functions.
        self.config, self.is_causal, self.scaling = attention.config, False, attention.scaling
        self.heads, self.head_size = attention.num_attention_heads, attention.attention_head_size

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        cache: object | None = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if encoder_hidden_states is not None or cache is not None:
            raise ValueError("Int8SelfAttention serves encoders only")
        shape = hidden_states.shape[:-1]
        qkv = self.qkv(hidden_states).view(*shape, 3, self.heads, self.head_size)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (batch, heads, tokens, head size)
        attend = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention_forward)
        out, weights = attend(self, query, key, value, attention_mask, dropout=0.0, scaling=self.scaling, **kwargs)
        return out.reshape(*shape, -1).contiguous(), weights


def _count_linear(module: nn.Module) -> int:
    return sum(type(m) is nn.Linear for m in module.modules())


def quantize_encoder(encoder: nn.Module, alpha: float | None = ALPHA, fuse_qkv: bool = True) -> int:
    """Make every linear layer of a BERT encoder int8, in place; returns how many were replaced.

    Query, key and value become one `Int8SelfAttention` (three `Int8Linear`s without `fuse_qkv`), every other
    `nn.Linear` an `Int8Linear`. The layers that read a LayerNorm (query, key and value; the feed-forward input) are
    smoothed unless `alpha` is None.
    """
    before = _count_linear(encoder)
    norm = encoder.embeddings.LayerNorm
    for layer in encoder.encoder.layer:
        attention = layer.attention.self
        qkv = [attention.query, attention.key, attention.value]
        smooth = None if alpha is None else smoothing(norm, qkv, alpha)
        if fuse_qkv:
            layer.attention.self = Int8SelfAttention(attention, smooth)
        else:
            attention.query, attention.key, attention.value = (Int8Linear(lin, smooth) for lin in qkv)
        dense = layer.intermediate.dense
        smooth = None if alpha is None else smoothing(layer.attention.output.LayerNorm, [dense], alpha)
        layer.intermediate.dense = Int8Linear(dense, smooth)
        norm = layer.output.LayerNorm
    for parent in list(encoder.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear:
                setattr(parent, name, Int8Linear(child))
    return before - _count_linear(encoder)

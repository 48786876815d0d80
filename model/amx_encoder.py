"""The int8 encoder on AMX as one chain of our kernels, called straight from Python: the scoring forward of a BERT
encoder whose every step runs in `model.fused_attention`'s AMX kernels (`quantize_encoder` on "amx", then
`fuse_gelu`, `fuse_norms` and `fuse_attention`), with the embeddings, their LayerNorm and the first layer's
quantising in one more kernel (`stance_amx_embed_codes`).

torch.compile's graph of the same forward ran the same kernels, but each batch also paid dynamo's guards, the
graph's Python wrapper and inductor's embedding kernel, about 0.08 s of a 0.91 s 2,000-pair pass
(benchmarks/PROFILE.md, session 21); here a batch is 25 foreign calls on buffers made once per batch, and nothing
needs compiling.
"""

from __future__ import annotations

import ctypes

import torch
from torch import nn

from model import fused_attention
from model.bert import EncoderOutput
from model.quant import UINT8_ZERO, Int8Linear

EMBED_CODES_ARGS = (*[ctypes.c_void_p] * 14, *[ctypes.c_int64] * 5, ctypes.c_float, ctypes.c_int, ctypes.c_int)


def _embed_codes_kernel():
    return fused_attention._built(fused_attention.AMX_SOURCE, "stance_amx_embed_codes", EMBED_CODES_ARGS, ctypes.c_int)


def _amx(module: nn.Module) -> bool:
    return isinstance(module, Int8Linear) and module.kernel == "amx"


def fits(encoder: nn.Module) -> bool:
    """Whether every step of `encoder` (a `model.bert.BertEncoder`) runs in an AMX kernel, so `AmxEncoder` can
    score with it: int8 on "amx" with fused attention, GELU and LayerNorms throughout, in eval mode."""
    layers = list(encoder.encoder.layer)
    if encoder.training or encoder.attention != "fused" or not layers or _embed_codes_kernel() is None:
        return False
    for i, layer in enumerate(layers):
        attention, intermediate, output = layer.attention.self, layer.intermediate.dense, layer.output
        linears = (attention.qkv, layer.attention.output.dense, intermediate, output.dense)
        if not (all(_amx(m) for m in linears) and attention.emit_codes and layer.attention.output.next_codes):
            return False
        # Every feed-forward output but the last hands the next layer its codes.
        if not intermediate.emit_gelu_codes or output.next_codes != (i < len(layers) - 1):
            return False
    return True


def _pointer(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


class AmxEncoder:
    """`BertEncoder.forward` for scoring, for an encoder that `fits`: called as the encoder is, it gives the
    `EncoderOutput` of the same kernels as the compiled graph (the last layer's LayerNorm in its GEMM's kernel too).
    Holds the encoder's tensors, so the encoder must not change after it is made."""

    def __init__(self, encoder: nn.Module) -> None:
        if not fits(encoder):
            raise ValueError("AmxEncoder needs an int8 encoder on the amx kernel with every step fused (amx_encoder.fits)")
        config = encoder.config
        self.width, self.heads = config.hidden_size, config.num_attention_heads
        self.intermediate = config.intermediate_size
        self.limits = (config.vocab_size, config.type_vocab_size, config.max_position_embeddings)
        embeddings = encoder.embeddings
        norm = embeddings.LayerNorm
        first = encoder.encoder.layer[0].attention.self
        self._kept: list[torch.Tensor] = []  # what the pointers below point into
        self._embed = (
            *self._pointers(
                embeddings.word_embeddings.weight,
                embeddings.token_type_embeddings.weight,
                embeddings.position_embeddings.weight,
                norm.weight,
                norm.bias,
                first.qkv.input_scale,
            ),
            norm.eps,
        )
        self._layers = []
        for layer in encoder.encoder.layer:
            attention, out = layer.attention.self, layer.attention.output
            self._layers.append(
                (
                    (*self._weights(attention.qkv), *self._pointers(attention.next_scale), attention.scaling),
                    self._norm(out.dense, out.LayerNorm, out.next_scale),
                    self._weights(layer.intermediate.dense),
                    self._norm(layer.output.dense, layer.output.LayerNorm, layer.output.next_scale),
                )
            )

    def _pointers(self, *tensors: torch.Tensor | None) -> tuple[int | None, ...]:
        kept = [None if t is None else t.detach().float().contiguous() for t in tensors]
        self._kept += [t for t in kept if t is not None]
        return tuple(_pointer(t) for t in kept)

    def _weights(self, linear: Int8Linear) -> tuple[int | None, ...]:
        """The pointers an AMX kernel takes for `linear` around the input's codes, scale and offset: (packed, column
        sums, weight scale) and (weight sum, bias)."""
        self._kept += [linear.packed, linear.column_sums]
        weights = self._pointers(linear.weight_scale, linear.weight_sum, linear.bias)
        return (linear.packed.data_ptr(), linear.column_sums.data_ptr(), *weights)

    def _norm(self, linear: Int8Linear, norm: nn.LayerNorm, next_scale: torch.Tensor | None) -> tuple:
        return (*self._weights(linear), *self._pointers(norm.weight, norm.bias, next_scale), norm.eps)

    def embeddings(
        self, input_ids: torch.Tensor, token_type_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The embeddings' LayerNorm of [batch, length] tokens as [batch × length, width] rows, their codes for the
        first query-key-value layer (with its smoothing, plus UINT8_ZERO) with each row's scale and offset, and the
        attention's additive key mask [batch, length] (0 where attended, else the float32 minimum)."""
        batch, length = input_ids.shape
        rows = batch * length
        hidden, codes = torch.empty((rows, self.width)), torch.empty((rows, self.width), dtype=torch.uint8)
        scales = torch.empty((3, rows))
        self._embed_into(input_ids, token_type_ids, attention_mask, hidden.data_ptr(), codes.data_ptr(), scales)
        return hidden, codes, scales[0], scales[1], scales[2].view(batch, length)

    def _embed_into(
        self, input_ids: torch.Tensor, token_type_ids: torch.Tensor, attention_mask: torch.Tensor, hidden: int,
        codes: int, scales: torch.Tensor,
    ) -> None:  # fmt: skip
        """`embeddings` into the buffers at `hidden` and `codes`, the rows' scales, offsets and key mask into the
        first three rows of `scales`."""
        ids, types, attended = (t if t.dtype == torch.int64 and t.is_contiguous() else t.to(torch.int64).contiguous()
                                for t in (input_ids, token_type_ids, attention_mask))  # fmt: skip
        batch, length = ids.shape
        words, token_types, positions = self.limits
        if length > positions:
            raise IndexError(f"sequences of {length} tokens are longer than the {positions} positions")
        rows, scale = batch * length, scales.data_ptr()
        word, token_type, position, gamma, beta, next_scale, eps = self._embed
        # The kernel checks each index against its table, where nn.Embedding would raise.
        outside = _embed_codes_kernel()(
            ids.data_ptr(), types.data_ptr(), attended.data_ptr(), word, token_type, position, gamma, beta,
            next_scale, hidden, codes, scale, scale + 4 * rows, scale + 8 * rows, rows, length, self.width, words,
            token_types, eps, UINT8_ZERO, torch.get_num_threads(),
        )  # fmt: skip
        for bit, limit in ((1, words), (2, token_types)):
            if outside & bit:
                raise IndexError(f"an index is out of range for an embedding table of {limit} rows")

    def __call__(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> EncoderOutput:
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        batch, length = input_ids.shape
        rows, n, inner, threads = batch * length, self.width, self.intermediate, torch.get_num_threads()
        # One buffer of each kind, in parts (a call of torch's costs more than its size here): two hidden states
        # (each step's residual and its output); the codes of a layer's input, of the attention's output and of
        # GELU's; each codes' rows' scales and offsets, and the key mask.
        hidden = torch.empty((2, rows, n))
        codes = torch.empty(rows * (2 * n + inner), dtype=torch.uint8)
        scales = torch.empty((7, rows))
        h0, c0, s0 = hidden.data_ptr(), codes.data_ptr(), scales.data_ptr()
        h = [h0, h0 + 4 * rows * n]
        c = [c0, c0 + rows * n, c0 + 2 * rows * n]
        s = [(s0 + 4 * rows * i, s0 + 4 * rows * (i + 1)) for i in (0, 3, 5)]
        self._embed_into(input_ids, token_type_ids, attention_mask, h[0], c[0], scales)
        mask = s0 + 8 * rows
        attend = fused_attention._amx_qkv_attention_kernel()
        gelu = fused_attention._amx_gelu_codes_kernel()
        norm = fused_attention._amx_linear_norm_kernel()
        for qkv, attention_out, intermediate, output in self._layers:
            packed, column_sums, weight_scale, weight_sum, bias, after, scaling = qkv
            attend(
                c[0], packed, column_sums, weight_scale, *s[0], weight_sum, bias, mask, after,
                c[1], *s[1], rows, n, 3 * n, batch, self.heads, scaling, UINT8_ZERO, threads,
            )  # fmt: skip
            self._linear_norm(norm, attention_out, c[1], s[1], h[0], h[1], c[0], s[0], rows, n, threads)
            packed, column_sums, weight_scale, weight_sum, bias = intermediate
            gelu(
                c[0], packed, column_sums, weight_scale, *s[0], weight_sum, bias, c[2], *s[2],
                rows, n, inner, UINT8_ZERO, threads,
            )  # fmt: skip
            self._linear_norm(norm, output, c[2], s[2], h[1], h[0], c[0], s[0], rows, inner, threads)
        return EncoderOutput(hidden[0].view(batch, length, n))

    def _linear_norm(self, kernel, step: tuple, codes: int, scales: tuple, residual: int, out: int, out_codes: int,
                     out_scales: tuple, rows: int, k: int, threads: int) -> None:  # fmt: skip
        packed, column_sums, weight_scale, weight_sum, bias, gamma, beta, next_scale, eps = step
        kernel(
            codes, packed, column_sums, weight_scale, *scales, weight_sum, bias, residual, gamma, beta, next_scale,
            out, out_codes, *out_scales, rows, k, self.width, eps, UINT8_ZERO, threads,
        )  # fmt: skip

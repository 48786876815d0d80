"""The int8 encoder on AMX in one call of our kernels a batch: the scoring forward of a BERT encoder whose every step
runs in `model.fused_attention`'s AMX kernels (`quantize_encoder` on "amx", then `fuse_gelu`, `fuse_norms` and
`fuse_attention`), with the embeddings, their LayerNorm and the first layer's quantising in one more kernel
(`stance_amx_embed_codes`), chained in C++ (`model/kernels/amx_encoder.cpp`).

torch.compile's graph of the same forward ran the same kernels, but each batch also paid dynamo's guards, the
graph's Python wrapper and inductor's embedding kernel, about 0.08 s of a 0.91 s 2,000-pair pass; the kernels
called one by one from Python, 0.0125 s (benchmarks/PROFILE.md, session 21). Here a batch is one foreign call on
three buffers, and nothing needs compiling.
"""

from __future__ import annotations

import ctypes

import torch
from torch import nn

from model import fused_attention
from model.bert import EncoderOutput
from model.quant import UINT8_ZERO, Int8Linear

SOURCE = fused_attention.SOURCE.parent / "amx_encoder.cpp"
EMBED_CODES_ARGS = (*[ctypes.c_void_p] * 14, *[ctypes.c_int64] * 5, ctypes.c_float, ctypes.c_int, ctypes.c_int)
ENCODER_ARGS = (
    ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, *[ctypes.c_void_p] * 6, *[ctypes.c_int64] * 5, ctypes.c_int,
    ctypes.c_int,
)  # fmt: skip


class _Linear(ctypes.Structure):
    _fields_ = [(name, ctypes.c_void_p) for name in ("packed", "column_sums", "weight_scale", "weight_sum", "bias")]


class _Norm(ctypes.Structure):
    _fields_ = [("gamma", ctypes.c_void_p), ("beta", ctypes.c_void_p), ("next_scale", ctypes.c_void_p), ("eps", ctypes.c_float)]


class _Layer(ctypes.Structure):
    _fields_ = [
        ("qkv", _Linear),
        ("attention_next_scale", ctypes.c_void_p),
        ("scaling", ctypes.c_float),
        ("attention_output", _Linear),
        ("attention_norm", _Norm),
        ("intermediate", _Linear),
        ("output", _Linear),
        ("output_norm", _Norm),
    ]


class _Embeddings(ctypes.Structure):
    _fields_ = [
        ("word", ctypes.c_void_p),
        ("token_type", ctypes.c_void_p),
        ("position", ctypes.c_void_p),
        ("norm", _Norm),
        ("words", ctypes.c_int64),
        ("token_types", ctypes.c_int64),
    ]


def _embed_codes_kernel():
    return fused_attention._built(SOURCE, "stance_amx_embed_codes", EMBED_CODES_ARGS, ctypes.c_int)


def _encoder_kernel():
    """The chain's C function, where this library builds with AMX's tiles (else a stub's, or None)."""
    return fused_attention._built(SOURCE, "stance_amx_encoder", ENCODER_ARGS, ctypes.c_int)


def _built_with_amx() -> bool:
    """Whether the library holds the kernels themselves, not the stubs a compiler without AMX's tiles builds."""
    built = fused_attention._built(SOURCE, "stance_amx_attention_built", (), ctypes.c_int)
    return built is not None and built() == 1 and _encoder_kernel() is not None


def _amx(module: nn.Module) -> bool:
    return isinstance(module, Int8Linear) and module.kernel == "amx"


def fits(encoder: nn.Module) -> bool:
    """Whether every step of `encoder` (a `model.bert.BertEncoder`) runs in an AMX kernel, so `AmxEncoder` can
    score with it: int8 on "amx" with fused attention, GELU and LayerNorms throughout, in eval mode."""
    layers = list(encoder.encoder.layer)
    if encoder.training or encoder.attention != "fused" or not layers or not _built_with_amx():
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
        self.positions = config.max_position_embeddings
        embeddings = encoder.embeddings
        self._kept: list[torch.Tensor] = []  # what the pointers below point into
        self._embeddings = _Embeddings(
            *self._pointers(
                embeddings.word_embeddings.weight,
                embeddings.token_type_embeddings.weight,
                embeddings.position_embeddings.weight,
            ),
            self._norm(embeddings.LayerNorm, encoder.encoder.layer[0].attention.self.qkv.input_scale),
            config.vocab_size,
            config.type_vocab_size,
        )
        layers = []
        for layer in encoder.encoder.layer:
            attention, out = layer.attention.self, layer.attention.output
            layers.append(
                _Layer(
                    self._linear(attention.qkv),
                    *self._pointers(attention.next_scale),
                    attention.scaling,
                    self._linear(out.dense),
                    self._norm(out.LayerNorm, out.next_scale),
                    self._linear(layer.intermediate.dense),
                    self._linear(layer.output.dense),
                    self._norm(layer.output.LayerNorm, layer.output.next_scale),
                )
            )
        self._layers = (_Layer * len(layers))(*layers)

    def _pointers(self, *tensors: torch.Tensor | None) -> tuple[int | None, ...]:
        kept = [None if t is None else t.detach().float().contiguous() for t in tensors]
        self._kept += [t for t in kept if t is not None]
        return tuple(_pointer(t) for t in kept)

    def _linear(self, linear: Int8Linear) -> _Linear:
        self._kept += [linear.packed, linear.column_sums]
        weights = self._pointers(linear.weight_scale, linear.weight_sum, linear.bias)
        return _Linear(linear.packed.data_ptr(), linear.column_sums.data_ptr(), *weights)

    def _norm(self, norm: nn.LayerNorm, next_scale: torch.Tensor | None) -> _Norm:
        return _Norm(*self._pointers(norm.weight, norm.bias, next_scale), norm.eps)

    def _indices(self, *tensors: torch.Tensor) -> list[torch.Tensor]:
        """`tensors` as the int64 contiguous ones the kernels read; raises ValueError unless they are [batch, length]
        CPU tensors alike, IndexError where their sequences are longer than the position embeddings (the kernel
        checks each index against its table)."""
        shape = tensors[0].shape
        if len(shape) != 2 or any(t.shape != shape or t.device.type != "cpu" for t in tensors):
            raise ValueError("AmxEncoder takes [batch, length] CPU tensors of ids, attention mask and token types alike")
        if tensors[0].shape[1] > self.positions:
            raise IndexError(f"sequences of {tensors[0].shape[1]} tokens are longer than the {self.positions} positions")
        return [t if t.dtype == torch.int64 and t.is_contiguous() else t.to(torch.int64).contiguous() for t in tensors]

    def _raise_outside(self, outside: int) -> None:
        """The embeddings kernel's flags as nn.Embedding's error: 1 a word index, 2 a token type outside its table."""
        for bit, limit in ((1, self._embeddings.words), (2, self._embeddings.token_types)):
            if outside & bit:
                raise IndexError(f"an index is out of range for an embedding table of {limit} rows")

    def embeddings(
        self, input_ids: torch.Tensor, token_type_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The embeddings' LayerNorm of [batch, length] tokens as [batch × length, width] rows, their codes for the
        first query-key-value layer (with its smoothing, plus UINT8_ZERO) with each row's scale and offset, and the
        attention's additive key mask [batch, length] (0 where attended, else the float32 minimum)."""
        ids, types, attended = self._indices(input_ids, token_type_ids, attention_mask)
        batch, length = ids.shape
        rows, e = batch * length, self._embeddings
        hidden, codes = torch.empty((rows, self.width)), torch.empty((rows, self.width), dtype=torch.uint8)
        scales = torch.empty((3, rows))
        outside = _embed_codes_kernel()(
            ids.data_ptr(), types.data_ptr(), attended.data_ptr(), e.word, e.token_type, e.position, e.norm.gamma,
            e.norm.beta, e.norm.next_scale, hidden.data_ptr(), codes.data_ptr(), *(r.data_ptr() for r in scales),
            rows, length, self.width, e.words, e.token_types, e.norm.eps, UINT8_ZERO, torch.get_num_threads(),
        )  # fmt: skip
        self._raise_outside(outside)
        return hidden, codes, scales[0], scales[1], scales[2].view(batch, length)

    def __call__(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> EncoderOutput:
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        ids, types, attended = self._indices(input_ids, token_type_ids, attention_mask)
        batch, length = ids.shape
        rows, n, inner = batch * length, self.width, self.intermediate
        # Two hidden states (each step's residual and its output, the first the result); the codes of a layer's
        # input, of the attention's output and of GELU's; their rows' scales and offsets, and the key mask.
        hidden = torch.empty((2, rows, n))
        codes = torch.empty(rows * (2 * n + inner), dtype=torch.uint8)
        scales = torch.empty((7, rows))
        outside = _encoder_kernel()(
            ctypes.addressof(self._embeddings), ctypes.addressof(self._layers), len(self._layers), ids.data_ptr(),
            types.data_ptr(), attended.data_ptr(), hidden.data_ptr(), codes.data_ptr(), scales.data_ptr(), batch,
            length, n, inner, self.heads, UINT8_ZERO, torch.get_num_threads(),
        )  # fmt: skip
        self._raise_outside(outside)
        return EncoderOutput(hidden[0].view(batch, length, n))

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

Four int8 GEMMs, picked by the CPU (`int8_kernel()`) unless named (`resolve_int8_kernel`, STANCE_INT8_KERNEL), the
same quantisation around each:
- "amx": our own kernel on AMX's int8 tiles (`fused_attention.amx_int8_linear`, built with the machine's C++
  compiler), on weights packed once into tile order. Its integer products are oneDNN's, and it dequantises them in
  the same pass, which oneDNN's Linear leaves to another kernel: at the encoder's shapes it ran at 0.95-1.15x
  oneDNN's rate with that included (benchmarks/results/amx_kernel*.json), and with the steps after it in the same
  kernel (below) the compiled pass scored 1.26x session 17's pairs/s on oneDNN
  (benchmarks/results/revision_session18.json). On a CPU with AVX512-VNNI but no AMX, the same kernels run on tiles
  emulated with AVX512-VNNI's int8 dot products and float32 multiply-adds (or AVX512-BF16's dot products where a
  timing finds them faster) for the bf16 ones (model/kernels/tiles.h; `fused_attention.tiles`);
- "onednn": oneDNN's int8 Linear on weights packed once for it, which runs on AMX's int8 tiles where the CPU has
  them: the AMX kernel where ours cannot be built. Both take the codes shifted to uint8 with a zero point of 128
  (the same products, exactly) and scale each output channel themselves. On an Intel Xeon with AMX the compiled path
  scored 1.17x the pairs/s of "int_mm" (benchmarks/results/int8_kernel.json); on an AMD EPYC without AMX it ran the
  feed-forward input layer at 0.4x `_int_mm`'s rate (benchmarks/PROFILE.md, session 14), so it is AMX's kernel only;
- "int_mm": `torch._int_mm` on the int8 codes, fast only with the CPU's int8 dot products (AVX512-VNNI);
- "fbgemm": torch's quantised dynamic Linear, whose AVX2 kernels serve CPUs without them. It takes one scale per
  call, so each token is first mapped onto [-1, 1] by its own offset and scale, which leaves every token its own
  steps and the same codes in any batch. fbgemm keeps 7 bits on x86 (128 steps, against 255) so that its 16-bit
  sums of byte products cannot saturate.
On an AVX2 CPU without VNNI, `_int_mm` ran at 2.6 GOP/s and fbgemm's Linear at 163.5 (results/inference_avx2.json).

The feed-forward output layer takes the pre-activation and applies GELU itself (`gelu_input`), so that its input's
range comes from bounds on the pre-activation (`gelu_range`) and the compiled kernel evaluates GELU once per element,
not once for the range and again for the codes. When compiled with the fused kernels (`fuse_gelu`), the layer before
it does that step instead, in one C++ kernel from its GEMM's products to the codes (`fused_attention.gelu_codes`;
with "amx", in the GEMM's own kernel, `fused_attention.amx_gelu_codes`, which never writes the products out):
inductor's kernel for it spent half its time in erf, and the pass scored 1.054x the pairs/s in turns
(benchmarks/results/revision_gelu_codes.json). With AVX-512 the kernel takes erf from a cubic spline, GELU within
1.1e-6, which cut its time in the pass from 0.342 to 0.198 s (benchmarks/PROFILE.md, session 17).

On "amx", the compiled path also hands each LayerNorm's result to the int8 layer that reads it already quantised
(`fuse_norms`): the attention-output and feed-forward-output layers add the residual, LayerNorm and quantise for the
next layer in their GEMM's own kernel (`fused_attention.amx_linear_norm`), and `NormedRows` carries the normed rows
with their codes. The pass scored 1.078x the pairs/s without it (benchmarks/PROFILE.md, session 18).

On "amx" with AMX's bf16 tiles, each attention runs with its query-key-value layer in one kernel too
(`fuse_attention`, `fused_attention.amx_qkv_attention`): the GEMM's output stays in cache in bf16, the products of
attention run on bf16 tiles, and the result goes out already quantised for the attention-output layer. The pass
scored 1.157x the pairs/s without it, in turns, at a devtest_mt F1 of 0.7778 against 0.7791
(benchmarks/results/amx_attention.json).
"""

from __future__ import annotations

import functools
import itertools
import warnings
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from model import fused_attention
from model.errors import InvalidInputError

INT8_MAX = 127
INT8_KERNELS = ("amx", "onednn", "int_mm", "fbgemm")
INT8_KERNEL_CHOICES = ("auto", *INT8_KERNELS)
# The kernels that take uint8 codes, and the uint8 code of int8 code 0 for them.
UINT8_KERNELS = ("amx", "onednn")
UINT8_ZERO = 128
# Chosen in benchmarks/results/int8_variants*.json by the labels moved, on the shipped model, with both kernels.
# Model 0.4.0 (session 11): 0.3 / 0.5 / 0.7 / none moved 17 / 19 / 18 / 15 of 3,583 pairs on _int_mm and
# 29 / 29 / 41 / 44 on fbgemm, so over both kernels 0.7 (chosen on 0.2.0 and 0.3.0; 59) fell behind 0.3 (46) and
# 0.5 (48). Of those two, 0.5 costs at most 0.28 points of devtest_mt macro-F1 on either kernel, 0.3 up to 0.39.
ALPHA = 0.5


# Just below GELU's lowest value (-0.16997, at x = -0.7518), which float rounding can pass; above, GELU(x) = x * Phi(x)
# never exceeds max(x, 0).
GELU_FLOOR = -0.17


def gelu_range(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounds on each row's GELU(x), from x alone: GELU_FLOOR below, the row's largest x (or 0) above. Over a
    feed-forward row of 1,536 values the lowest GELU(x) is within a hair of GELU_FLOOR, and GELU(x) is within 0.2% of
    x from x = 3 up, so the bounds are nearly the range itself."""
    high = rows.amax(dim=1, keepdim=True).clamp(min=0)
    return torch.full_like(high, GELU_FLOOR), high


def int8_kernel() -> str:
    """The int8 GEMM for this CPU: where it has AMX's int8 tiles and they may be used (`fused_attention.amx_tiles`)
    "amx" (or "onednn" where our AMX kernel cannot be built); else "amx" on emulated tiles where the CPU has
    AVX512-VNNI and the kernels, attention's included, build (`fused_attention.tiles`; measured against "int_mm" only
    so, with every step in our kernels), else "int_mm" where it has int8 dot products (VNNI), else "fbgemm"."""
    tiles = fused_attention.tiles()
    if tiles == "amx":
        return "amx" if fused_attention.amx_available() else "onednn"
    if tiles == "emulated" and fused_attention.amx_attention_available():
        return "amx"
    return "int_mm" if torch.cpu._is_vnni_supported() else "fbgemm"


def resolve_int8_kernel(kernel: str = "auto", used: bool = True) -> str:
    """The int8 GEMM for `kernel`, one of INT8_KERNEL_CHOICES: "auto" is `int8_kernel()`; a kernel named outright must
    run here (raises InvalidInputError otherwise). A way round a kernel that misbehaves on some CPU, and the same
    kernel, so the same int8 results, on machines that would each pick another. Where the int8 path is not `used`,
    only the name is checked."""
    if kernel not in INT8_KERNEL_CHOICES:
        raise InvalidInputError(f"int8_kernel must be one of {INT8_KERNEL_CHOICES}, not {kernel!r}")
    if not used:
        return kernel
    if kernel == "auto":
        return int8_kernel()
    if kernel == "amx" and not fused_attention.amx_available():
        needs = "AMX's int8 tiles or AVX512-VNNI, and a C++ compiler"
    elif kernel == "onednn" and not torch.cpu._is_vnni_supported():
        # oneDNN's int8 kernels without VNNI sum byte products in 16 bits, which can saturate.
        needs = "int8 dot products (AVX512-VNNI, AVX-VNNI or AMX)"
    elif kernel == "fbgemm" and "fbgemm" not in torch.backends.quantized.supported_engines:
        needs = "fbgemm, torch's x86 quantised engine"
    else:
        return kernel
    raise InvalidInputError(f"int8_kernel {kernel!r} needs {needs}, which this machine lacks")


# A custom op, so that the compiled graph calls oneDNN's Linear as one opaque kernel: inductor's own lowering of
# `onednn.qlinear_pointwise` takes only weights frozen into the graph as constants.
@fused_attention.stance_op()
def onednn_int8_linear(codes: torch.Tensor, packed: torch.Tensor, weight_scale: torch.Tensor, out_features: int) -> torch.Tensor:
    """uint8 `codes` (zero point UINT8_ZERO) times the int8 weights that `packed` holds, as float32, each output
    channel times its `weight_scale`."""
    return torch.ops.onednn.qlinear_pointwise(
        codes, 1.0, UINT8_ZERO, packed, weight_scale, _zero_points(out_features), None, 1.0, 0, torch.float32, "none", [None], ""
    )


@functools.cache
def _zero_points(out_features: int) -> torch.Tensor:
    """The weights' zero points for oneDNN's Linear (all 0: the weights are symmetric), made once per width rather
    than on every call."""
    return torch.zeros(out_features, dtype=torch.long)


@torch.library.register_fake("stance::onednn_int8_linear")
def _(codes: torch.Tensor, packed: torch.Tensor, weight_scale: torch.Tensor, out_features: int) -> torch.Tensor:
    return codes.new_empty((codes.shape[0], out_features), dtype=torch.float32)


class QuantizedRows(NamedTuple):
    """A layer's input already quantised, as `Int8Linear` takes it: the codes [rows, features] (uint8 with
    UINT8_ZERO for the UINT8_KERNELS, else int8), each row's scale and offset ([rows, 1]), and the leading dimensions of
    the tensor the rows came from."""

    codes: torch.Tensor
    scale: torch.Tensor
    offset: torch.Tensor
    shape: torch.Size


class NormedRows(NamedTuple):
    """A BERT layer's hidden state after a LayerNorm whose next reader is an int8 layer (`fuse_norms`): the rows
    [..., hidden] and the same rows already quantised for that layer."""

    hidden: torch.Tensor
    codes: QuantizedRows


def hidden_state(x: torch.Tensor | NormedRows) -> torch.Tensor:
    """The hidden state itself, of a tensor or `NormedRows`."""
    return x.hidden if isinstance(x, NormedRows) else x


class Int8Linear(nn.Module):
    """A drop-in, inference-only replacement for `nn.Linear` (see the module docstring); with `gelu_input`, for
    `nn.Sequential(nn.GELU(), linear)`. With `emit_gelu_codes` (set by `fuse_gelu`), it returns GELU of its output
    already quantised for the next layer, as `QuantizedRows`, from one fused kernel (`fused_attention.gelu_codes`).
    On "amx", `normed` runs BERT's residual and LayerNorm step after it as well (`fuse_norms`)."""

    def __init__(
        self, linear: nn.Linear, smooth: torch.Tensor | None = None, kernel: str | None = None, gelu_input: bool = False
    ) -> None:
        super().__init__()
        self.kernel = kernel or int8_kernel()
        if self.kernel not in INT8_KERNELS:
            raise ValueError(f"kernel must be one of {INT8_KERNELS}, not {self.kernel!r}")
        if self.kernel == "amx" and not fused_attention.amx_available():
            raise ValueError(
                "the amx kernel needs AMX's int8 tiles or AVX512-VNNI, and a C++ compiler (fused_attention.amx_available)"
            )
        if gelu_input and smooth is not None:
            raise ValueError("a layer with gelu_input cannot be smoothed: GELU would have to come before the smoothing")
        self.gelu_input = gelu_input
        self.emit_gelu_codes = False
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
        # The kernel's packed weights (and the AMX kernel's int32 column sums): plain attributes, as they are rebuilt
        # from the module, never saved.
        self.packed = self.column_sums = None
        if self.kernel == "amx":
            self.packed = fused_attention.amx_pack(self.weight_int8)
            self.column_sums = self.weight_int8.sum(dim=0, dtype=torch.int32)
        if self.kernel == "onednn":
            self.packed = torch.ops.onednn.qlinear_prepack(self.weight_int8.t().contiguous(), None)
        if self.kernel == "fbgemm":
            # torch 2.13 (pinned) warns that its quantised tensor types will go in a later release; nothing to act on.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="torch.quantize_per_tensor", category=UserWarning)
                codes = torch._make_per_channel_quantized_tensor(
                    self.weight_int8.t().contiguous(), scale.double(), torch.zeros_like(scale, dtype=torch.long), 0
                )
            self.packed = torch.ops.quantized.linear_prepack(codes, None)

    def forward(self, x: torch.Tensor | QuantizedRows | NormedRows) -> torch.Tensor | QuantizedRows:
        if self.kernel == "fbgemm" and isinstance(x, torch.Tensor):
            rows, offset, half, shape = self._ranged(x)
            # Clamped so that every batch spans exactly [-1, 1], which fixes fbgemm's one scale (see the docstring).
            unit = ((rows - offset) * (1.0 / half)).clamp(-1.0, 1.0)
            return self._dequantized(torch.ops.quantized.linear_dynamic(unit, self.packed, True) * half, offset, shape)
        return self._from_codes(*self._codes(x))

    def _ranged(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Size]:
        """`x` as the rows this layer quantises (smoothed, GELU applied), with each row's offset and half range."""
        shape = x.shape[:-1]
        rows = x.reshape(-1, x.shape[-1]).float()
        if self.input_scale is not None:
            rows = rows * self.input_scale
        if self.gelu_input:
            low, high = gelu_range(rows)
            rows = F.gelu(rows)
        else:
            low, high = torch.aminmax(rows, dim=1, keepdim=True)
        offset = (high + low) / 2
        half = ((high - low) / 2).clamp(min=torch.finfo(torch.float32).tiny)
        return rows, offset, half, shape

    def _quantized(self, x: torch.Tensor) -> QuantizedRows:
        """`x` quantised for this layer (all kernels but "fbgemm")."""
        rows, offset, half, shape = self._ranged(x)
        # Rows are multiplied by their reciprocal scale rather than divided by it: the compiled quantising kernels
        # ran up to 30% faster so (benchmarks/PROFILE.md), at a rounding that differs in the last bit only. Clamped
        # as a GELU output may pass `gelu_range`'s bounds in the last bit.
        codes = torch.round((rows - offset) * (INT8_MAX / half)).clamp(-INT8_MAX, INT8_MAX)
        codes = (codes + UINT8_ZERO).to(torch.uint8) if self.kernel in UINT8_KERNELS else codes.to(torch.int8)
        return QuantizedRows(codes, half / INT8_MAX, offset, shape)

    def normed(
        self, x: torch.Tensor | QuantizedRows, residual: torch.Tensor, norm: nn.LayerNorm, next_scale: torch.Tensor | None
    ) -> NormedRows:
        """LayerNorm(this layer of `x` + `residual`) and its codes for the next int8 layer, whose input smoothing is
        `next_scale` (None for none), from one kernel (`fused_attention.amx_linear_norm`; the "amx" kernel only)."""
        rows = self._codes(x)
        n = self.out_features
        hidden, codes, scale, offset = fused_attention.amx_linear_norm(
            *self._amx_inputs(rows), residual.reshape(-1, n), norm.weight, norm.bias, norm.eps, next_scale, UINT8_ZERO
        )
        return NormedRows(hidden.reshape(*rows.shape, n), QuantizedRows(codes, scale, offset, rows.shape))

    def attention(
        self,
        x: torch.Tensor | QuantizedRows | NormedRows,
        mask: torch.Tensor,
        heads: int,
        scale: float,
        next_scale: torch.Tensor | None,
    ) -> QuantizedRows:
        """BERT's self-attention over this query-key-value layer of `x` (sequences [batch, length] with the additive
        key `mask`), quantised for the attention-output layer, whose input smoothing is `next_scale` (None for none),
        from one kernel (`fused_attention.amx_qkv_attention`; the "amx" kernel only)."""
        rows = self._codes(x)
        out = fused_attention.amx_qkv_attention(*self._amx_inputs(rows), mask, heads, scale, next_scale, UINT8_ZERO)
        return QuantizedRows(*out, rows.shape)

    def _codes(self, x: torch.Tensor | QuantizedRows | NormedRows) -> QuantizedRows:
        """`x` as this layer's quantised input: its codes where it carries them, else quantised here."""
        if isinstance(x, NormedRows):
            return x.codes
        return x if isinstance(x, QuantizedRows) else self._quantized(x)

    def _amx_inputs(self, rows: QuantizedRows) -> tuple:
        """The AMX ops' first arguments (`fused_attention.amx_int8_linear`'s but the zero point) for `rows`."""
        return (rows.codes, self.packed, self.column_sums, self.weight_scale, rows.scale, rows.offset, self.weight_sum, self.bias)

    def _from_codes(
        self, codes: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor, shape: torch.Size
    ) -> torch.Tensor | QuantizedRows:
        """The layer on quantised rows (all kernels but "fbgemm")."""
        if self.kernel == "amx":
            op = fused_attention.amx_gelu_codes if self.emit_gelu_codes else fused_attention.amx_int8_linear
            out = op(*self._amx_inputs(QuantizedRows(codes, scale, offset, shape)), UINT8_ZERO)
            return QuantizedRows(*out, shape) if self.emit_gelu_codes else out.reshape(*shape, self.out_features)
        if self.kernel == "onednn":
            products, column_scale = onednn_int8_linear(codes, self.packed, self.weight_scale, self.out_features), None
        else:
            products, column_scale = torch._int_mm(codes, self.weight_int8), self.weight_scale
        if self.emit_gelu_codes:
            zero = UINT8_ZERO if self.kernel in UINT8_KERNELS else 0
            gelu = fused_attention.gelu_codes(products, column_scale, scale, offset, self.weight_sum, self.bias, zero)
            return QuantizedRows(gelu[0] if zero else gelu[0].view(torch.int8), gelu[1], gelu[2], shape)
        out = products * scale if column_scale is None else products.float() * scale * column_scale
        return self._dequantized(out, offset, shape)

    def _dequantized(self, out: torch.Tensor, offset: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        out = out + offset * self.weight_sum
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*shape, self.out_features)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
            f"kernel={self.kernel}, gelu_input={self.gelu_input}"
        )


def smoothing(norm: nn.LayerNorm, linears: list[nn.Linear], alpha: float = ALPHA) -> torch.Tensor:
    """The per-channel s of the linear layers that read `norm`'s output (see the module docstring)."""
    tiny = 1e-5
    activation = (norm.weight.abs() + norm.bias.abs()).detach().float().clamp(min=tiny)
    weight = torch.stack([lin.weight.detach().float().abs().amax(dim=0) for lin in linears]).amax(dim=0).clamp(min=tiny)
    return activation**alpha / weight ** (1 - alpha)


def stacked(linears: list[nn.Linear]) -> nn.Linear:
    """One linear layer whose output is those of `linears` (which read the same input) side by side."""
    out = nn.Linear(linears[0].in_features, sum(lin.out_features for lin in linears), bias=linears[0].bias is not None)
    with torch.no_grad():
        out.weight.copy_(torch.cat([lin.weight for lin in linears]))
        if out.bias is not None:
            out.bias.copy_(torch.cat([lin.bias for lin in linears]))
    return out


def quantize_encoder(encoder: nn.Module, alpha: float | None = ALPHA, kernel: str | None = None) -> int:
    """Replace every `nn.Linear` of a BERT encoder by an `Int8Linear` with `kernel` (default: `int8_kernel()`), in
    place, smoothing the layers that read a LayerNorm (query, key and value; the feed-forward input) unless `alpha`
    is None, and moving each feed-forward GELU into the layer after it (`gelu_input`); returns how many were
    replaced. Each attention's query, key and value become one `Int8Linear` (`qkv`): the three share their input's
    codes and one GEMM three times as wide ran 1.2-1.4x faster than three on oneDNN (benchmarks/PROFILE.md)."""
    smooth: dict[nn.Linear, torch.Tensor] = {}
    norm = encoder.embeddings.LayerNorm
    for layer in encoder.encoder.layer if alpha is not None else ():
        attention = layer.attention.self
        qkv = [attention.query, attention.key, attention.value]
        smooth |= dict.fromkeys(qkv, smoothing(norm, qkv, alpha))
        smooth[layer.intermediate.dense] = smoothing(layer.attention.output.LayerNorm, [layer.intermediate.dense], alpha)
        norm = layer.output.LayerNorm
    gelu_input = set()
    replaced = 0
    for layer in encoder.encoder.layer:
        layer.intermediate.intermediate_act_fn = nn.Identity()
        gelu_input.add(layer.output.dense)
        attention = layer.attention.self
        qkv = [attention.query, attention.key, attention.value]
        attention.qkv = Int8Linear(stacked(qkv), smooth.get(attention.query), kernel)
        del attention.query, attention.key, attention.value
        replaced += 3
    for parent in list(encoder.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear:
                setattr(parent, name, Int8Linear(child, smooth.get(child), kernel, child in gelu_input))
                replaced += 1
    return replaced


def fuse_norms(encoder: nn.Module) -> int:
    """Let each attention-output and feed-forward-output step of a BERT encoder (quantised by `quantize_encoder` on
    the "amx" kernel) whose LayerNorm feeds another int8 layer hand that layer its input already quantised, from the
    GEMM's own kernel (`fused_attention.amx_linear_norm`): every such step but the last layer's output. Returns how
    many steps do."""
    layers = list(encoder.encoder.layer)
    steps = [(layer.attention.output, layer.intermediate.dense) for layer in layers]
    steps += [(layer.output, after.attention.self.qkv) for layer, after in itertools.pairwise(layers)]
    fused = 0
    for step, reader in steps:
        if all(isinstance(m, Int8Linear) and m.kernel == "amx" for m in (step.dense, reader)) and not reader.gelu_input:
            step.next_scale, step.next_codes = reader.input_scale, True
            fused += 1
    return fused


def fuse_attention(encoder: nn.Module) -> int:
    """Let each self-attention of a BERT encoder (quantised by `quantize_encoder` on the "amx" kernel) run with its
    query-key-value layer in one kernel that hands the attention-output layer its input already quantised
    (`fused_attention.amx_qkv_attention`), where the head size suits it and the kernel runs here. Scoring only, with
    "fused" attention. Returns how many attentions do."""
    fused = 0
    for layer in encoder.encoder.layer:
        attention, dense = layer.attention.self, layer.attention.output.dense
        suits = attention.head_size % fused_attention.AMX_HEAD_MULTIPLE == 0
        amx = all(isinstance(m, Int8Linear) and m.kernel == "amx" for m in (attention.qkv, dense))
        # Availability last: it builds the kernel, which other precisions and kernels never need.
        if suits and amx and fused_attention.amx_attention_available():
            attention.emit_codes, attention.next_scale = True, dense.input_scale
            fused += 1
    return fused


def fuse_gelu(encoder: nn.Module) -> int:
    """Let each int8 feed-forward input layer of a BERT encoder (quantised by `quantize_encoder`, on any kernel but
    "fbgemm") hand GELU of its output to the output layer already quantised, from one fused kernel
    (`fused_attention.gelu_codes`, which must be available); returns how many layers do."""
    fused = 0
    for layer in encoder.encoder.layer:
        first, second = layer.intermediate.dense, layer.output.dense
        if isinstance(second, Int8Linear) and second.gelu_input and first.kernel != "fbgemm" and first.bias is not None:
            first.emit_gelu_codes = True
            fused += 1
    return fused

"""Fused CPU kernels for the int8 and compiled scoring paths, built once per CPU with the machine's C++ compiler (as
torch.compile's inductor builds its own kernels) and called through torch custom ops, which a compiled graph calls
as opaque kernels: self-attention (`model/kernels/attention.cpp`), the int8 feed-forward layer's GELU and
quantisation (`model/kernels/gelu_codes.cpp`, `gelu_codes`), the int8 linear layers' GEMM on AMX's int8 tiles
(`model/kernels/amx_linear.cpp`: `amx_int8_linear`, and with the steps after it, `amx_gelu_codes` and
`amx_linear_norm`), on AMX the query-key-value layer with self-attention on bf16 tiles
(`model/kernels/amx_attention.cpp`: `amx_qkv_attention`; `model/amx_encoder.py` chains them all in one call a
batch), and the heads' pooling for scoring (`model/kernels/pooling.cpp`: `masked_means`). Where AMX is missing, or
oneDNN's ISA cap leaves it out, the AMX kernels run on tiles emulated with AVX512-VNNI (`model/kernels/tiles.h`,
`tiles`).

At our lengths (30-40 tokens, head size 32) the compiled matmul-softmax-matmul graph spends most of its time in
small batched matmuls, a separate softmax pass and transposes of the heads; the kernel does the whole attention
of one (sequence, head) in small per-thread buffers and reads the projections in place (benchmarks/PROFILE.md).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

SOURCE = Path(__file__).resolve().parent / "kernels" / "attention.cpp"
GELU_CODES_SOURCE = SOURCE.parent / "gelu_codes.cpp"
ATTENTION_ARGS = (*[ctypes.c_void_p] * 5, *[ctypes.c_int64] * 5, ctypes.c_float, ctypes.c_int)
GELU_CODES_ARGS = (*[ctypes.c_void_p] * 9, *[ctypes.c_int64] * 2, ctypes.c_int, ctypes.c_int)
AMX_SOURCE = SOURCE.parent / "amx_linear.cpp"
AMX_LINEAR_ARGS = (*[ctypes.c_void_p] * 9, *[ctypes.c_int64] * 3, ctypes.c_int, ctypes.c_int)
AMX_PACK_ARGS = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)
AMX_GELU_CODES_ARGS = (*[ctypes.c_void_p] * 11, *[ctypes.c_int64] * 3, ctypes.c_int, ctypes.c_int)
AMX_LINEAR_NORM_ARGS = (*[ctypes.c_void_p] * 16, *[ctypes.c_int64] * 3, ctypes.c_float, ctypes.c_int, ctypes.c_int)
AMX_ATTENTION_SOURCE = SOURCE.parent / "amx_attention.cpp"
AMX_QKV_ATTENTION_ARGS = (*[ctypes.c_void_p] * 13, *[ctypes.c_int64] * 5, ctypes.c_float, ctypes.c_int, ctypes.c_int)
POOLING_SOURCE = SOURCE.parent / "pooling.cpp"
MASKED_MEANS_ARGS = (*[ctypes.c_void_p] * 4, ctypes.c_int, ctypes.c_void_p, *[ctypes.c_int64] * 4, ctypes.c_int)
# The masks' dtypes the pooling kernel reads in place (bit i of its `wide` set for an int64 mask i).
POOLING_DTYPES = (torch.int64, torch.float32)
# The head sizes the AMX attention takes: multiples of a bf16 tile's depth.
AMX_HEAD_MULTIPLE = 32
# What AMX's tiles take: weights padded to a multiple of AMX_DEPTH rows (input features) and AMX_COLUMNS columns.
AMX_DEPTH, AMX_COLUMNS = 64, 32
FLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c++17")
BUILD_TIMEOUT_S = 120


# The ops' registry. torch.library's custom_op wraps each call in Python of its own (a dynamo guard, a check that no
# output aliases an input): 14 µs a call against 5 for the same op defined on a Library (ad hoc, an empty op of
# eleven arguments), at 1,200 calls a 2,000-pair pass (benchmarks/PROFILE.md, session 20).
LIBRARY = torch.library.Library("stance", "FRAGMENT")


def stance_op(*tags: torch.Tag) -> Callable[[Callable[..., object]], torch._ops.OpOverloadPacket]:
    """A decorator: the function as the kernel of the op stance::<its name> on every device, its schema from its
    type hints (no argument mutated); gives the op, which a compiled graph calls as one opaque kernel (its fake
    function registered with torch.library.register_fake)."""

    def register(fn: Callable[..., object]) -> torch._ops.OpOverloadPacket:
        LIBRARY.define(fn.__name__ + torch.library.infer_schema(fn, mutates_args=()), tags=tags)
        LIBRARY.impl(fn.__name__, fn, "CompositeExplicitAutograd")
        return getattr(torch.ops.stance, fn.__name__)

    return register


def cxx_compiler() -> str | None:
    """The C++ compiler to build CPU kernels with: $CXX, else g++, c++ or clang++ on the PATH; None if none."""
    for name in (os.environ.get("CXX", ""), "g++", "c++", "clang++"):
        if name and (found := shutil.which(name)):
            return found
    return None


def cache_dir() -> Path:
    """Where built kernels are kept, like inductor's /tmp/torchinductor_$USER (under $TMPDIR where it is set)."""
    return Path(tempfile.gettempdir()) / f"actor_stance_kernels_{os.getuid()}"


def _cpu_signature() -> str:
    """What -march=native depends on: the CPU's model and flags (Linux), else the platform's name."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    wanted = ("model name", "flags", "Features", "CPU part")
    return "\n".join(sorted({line for line in lines if line.split(":")[0].strip() in wanted}))


def build(compiler: str, source: Path = SOURCE, flags: tuple[str, ...] | None = None) -> Path:
    """The shared library of `source` for this CPU, compiled with `flags` (FLAGS unless given) unless the cache has
    it; raises OSError or subprocess.SubprocessError when it cannot be built."""
    flags = FLAGS if flags is None else flags
    # What the source may include: the headers, and other sources (amx_encoder.cpp builds two others into one library).
    others = [f.read_text() for f in sorted(source.parent.iterdir()) if f.suffix in (".h", ".cpp") and f != source]
    key = hashlib.sha256("\0".join([source.read_text(), *others, compiler, *flags, _cpu_signature()]).encode()).hexdigest()
    folder = cache_dir()
    library = folder / f"{source.stem}-{key[:20]}.so"
    if library.exists():
        return library
    folder.mkdir(parents=True, exist_ok=True)
    # Built under a unique name and renamed, so processes or threads building at once never load a half-written file.
    handle, name = tempfile.mkstemp(prefix=f"{library.stem}.", suffix=".partial.so", dir=folder)
    os.close(handle)
    partial = Path(name)
    try:
        subprocess.run(
            [compiler, *flags, str(source), "-o", str(partial)], check=True, capture_output=True, timeout=BUILD_TIMEOUT_S
        )
        partial.replace(library)
    finally:
        partial.unlink(missing_ok=True)
    return library


def bind(
    library: Path, name: str = "stance_attention", argtypes: tuple = ATTENTION_ARGS, restype: type | None = None
) -> Callable[..., None]:
    """A kernel's C function in a built library; raises OSError or AttributeError if it cannot be loaded."""
    function = getattr(ctypes.CDLL(str(library)), name)
    function.restype = restype
    function.argtypes = list(argtypes)
    return function


@functools.cache
def _built(source: Path, name: str, argtypes: tuple, restype: type | None = None) -> Callable[..., None] | None:
    compiler = cxx_compiler()
    if compiler is None:
        return None
    try:
        return bind(build(compiler, source, (*FLAGS, *_capped_flags())), name, argtypes, restype)
    except (OSError, subprocess.SubprocessError, AttributeError):
        return None


def _capped_flags() -> tuple[str, ...]:
    """What oneDNN's ISA cap takes from the kernels' builds: where AMX's tiles may not be used, the AMX kernels are
    built on emulated ones even if the compiler targets AMX (the other kernels ignore the definition), and under
    AVX512_CORE_VNNI, without AVX512-BF16, as on a CPU with VNNI but not BF16 (Ice Lake, Cascade Lake)."""
    if amx_tiles():
        return ()
    return ("-DSTANCE_EMULATE_TILES", *(("-mno-avx512bf16",) if _cap() == "AVX512_CORE_VNNI" else ()))


def _kernel() -> Callable[..., None] | None:
    return _built(SOURCE, "stance_attention", ATTENTION_ARGS)


def _gelu_codes_kernel() -> Callable[..., None] | None:
    return _built(GELU_CODES_SOURCE, "stance_gelu_codes", GELU_CODES_ARGS)


def _amx_linear_kernel() -> Callable[..., None] | None:
    return _built(AMX_SOURCE, "stance_amx_linear", AMX_LINEAR_ARGS)


def _amx_gelu_codes_kernel() -> Callable[..., None] | None:
    return _built(AMX_SOURCE, "stance_amx_gelu_codes", AMX_GELU_CODES_ARGS)


def _amx_linear_norm_kernel() -> Callable[..., None] | None:
    return _built(AMX_SOURCE, "stance_amx_linear_norm", AMX_LINEAR_NORM_ARGS)


def isa_cap() -> str | None:
    """oneDNN's ISA cap as set (ONEDNN_MAX_CPU_ISA, or its older name DNNL_MAX_CPU_ISA), or None."""
    return os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")


def _cap() -> str:
    return (isa_cap() or "ALL").upper()


def amx_tiles() -> bool:
    """Whether this process may use AMX's int8 tiles: the CPU has them, and oneDNN's ISA cap, where set, keeps AMX.
    A cap below AMX, which keeps torch's own int8 and bf16 GEMMs off the tiles, keeps ours off them too."""
    cap = _cap()
    return torch.cpu.get_capabilities().get("amx_int8", False) and (cap in ("ALL", "DEFAULT") or "AMX" in cap)


def tiles() -> str | None:
    """How the AMX kernels' tiles run here: "amx" (`amx_tiles`), "emulated" with AVX512-VNNI (model/kernels/tiles.h)
    where AMX's may not be used but the CPU has AVX512-VNNI and oneDNN's ISA cap, where set, keeps it, or None."""
    if amx_tiles():
        return "amx"
    cap = _cap()
    vnni_caps = ("ALL", "DEFAULT", "AVX512_CORE_VNNI", "AVX512_CORE_BF16", "AVX512_CORE_FP16")
    keeps_vnni = cap in vnni_caps or cap.startswith("AVX10") or "AMX" in cap
    return "emulated" if keeps_vnni and torch.cpu.get_capabilities().get("avx512_vnni", False) else None


@functools.cache
def amx_available() -> bool:
    """Whether the AMX int8 GEMM runs here: on AMX's int8 tiles where they may be used, else on emulated ones
    (`tiles`); the kernel builds, and Linux lets this process use the tiles (the first call asks it)."""
    if tiles() is None:
        return False
    init = _built(AMX_SOURCE, "stance_amx_init", (), ctypes.c_int)
    kernels = (_amx_linear_kernel(), _amx_gelu_codes_kernel(), _amx_linear_norm_kernel())
    return init is not None and init() == 0 and all(kernel is not None for kernel in kernels)


def _amx_qkv_attention_kernel() -> Callable[..., None] | None:
    return _built(AMX_ATTENTION_SOURCE, "stance_amx_qkv_attention", AMX_QKV_ATTENTION_ARGS)


@functools.cache
def amx_attention_available() -> bool:
    """Whether `amx_qkv_attention` runs here: the AMX int8 GEMM does (`amx_available`), on AMX's tiles where the CPU
    has AMX's bf16 tiles and AVX512-BF16 too (else on emulated tiles, `tiles`, which need neither), and the kernel
    builds (a compiler that does not target them builds a stub)."""
    capabilities = torch.cpu.get_capabilities()
    native = capabilities.get("amx_bf16", False) and capabilities.get("avx512_bf16", False)
    if not ((native or tiles() == "emulated") and amx_available()):
        return False
    built = _built(AMX_ATTENTION_SOURCE, "stance_amx_attention_built", (), ctypes.c_int)
    return built is not None and built() == 1 and _amx_qkv_attention_kernel() is not None


def _round_up(x: int, multiple: int) -> int:
    return -(-x // multiple) * multiple


def amx_pack(weights: torch.Tensor) -> torch.Tensor:
    """int8 weights [in_features, out_features] in the tile order that `amx_int8_linear` reads, zero-padded to
    multiples of AMX_DEPTH and AMX_COLUMNS (`amx_available()` must be true)."""
    depth, columns = weights.shape
    packed = torch.empty(_round_up(depth, AMX_DEPTH) * _round_up(columns, AMX_COLUMNS), dtype=torch.int8)
    pack = _built(AMX_SOURCE, "stance_amx_pack", AMX_PACK_ARGS)
    pack(weights.to(torch.int8).contiguous().data_ptr(), packed.data_ptr(), depth, columns)
    return packed


def _amx_run(kernel: Callable[..., None] | None, inputs: tuple, outputs: tuple, *scalars: float) -> None:
    """An AMX kernel on the AMX ops' `inputs` (the codes, packed weights, column sums and weight scales first),
    writing `outputs`; `scalars` follow the sizes, before the thread count."""
    if kernel is None or not amx_available():
        raise RuntimeError("the AMX int8 kernel is not available (see model.fused_attention.amx_available)")
    codes, _, column_sums, weight_scale = inputs[:4]
    if codes.dtype != torch.uint8 or column_sums.dtype != torch.int32 or weight_scale.dtype != torch.float32:
        raise ValueError("the AMX int8 kernel takes uint8 codes, int32 column sums and float32 weight scales")
    # Kept in a list, so that a contiguous copy outlives the call that reads it.
    tensors = [None if t is None else t.contiguous() for t in inputs]
    pointers = [None if t is None else t.data_ptr() for t in (*tensors, *outputs)]
    kernel(*pointers, *codes.shape, weight_scale.shape[0], *scalars, torch.get_num_threads())


@stance_op()
def amx_int8_linear(
    codes: torch.Tensor,
    packed: torch.Tensor,
    column_sums: torch.Tensor,
    weight_scale: torch.Tensor,
    row_scale: torch.Tensor,
    row_offset: torch.Tensor,
    weight_sum: torch.Tensor,
    bias: torch.Tensor | None,
    zero_point: int,
) -> torch.Tensor:
    """The int8 linear layer (model/quant.py's Int8Linear) on AMX's int8 tiles, from its input's uint8 `codes`
    [rows, in_features] (int8 codes plus `zero_point`) with their [rows, 1] `row_scale` and `row_offset`: the codes
    times the int8 weights that `packed` holds (from `amx_pack`), each output channel times its `weight_scale`, then
    dequantised (times the row's scale, plus the row's offset times `weight_sum`, plus `bias`), as float32 [rows,
    out_features]. `column_sums` are the int32 sums of each output channel's int8 weights, for the zero point's
    share. Before dequantising, the products are oneDNN's int8 Linear's, bit for bit."""
    out = _amx_output(codes, weight_scale)
    inputs = (codes, packed, column_sums, weight_scale, row_scale, row_offset, weight_sum, bias)
    _amx_run(_amx_linear_kernel(), inputs, (out,), zero_point)
    return out


def _amx_output(codes: torch.Tensor, weight_scale: torch.Tensor) -> torch.Tensor:
    return codes.new_empty((codes.shape[0], weight_scale.shape[0]), dtype=torch.float32)


@torch.library.register_fake("stance::amx_int8_linear")
def _(
    codes: torch.Tensor,
    packed: torch.Tensor,
    column_sums: torch.Tensor,
    weight_scale: torch.Tensor,
    row_scale: torch.Tensor,
    row_offset: torch.Tensor,
    weight_sum: torch.Tensor,
    bias: torch.Tensor | None,
    zero_point: int,
) -> torch.Tensor:
    return _amx_output(codes, weight_scale)


@stance_op()
def amx_gelu_codes(
    codes: torch.Tensor,
    packed: torch.Tensor,
    column_sums: torch.Tensor,
    weight_scale: torch.Tensor,
    row_scale: torch.Tensor,
    row_offset: torch.Tensor,
    weight_sum: torch.Tensor,
    bias: torch.Tensor,
    zero_point: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The feed-forward input layer on AMX's int8 tiles, with `amx_int8_linear`'s arguments, ending in `gelu_codes`
    in the same kernel, which never writes the layer's output out: GELU of it, quantised per row for the output
    layer. Returns what `gelu_codes` does."""
    outputs = _codes_outputs(codes, codes.shape[0], weight_scale.shape[0])
    inputs = (codes, packed, column_sums, weight_scale, row_scale, row_offset, weight_sum, bias)
    _amx_run(_amx_gelu_codes_kernel(), inputs, outputs, zero_point)
    return outputs


@torch.library.register_fake("stance::amx_gelu_codes")
def _(
    codes: torch.Tensor,
    packed: torch.Tensor,
    column_sums: torch.Tensor,
    weight_scale: torch.Tensor,
    row_scale: torch.Tensor,
    row_offset: torch.Tensor,
    weight_sum: torch.Tensor,
    bias: torch.Tensor,
    zero_point: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return _codes_outputs(codes, codes.shape[0], weight_scale.shape[0])


@stance_op()
def amx_linear_norm(
    codes: torch.Tensor,
    packed: torch.Tensor,
    column_sums: torch.Tensor,
    weight_scale: torch.Tensor,
    row_scale: torch.Tensor,
    row_offset: torch.Tensor,
    weight_sum: torch.Tensor,
    bias: torch.Tensor | None,
    residual: torch.Tensor,
    gamma: torch.Tensor,
    beta: torch.Tensor,
    eps: float,
    next_scale: torch.Tensor | None,
    zero_point: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """BERT's attention-output or feed-forward-output step, when an int8 layer reads its result: `amx_int8_linear`
    (the same first arguments) plus the [rows, out_features] `residual`, through a LayerNorm (`gamma`, `beta`,
    `eps`), in one kernel that also quantises the result for the next layer (times its smoothing `next_scale`,
    None for none; codes plus `zero_point`). Returns the normed rows and the next layer's codes, scale and offset."""
    hidden = _amx_output(codes, weight_scale)
    outputs = (hidden, *_codes_outputs(codes, codes.shape[0], weight_scale.shape[0]))
    inputs = (
        codes,
        packed,
        column_sums,
        weight_scale,
        row_scale,
        row_offset,
        weight_sum,
        bias,
        residual,
        gamma,
        beta,
        next_scale,
    )
    _amx_run(_amx_linear_norm_kernel(), inputs, outputs, eps, zero_point)
    return outputs


@torch.library.register_fake("stance::amx_linear_norm")
def _(
    codes: torch.Tensor,
    packed: torch.Tensor,
    column_sums: torch.Tensor,
    weight_scale: torch.Tensor,
    row_scale: torch.Tensor,
    row_offset: torch.Tensor,
    weight_sum: torch.Tensor,
    bias: torch.Tensor | None,
    residual: torch.Tensor,
    gamma: torch.Tensor,
    beta: torch.Tensor,
    eps: float,
    next_scale: torch.Tensor | None,
    zero_point: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return (_amx_output(codes, weight_scale), *_codes_outputs(codes, codes.shape[0], weight_scale.shape[0]))


@stance_op()
def amx_qkv_attention(
    codes: torch.Tensor,
    packed: torch.Tensor,
    column_sums: torch.Tensor,
    weight_scale: torch.Tensor,
    row_scale: torch.Tensor,
    row_offset: torch.Tensor,
    weight_sum: torch.Tensor,
    bias: torch.Tensor | None,
    mask: torch.Tensor,
    heads: int,
    scale: float,
    next_scale: torch.Tensor | None,
    zero_point: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """BERT's query-key-value layer and self-attention in one kernel (`model/kernels/amx_attention.cpp`), from the
    layer's input codes to the attention-output layer's: `amx_int8_linear`'s arguments for the query-key-value
    layer (its output the queries, keys and values side by side) on the rows of `mask`'s [batch, length] sequences,
    `mask` the additive key mask (0 where attended), then softmax(query · keyᵀ · `scale` + mask) · value per head in
    bf16 with float32 sums, times `next_scale` (the attention-output layer's smoothing, None for none), quantised
    per row. Returns the codes (plus `zero_point`) and their [rows, 1] scale and offset, as `gelu_codes` does."""
    if not amx_attention_available():
        raise RuntimeError("the AMX attention kernel is not available (see model.fused_attention.amx_attention_available)")
    width = weight_scale.shape[0] // 3
    if width % heads or (width // heads) % AMX_HEAD_MULTIPLE:
        raise ValueError(f"the AMX attention takes head sizes that are multiples of {AMX_HEAD_MULTIPLE}")
    batch = mask.shape[0]
    outputs = _codes_outputs(codes, codes.shape[0], width)
    inputs = (codes, packed, column_sums, weight_scale, row_scale, row_offset, weight_sum, bias)
    masks = mask.reshape(batch, -1).float()
    _amx_run(_amx_qkv_attention_kernel(), (*inputs, masks, next_scale), outputs, batch, heads, scale, zero_point)
    return outputs


@torch.library.register_fake("stance::amx_qkv_attention")
def _(
    codes: torch.Tensor,
    packed: torch.Tensor,
    column_sums: torch.Tensor,
    weight_scale: torch.Tensor,
    row_scale: torch.Tensor,
    row_offset: torch.Tensor,
    weight_sum: torch.Tensor,
    bias: torch.Tensor | None,
    mask: torch.Tensor,
    heads: int,
    scale: float,
    next_scale: torch.Tensor | None,
    zero_point: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return _codes_outputs(codes, codes.shape[0], weight_scale.shape[0] // 3)


def available() -> bool:
    """Whether the kernels are built and loaded (the first call builds them, a second or two, or loads them from the
    cache)."""
    return _kernel() is not None and _gelu_codes_kernel() is not None and _masked_means_kernel() is not None


def _masked_means_kernel() -> Callable[..., None] | None:
    return _built(POOLING_SOURCE, "stance_masked_means", MASKED_MEANS_ARGS)


def masked_means(hidden: torch.Tensor, *masks: torch.Tensor) -> torch.Tensor:
    """`model.network.masked_means` (each mask's mean of the [batch, length, width] float32 `hidden` rows, side by
    side; at most 3 masks) in one kernel (`model/kernels/pooling.cpp`), for scoring: no gradient flows back. int64
    and float32 masks are read in place: right after the encoder, each torch call to convert or stack them cost
    more than the pooling (benchmarks/PROFILE.md, session 21)."""
    kernel = _masked_means_kernel()
    if kernel is None:
        raise RuntimeError("the pooling kernel is not available (see model.fused_attention.available)")
    if hidden.dtype != torch.float32 or hidden.device.type != "cpu":
        raise ValueError("the pooling kernel takes float32 CPU rows")
    batch, length, width = hidden.shape
    if not 1 <= len(masks) <= 3 or any(m.shape != (batch, length) for m in masks):
        raise ValueError("the pooling kernel takes 1 to 3 masks of [batch, length]")
    rows = hidden if hidden.is_contiguous() else hidden.contiguous()
    read = [m if m.dtype in POOLING_DTYPES and m.is_contiguous() else m.to(torch.float32).contiguous() for m in masks]
    wide = sum(1 << i for i, m in enumerate(read) if m.dtype == torch.int64)
    pointers = [m.data_ptr() for m in read] + [None] * (3 - len(read))
    out = hidden.new_empty((batch, len(masks) * width))
    kernel(rows.data_ptr(), *pointers, wide, out.data_ptr(), batch, length, width, len(masks), torch.get_num_threads())
    return out


def run(
    kernel: Callable[..., None],
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: torch.Tensor,
    heads: int,
    scale: float,
) -> torch.Tensor:
    """`kernel` (from `bind`) on the inputs of `attention`."""
    batch, length, width = query.shape
    projections = [query, key, value]
    if not all(t.stride(2) == 1 and t.stride(0) == length * t.stride(1) == length * query.stride(1) for t in projections):
        projections = [t.contiguous() for t in projections]
    tensors = [*projections, mask.reshape(batch, length).to(query.dtype).contiguous()]
    if any(t.dtype != torch.float32 or t.device.type != "cpu" for t in tensors):
        raise ValueError("fused attention takes fp32 CPU tensors")
    out = query.new_empty(query.shape)
    row = projections[0].stride(1)
    kernel(
        *(t.data_ptr() for t in tensors),
        out.data_ptr(),
        batch,
        length,
        heads,
        width // heads,
        row,
        scale,
        torch.get_num_threads(),
    )
    return out


@stance_op(torch.Tag.flexible_layout)
def attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor, heads: int, scale: float
) -> torch.Tensor:
    """softmax(query · keyᵀ · scale + mask) · value per head, for fp32 [batch, length, heads × head_size] projections
    and an additive [batch, length] key mask (0 where attended); the output is contiguous in that layout. The
    projections are read in place where their rows are evenly spaced, as in the query-key-value layer's output."""
    kernel = _kernel()
    if kernel is None:
        raise RuntimeError("the fused attention kernel is not available (see model.fused_attention.available)")
    return run(kernel, query, key, value, mask, heads, scale)


@torch.library.register_fake("stance::attention")
def _(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor, heads: int, scale: float) -> torch.Tensor:
    return query.new_empty(query.shape)


@stance_op()
def gelu_codes(
    products: torch.Tensor,
    column_scale: torch.Tensor | None,
    row_scale: torch.Tensor,
    row_offset: torch.Tensor,
    weight_sum: torch.Tensor,
    bias: torch.Tensor,
    zero_point: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The int8 feed-forward layer's middle (`model/kernels/gelu_codes.cpp`): `products` [rows, n] of the
    intermediate layer's GEMM (float32, or int32 with `column_scale`) dequantised with the [rows, 1] `row_scale` and
    `row_offset`, `weight_sum` and `bias`, then GELU, quantised per row for the output layer. Returns the codes
    (uint8, each int8 code plus `zero_point`, 0 or 128) and their [rows, 1] scale and offset."""
    kernel = _gelu_codes_kernel()
    if kernel is None:
        raise RuntimeError("the fused GELU kernel is not available (see model.fused_attention.available)")
    rows, n = products.shape
    inputs = [t if t is None else t.contiguous() for t in (products, column_scale, row_scale, row_offset, weight_sum, bias)]
    codes, scale, offset = outputs = _codes_outputs(products, rows, n)
    pointers = [None if t is None else t.data_ptr() for t in inputs]
    kernel(*pointers, codes.data_ptr(), scale.data_ptr(), offset.data_ptr(), rows, n, zero_point, torch.get_num_threads())
    return outputs


def _codes_outputs(like: torch.Tensor, rows: int, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Codes for an int8 layer, empty, on `like`'s device: the codes [rows, n] and their [rows, 1] scale and
    offset (`gelu_codes`'s outputs)."""
    scale, offset = (like.new_empty((rows, 1), dtype=torch.float32) for _ in range(2))
    return like.new_empty((rows, n), dtype=torch.uint8), scale, offset


@torch.library.register_fake("stance::gelu_codes")
def _(
    products: torch.Tensor,
    column_scale: torch.Tensor | None,
    row_scale: torch.Tensor,
    row_offset: torch.Tensor,
    weight_sum: torch.Tensor,
    bias: torch.Tensor,
    zero_point: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return _codes_outputs(products, *products.shape)

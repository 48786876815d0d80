import ctypes
import platform
import shutil
import subprocess

import pytest
import torch
import torch.nn.functional as F
from transformers import BertConfig

from model import fused_attention
from model.bert import BertEncoder
from model.quant import Int8Linear, QuantizedRows, fuse_attention, gelu_range, quantize_encoder, stacked

needs_compiler = pytest.mark.skipif(fused_attention.cxx_compiler() is None, reason="the kernel needs a C++ compiler")
needs_amx = pytest.mark.skipif(not fused_attention.amx_available(), reason="the AMX kernel needs AMX's int8 tiles")


def reference(query, key, value, mask, heads, scale):
    """Attention as model.bert's eager path computes it, on [batch, length, width] projections."""
    batch, length, width = query.shape
    split = [x.view(batch, length, heads, -1).transpose(1, 2) for x in (query, key, value)]
    scores = split[0] @ split[1].transpose(2, 3) * scale + mask.view(batch, 1, 1, length)
    return (F.softmax(scores, dim=-1) @ split[2]).transpose(1, 2).reshape(batch, length, width)


def narrower_build(tmp_path, monkeypatch, source, narrower):
    """`source` built into a cache under `tmp_path` with the extra `narrower` flags (fewer vector extensions)."""
    monkeypatch.setattr(fused_attention, "cache_dir", lambda: tmp_path)
    return fused_attention.build(fused_attention.cxx_compiler(), source, (*fused_attention.FLAGS, *narrower))


def projections(batch, length, heads, head_size, seed=0):
    torch.manual_seed(seed)
    q, k, v = (torch.randn(batch, length, heads * head_size) * 2 for _ in range(3))
    lengths = torch.randint(1, length + 1, (batch,))
    lengths[0] = length
    keep = torch.arange(length)[None, :] < lengths[:, None]
    mask = torch.zeros(batch, length).masked_fill(~keep, torch.finfo(torch.float32).min)
    return q, k, v, mask, keep


@needs_compiler
def test_the_kernel_builds_where_a_compiler_is_found():
    assert fused_attention.available()


@needs_compiler
@pytest.mark.parametrize(
    ("batch", "length", "heads", "head_size"),
    [(5, 37, 12, 32), (3, 16, 2, 16), (4, 130, 4, 64), (3, 11, 3, 8), (1, 1, 2, 32), (2, 7, 1, 20)],
)
def test_the_kernel_equals_eager_attention_on_attended_rows(batch, length, heads, head_size):
    # Head sizes 16, 32 and 64 take the vector path, 8 and 20 the general one; lengths cross the vector width.
    q, k, v, mask, keep = projections(batch, length, heads, head_size)
    scale = head_size**-0.5
    ours = fused_attention.attention(q, k, v, mask, heads, scale)
    expected = reference(q, k, v, mask, heads, scale)
    assert ours.shape == expected.shape and ours.is_contiguous()
    # Rows of padded queries are computed too (they are masked downstream), so every row must match.
    assert torch.allclose(ours, expected, atol=2e-5, rtol=1e-5)
    assert keep.any()


@needs_compiler
def test_the_kernel_reads_projections_side_by_side_in_place(monkeypatch):
    # The int8 encoder's query-key-value layer gives the three as views of one [batch, length, 3 x width] tensor.
    q, k, v, mask, _ = projections(4, 37, 12, 32)
    views = torch.cat([q, k, v], dim=-1).chunk(3, dim=-1)
    copied = []
    monkeypatch.setattr(torch.Tensor, "contiguous", lambda t, *a, **kw: copied.append(t) or t.clone())
    ours = fused_attention.attention(*views, mask, 12, 32**-0.5)
    assert [t.shape for t in copied] == [mask.shape]  # the mask only
    assert torch.allclose(ours, reference(q, k, v, mask, 12, 32**-0.5), atol=2e-5, rtol=1e-5) and ours.is_contiguous()


@needs_compiler
@pytest.mark.parametrize("spread", [0.05, 20.0], ids=["near zero", "far out"])
def test_gelu_codes_hold_near_zero_and_far_out(spread):
    # Pre-activations of about +-0.1 and of about +-40, beyond the last piece of the AVX-512 build's erf spline.
    products, column_scale, row_scale, row_offset, weight_sum, bias = gelu_codes_inputs(integer=False)
    inputs = (products * spread, column_scale, row_scale, row_offset, weight_sum * spread, bias * spread)
    codes, _, _ = fused_attention.gelu_codes(*inputs, 128)
    expected = gelu_codes_reference(*inputs)[0]
    assert (decoded(codes, 128) != expected).float().mean() < 1e-4
    assert (decoded(codes, 128) - expected).abs().max() <= 1


@needs_compiler
@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86 vector flags")
@pytest.mark.parametrize("narrower", [("-mno-avx512f",), ("-mno-avx",)], ids=["8 lanes (AVX2)", "4 lanes (SSE)"])
def test_builds_for_narrower_vectors_compute_the_same(tmp_path, monkeypatch, narrower):
    # What CPUs without AVX-512 (or AVX) run: the lane count follows the vector extensions the build targets.
    kernel = fused_attention.bind(narrower_build(tmp_path, monkeypatch, fused_attention.SOURCE, narrower))
    for batch, length, heads, head_size in [(5, 37, 12, 32), (3, 11, 3, 8), (2, 70, 2, 16)]:
        q, k, v, mask, _ = projections(batch, length, heads, head_size)
        expected = reference(q, k, v, mask, heads, head_size**-0.5)
        assert torch.allclose(fused_attention.run(kernel, q, k, v, mask, heads, head_size**-0.5), expected, atol=2e-5, rtol=1e-5)


def gelu_codes_reference(products, column_scale, row_scale, row_offset, weight_sum, bias):
    """What Int8Linear computes in torch between the feed-forward layers: dequantise, GELU, quantise per row."""
    rows = (
        (products.float() * row_scale * column_scale if column_scale is not None else products * row_scale)
        + row_offset * weight_sum
        + bias
    )
    low, high = gelu_range(rows)
    offset, half = (high + low) / 2, ((high - low) / 2).clamp(min=torch.finfo(torch.float32).tiny)
    return torch.round((F.gelu(rows) - offset) * (127 / half)).clamp(-127, 127).int(), half / 127, offset


def gelu_codes_inputs(integer, rows=37, n=1536 + 5):
    torch.manual_seed(1)
    products = torch.randint(-3000, 3000, (rows, n), dtype=torch.int32) if integer else torch.randn(rows, n) * 2
    column_scale = torch.rand(n) * 1e-3 if integer else None
    return products, column_scale, torch.rand(rows, 1) + 0.5, torch.randn(rows, 1) * 0.1, torch.randn(n) * 0.1, torch.randn(n) - 1


def decoded(codes, zero_point):
    return codes.int() - zero_point if zero_point else codes.view(torch.int8).int()


@needs_compiler
@pytest.mark.parametrize("integer", [False, True], ids=["float products (onednn)", "int32 products (int_mm)"])
@pytest.mark.parametrize("zero_point", [0, 128])
def test_gelu_codes_equal_torchs_quantised_gelu(integer, zero_point):
    # 1,541 columns: the vector loop and the scalar tail.
    inputs = gelu_codes_inputs(integer)
    codes, scale, offset = fused_attention.gelu_codes(*inputs, zero_point)
    expected, expected_scale, expected_offset = gelu_codes_reference(*inputs)
    assert codes.dtype == torch.uint8 and codes.shape == expected.shape and scale.shape == offset.shape == (37, 1)
    # GELU within 1.1e-6 (AVX-512's spline) or 1.5e-7 (ATen's erf formula) and the same rounding: a code a step off
    # only where a value sits that close to a tie.
    assert (decoded(codes, zero_point) != expected).float().mean() < 1e-4
    assert (decoded(codes, zero_point) - expected).abs().max() <= 1
    assert torch.allclose(scale, expected_scale) and torch.allclose(offset, expected_offset)


@needs_compiler
@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86 vector flags")
@pytest.mark.parametrize("narrower", [("-mno-avx512f",), ("-mno-avx",)], ids=["8 lanes (AVX2)", "4 lanes (SSE)"])
def test_gelu_codes_build_for_narrower_vectors(tmp_path, monkeypatch, narrower):
    library = narrower_build(tmp_path, monkeypatch, fused_attention.GELU_CODES_SOURCE, narrower)
    kernel = fused_attention.bind(library, "stance_gelu_codes", fused_attention.GELU_CODES_ARGS)
    monkeypatch.setattr(fused_attention, "_gelu_codes_kernel", lambda: kernel)
    inputs = gelu_codes_inputs(integer=False)
    codes, _, _ = fused_attention.gelu_codes(*inputs, 128)
    assert (decoded(codes, 128) - gelu_codes_reference(*inputs)[0]).abs().max() <= 1


@needs_compiler
def test_masked_keys_get_no_weight():
    q, k, v, mask, keep = projections(2, 20, 2, 16)
    out = fused_attention.attention(q, k, v, mask, 2, 0.25)
    v_changed = v.clone()
    v_changed[~keep] = 1e6  # values of padded keys must not reach any output
    assert torch.equal(fused_attention.attention(q, k, v_changed, mask, 2, 0.25), out)


@needs_compiler
def test_the_kernel_takes_fp32_only():
    q, k, v, mask, _ = projections(2, 5, 2, 16)
    with pytest.raises(ValueError, match="fused attention takes fp32 CPU tensors"):
        fused_attention.attention(q.double(), k.double(), v.double(), mask.double(), 2, 0.25)


CONFIG = dict(vocab_size=500, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


def encoders() -> tuple[BertEncoder, BertEncoder]:
    torch.manual_seed(0)
    fused = BertEncoder(BertConfig(**CONFIG))
    eager = BertEncoder(BertConfig(**CONFIG))
    eager.load_state_dict(fused.state_dict())
    fused.set_attention("fused")
    eager.set_attention("eager")
    return fused, eager


def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    ids = torch.randint(5, 500, (3, 19))
    mask = torch.ones_like(ids)
    mask[1, 12:] = 0
    mask[2, 3:] = 0
    return ids, mask


@needs_compiler
def test_an_encoder_with_fused_attention_scores_as_eager():
    fused, eager = (e.eval() for e in encoders())
    ids, mask = inputs()
    with torch.inference_mode():
        ours, expected = fused(ids, mask).last_hidden_state, eager(ids, mask).last_hidden_state
    attended = mask.bool()
    assert torch.allclose(ours[attended], expected[attended], atol=1e-5)


def test_training_and_bf16_autocast_fall_back_to_eager_attention():
    fused, eager = encoders()
    ids, mask = inputs()
    torch.manual_seed(2)
    trained = fused(ids, mask).last_hidden_state  # dropout on: the kernel has no backward, eager serves
    torch.manual_seed(2)
    assert torch.equal(trained, eager(ids, mask).last_hidden_state)
    fused.eval()
    eager.eval()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(fused(ids, mask).last_hidden_state, eager(ids, mask).last_hidden_state)


@needs_compiler
def test_a_built_kernel_is_kept_and_reused(tmp_path, monkeypatch):
    monkeypatch.setattr(fused_attention, "cache_dir", lambda: tmp_path)
    compiler = fused_attention.cxx_compiler()
    library = fused_attention.build(compiler)
    assert library.parent == tmp_path and library.suffix == ".so"
    assert [p.name for p in tmp_path.iterdir()] == [library.name]  # no partial file left behind

    def no_compiler(*args, **kwargs):
        raise AssertionError("the cached library should have been used")

    monkeypatch.setattr(subprocess, "run", no_compiler)
    assert fused_attention.build(compiler) == library


@needs_compiler
def test_a_changed_header_builds_anew(tmp_path, monkeypatch):
    monkeypatch.setattr(fused_attention, "cache_dir", lambda: tmp_path / "cache")
    sources = tmp_path / "kernels"
    shutil.copytree(fused_attention.SOURCE.parent, sources)
    compiler = fused_attention.cxx_compiler()
    first = fused_attention.build(compiler, sources / "attention.cpp")
    (sources / "vec.h").write_text((sources / "vec.h").read_text() + "\n// changed\n")
    assert fused_attention.build(compiler, sources / "attention.cpp") != first


def test_a_kernel_that_cannot_be_built_leaves_eager_attention(tmp_path, monkeypatch):
    monkeypatch.setattr(fused_attention, "cache_dir", lambda: tmp_path)
    monkeypatch.setattr(fused_attention, "cxx_compiler", lambda: shutil.which("false"))
    fused_attention._built.cache_clear()
    try:
        assert not fused_attention.available()
        assert list(tmp_path.iterdir()) == []
        q, k, v, mask, _ = projections(2, 5, 2, 16)
        with pytest.raises(RuntimeError, match="the fused attention kernel is not available"):
            fused_attention.attention(q, k, v, mask, 2, 0.25)
    finally:
        fused_attention._built.cache_clear()


def amx_inputs(rows, depth, columns, zero_point, seed=0):
    """Full-range uint8 codes, int8 weights and their integer products less the zero point's share."""
    torch.manual_seed(seed)
    codes = torch.randint(0, 256, (rows, depth), dtype=torch.uint8)
    weights = torch.randint(-127, 128, (depth, columns), dtype=torch.int8)
    products = (codes.int() - zero_point) @ weights.int()
    return codes, weights, weights.sum(dim=0, dtype=torch.int32), products


@needs_amx
@pytest.mark.parametrize(
    ("rows", "depth", "columns"),
    # Whole tiles and blocks, and rows, depth and columns short of them (the padded stripe, depth and last block);
    # 1,536 deep sums reach 50 million, beyond float32's exact integers.
    [(64, 384, 1152), (1, 40, 16), (33, 100, 70), (70, 1536, 384), (5, 64, 37)],
)
@pytest.mark.parametrize("zero_point", [0, 128])
def test_the_amx_kernel_gives_the_integer_products_dequantised(rows, depth, columns, zero_point):
    codes, weights, column_sums, products = amx_inputs(rows, depth, columns, zero_point)
    scale, row_scale, row_offset, weight_sum, bias = (
        torch.rand(columns),
        torch.rand(rows, 1),
        torch.randn(rows, 1),
        torch.randn(columns),
        torch.randn(columns),
    )
    packed = fused_attention.amx_pack(weights)
    for with_bias in (bias, None):
        out = fused_attention.amx_int8_linear(
            codes, packed, column_sums, scale, row_scale, row_offset, weight_sum, with_bias, zero_point
        )
        expected = products.float() * scale * row_scale + row_offset * weight_sum
        expected = expected + with_bias if with_bias is not None else expected
        # The same float steps, a rounding apart where the compiler fuses a multiply and an add.
        assert torch.allclose(out, expected, rtol=1e-6, atol=1e-6)


@needs_amx
@pytest.mark.parametrize("rows", [1, 37, 70, 200])  # stripes of 32 rows, two at a time: 1, 2, 1 + 2, 1 + 3 × 2
def test_the_amx_kernels_gelu_codes_equal_gelu_codes_of_its_products(rows):
    # 1,541 columns: the last block and the GELU step's scalar tail.
    codes, weights, column_sums, products = amx_inputs(rows, 384, 1541, 128, seed=1)
    _, column_scale, *rest = gelu_codes_inputs(integer=True, rows=rows, n=1541)
    fused = fused_attention.amx_gelu_codes(codes, fused_attention.amx_pack(weights), column_sums, column_scale, *rest, 128)
    two_steps = fused_attention.gelu_codes(products, column_scale, *rest, 128)
    # The same steps; where the compiler fuses a multiply and an add differently, a scale may move in its last bit,
    # and a code sitting on a tie with it.
    assert (decoded(fused[0], 128) - decoded(two_steps[0], 128)).abs().max() <= 1
    assert (fused[0] != two_steps[0]).float().mean() < 1e-4
    assert all(torch.allclose(a, b, rtol=1e-6, atol=0) for a, b in zip(fused[1:], two_steps[1:], strict=True))


@needs_amx
def test_the_amx_kernel_takes_uint8_codes_only():
    codes, weights, column_sums, _ = amx_inputs(3, 64, 32, 0)
    rows = (torch.ones(3, 1), torch.zeros(3, 1), torch.zeros(32), None, 0)
    with pytest.raises(ValueError, match=r"^the AMX int8 kernel takes uint8 codes, int32 column sums and float32 weight scales$"):
        fused_attention.amx_int8_linear(
            codes.view(torch.int8), fused_attention.amx_pack(weights), column_sums, torch.ones(32), *rows
        )


def test_the_amx_kernel_says_when_it_cannot_run(monkeypatch):
    monkeypatch.setattr(fused_attention, "amx_available", lambda: False)
    codes, _, column_sums, _ = amx_inputs(3, 64, 32, 0)
    rows = (torch.ones(3, 1), torch.zeros(3, 1), torch.zeros(32), None, 0)
    with pytest.raises(RuntimeError, match=r"^the AMX int8 kernel is not available \(see model.fused_attention.amx_available\)$"):
        fused_attention.amx_int8_linear(codes, torch.empty(0, dtype=torch.int8), column_sums, torch.ones(32), *rows)


def test_without_amx_in_the_cpu_the_amx_kernel_is_not_used(monkeypatch):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"amx_int8": False})
    assert not fused_attention.amx_available.__wrapped__()


def test_an_isa_cap_below_amx_keeps_the_amx_kernels_off(monkeypatch):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"amx_int8": True})
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    assert fused_attention.amx_tiles()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_VNNI")
    assert not fused_attention.amx_tiles()
    assert not fused_attention.amx_available.__wrapped__()


@needs_compiler
@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86 vector flags")
def test_a_build_without_amx_or_vnni_does_not_start(tmp_path, monkeypatch):
    # What a CPU without AMX or AVX512-VNNI builds: a stub whose start-up check fails, so that amx_available is false.
    no_amx = ("-mno-amx-tile", "-mno-amx-int8")
    library = narrower_build(tmp_path, monkeypatch, fused_attention.AMX_SOURCE, (*no_amx, "-mno-avx512vnni"))
    assert fused_attention.bind(library, "stance_amx_init", (), ctypes.c_int)() == -1
    # With AVX512-VNNI, the kernels on emulated tiles (model/kernels/tiles.h).
    library = narrower_build(tmp_path, monkeypatch, fused_attention.AMX_SOURCE, no_amx)
    vnni = torch.cpu.get_capabilities().get("avx512_vnni", False)
    assert fused_attention.bind(library, "stance_amx_init", (), ctypes.c_int)() == (0 if vnni else -1)


def linear_norm_reference(products, column_scale, row_scale, row_offset, weight_sum, bias, residual, norm, next_scale):
    """What the int8 path computes in torch for an attention-output or feed-forward-output step whose result an int8
    layer reads: dequantise, add the residual, LayerNorm, smooth and quantise per row."""
    out = products.float() * column_scale * row_scale + row_offset * weight_sum + bias + residual
    hidden = norm(out)
    rows = hidden * next_scale if next_scale is not None else hidden
    low, high = torch.aminmax(rows, dim=1, keepdim=True)
    offset, half = (high + low) / 2, ((high - low) / 2).clamp(min=torch.finfo(torch.float32).tiny)
    return hidden, torch.round((rows - offset) * (127 / half)).clamp(-127, 127).int(), half / 127, offset


@needs_amx
@pytest.mark.parametrize(("rows", "depth", "columns"), [(37, 384, 384), (70, 1536, 384), (5, 100, 70)])
@pytest.mark.parametrize("smoothed", [True, False])
def test_the_amx_kernels_linear_norm_equals_the_steps(rows, depth, columns, smoothed):
    codes, weights, column_sums, products = amx_inputs(rows, depth, columns, 128, seed=2)
    column_scale, row_scale, row_offset = torch.rand(columns) * 1e-4, torch.rand(rows, 1), torch.randn(rows, 1)
    weight_sum, bias, residual = torch.randn(columns), torch.randn(columns), torch.randn(rows, columns)
    norm = torch.nn.LayerNorm(columns, eps=1e-12)
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    next_scale = torch.rand(columns) + 0.5 if smoothed else None
    dequantise = (column_scale, row_scale, row_offset, weight_sum, bias)
    with torch.no_grad():
        hidden, out_codes, scale, offset = fused_attention.amx_linear_norm(
            codes,
            fused_attention.amx_pack(weights),
            column_sums,
            *dequantise,
            residual,
            norm.weight,
            norm.bias,
            norm.eps,
            next_scale,
            128,
        )
        expected = linear_norm_reference(products, *dequantise, residual, norm, next_scale)
    assert torch.allclose(hidden, expected[0], atol=1e-5)
    # The LayerNorm's sums in another order: a code a step off only where a value sits that close to a tie.
    assert (decoded(out_codes, 128) - expected[1]).abs().max() <= 1
    assert (decoded(out_codes, 128) != expected[1]).float().mean() < 2e-3
    assert torch.allclose(scale, expected[2], rtol=1e-5) and torch.allclose(offset, expected[3], atol=1e-5)


needs_amx_attention = pytest.mark.skipif(
    not fused_attention.amx_attention_available(), reason="the AMX attention needs AMX's int8 and bf16 tiles"
)


def qkv_layer(width, seed=0):
    """An int8 query-key-value layer on the AMX kernel, the three projections side by side."""
    torch.manual_seed(seed)
    return Int8Linear(stacked([torch.nn.Linear(width, width) for _ in range(3)]), kernel="amx")


def qkv_attention(layer, x, mask, heads, next_scale=None):
    """amx_qkv_attention on `layer` and `x`; the codes decoded and divided by `next_scale`, as [batch, length, width],
    with the rows' scales."""
    rows = layer._quantized(x)
    codes, scale, offset = fused_attention.amx_qkv_attention(
        rows.codes, layer.packed, layer.column_sums, layer.weight_scale, rows.scale, rows.offset, layer.weight_sum,
        layer.bias, mask, heads, (x.shape[-1] // heads) ** -0.5, next_scale, 128,
    )  # fmt: skip
    out = (codes.float() - 128) * scale + offset
    out = out / next_scale if next_scale is not None else out
    return out.view(x.shape), scale


@needs_amx_attention
@pytest.mark.parametrize(
    ("batch", "length", "heads", "head_size"),
    [(40, 37, 12, 32), (3, 5, 2, 32), (2, 70, 4, 32), (1, 130, 2, 64), (5, 16, 3, 32), (1, 1, 2, 32)],
)
@pytest.mark.parametrize("smoothed", [False, True])
def test_the_amx_attention_is_the_int8_layer_then_attention(batch, length, heads, head_size, smoothed):
    width = heads * head_size
    layer = qkv_layer(width)
    _, _, _, mask, keep = projections(batch, length, heads, head_size)
    x = torch.randn(batch, length, width)
    next_scale = torch.rand(width) + 0.5 if smoothed else None
    with torch.no_grad():
        ours, scale = qkv_attention(layer, x, mask, heads, next_scale)
        expected = reference(*layer(x).chunk(3, dim=-1), mask, heads, head_size**-0.5)
    # bf16 products and int8 codes: within a few code steps of the float32 attention on every attended row.
    error = (ours - expected)[keep]
    assert error.norm() / expected[keep].norm() < 0.02
    step = scale.view(batch, length, 1).expand_as(ours)[keep]
    step = step / next_scale if next_scale is not None else step
    assert (error.abs() / step).max() < 4


@needs_amx_attention
def test_the_amx_attention_redoes_a_row_far_below_the_others():
    # Two heads of 32, the projections equal to the input: the first token's scores reach 3,200 / sqrt(32) = 566,
    # the others' stay near 0, so that under the largest score of their block of 16 rows their weights underflow.
    width, heads = 64, 2
    linears = [torch.nn.Linear(width, width) for _ in range(3)]
    with torch.no_grad():
        for linear in linears:
            linear.weight.copy_(torch.eye(width))
            linear.bias.zero_()
    layer = Int8Linear(stacked(linears), kernel="amx")
    x = torch.zeros(1, 5, width)
    x[0, 0, [0, 32]] = 40.0
    x[0, 1:, :] = torch.rand(4, width) * 0.1
    x[0, 1:, [0, 32]] = 0.0
    mask = torch.zeros(1, 5)
    with torch.no_grad():
        ours, _ = qkv_attention(layer, x, mask, heads)
        expected = reference(*layer(x).chunk(3, dim=-1), mask, heads, 32**-0.5)
    assert torch.allclose(ours, expected, atol=0.05, rtol=0.02)


@needs_amx_attention
def test_the_amx_attention_takes_head_sizes_of_multiples_of_32():
    layer = qkv_layer(32)
    with pytest.raises(ValueError, match=r"^the AMX attention takes head sizes that are multiples of 32$"):
        qkv_attention(layer, torch.randn(1, 3, 32), torch.zeros(1, 3), 2)


def test_the_amx_attention_says_when_it_cannot_run(monkeypatch):
    monkeypatch.setattr(fused_attention, "amx_attention_available", lambda: False)
    codes = torch.zeros(3, 64, dtype=torch.uint8)
    ones, zeros = torch.ones(3, 1), torch.zeros(3, 1)
    message = r"^the AMX attention kernel is not available \(see model.fused_attention.amx_attention_available\)$"
    with pytest.raises(RuntimeError, match=message):
        fused_attention.amx_qkv_attention(
            codes, codes, torch.zeros(192, dtype=torch.int32), torch.ones(192), ones, zeros, torch.zeros(192), None,
            torch.zeros(1, 3), 2, 0.2, None, 128,
        )  # fmt: skip


def test_without_amx_bf16_in_the_cpu_the_amx_attention_is_not_used_on_amx_tiles(monkeypatch):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"amx_int8": True, "amx_bf16": False})
    assert not fused_attention.amx_attention_available.__wrapped__()


@needs_compiler
@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86 vector flags")
def test_a_build_on_amx_tiles_without_bf16_ones_says_it_has_no_attention(tmp_path, monkeypatch):
    library = narrower_build(tmp_path, monkeypatch, fused_attention.AMX_ATTENTION_SOURCE, ("-mno-amx-bf16", "-mno-avx512bf16"))
    assert fused_attention.bind(library, "stance_amx_attention_built", (), ctypes.c_int)() == 0


@needs_compiler
@pytest.mark.skipif(not torch.cpu.get_capabilities().get("avx512_vnni", False), reason="emulated tiles need AVX512-VNNI")
def test_a_build_on_emulated_tiles_has_the_attention_with_or_without_avx512_bf16(tmp_path, monkeypatch):
    # Emulated tiles need AVX512-VNNI only: the bf16 products run as float32 multiply-adds (model/kernels/tiles.h).
    # Without VNNI (and AMX), nothing builds.
    emulated = ("-DSTANCE_EMULATE_TILES",)
    for narrower, expected in [((), 1), (("-mno-avx512bf16",), 1), (("-mno-avx512bf16", "-mno-avx512vnni"), 0)]:
        library = narrower_build(tmp_path, monkeypatch, fused_attention.AMX_ATTENTION_SOURCE, (*emulated, *narrower))
        assert fused_attention.bind(library, "stance_amx_attention_built", (), ctypes.c_int)() == expected


@needs_compiler
@pytest.mark.skipif(not torch.cpu.get_capabilities().get("avx512_vnni", False), reason="emulated tiles need AVX512-VNNI")
@pytest.mark.parametrize("narrower", [(), ("-mno-avx512bf16",)], ids=["vcvtne2ps2bf16", "without AVX512-BF16"])
def test_the_attention_rounds_to_bf16_as_vcvtne2ps2bf16(tmp_path, monkeypatch, narrower):
    library = narrower_build(tmp_path, monkeypatch, fused_attention.AMX_ATTENTION_SOURCE, ("-DSTANCE_EMULATE_TILES", *narrower))
    rounded = fused_attention.bind(library, "stance_bf16_rounded", (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64))
    bits = torch.randint(0, 2**31 - 2**24, (256,), generator=torch.Generator().manual_seed(0), dtype=torch.int64)
    bits[:64] = bits[:64] // 2**16 * 2**16 + 2**15  # ties: half away from two bf16 values, upper halves odd and even
    x = bits.to(torch.int32).view(torch.float32)
    x = torch.cat([x, -x])
    x = torch.cat([x, torch.tensor([0.0, -0.0, 1e-40, -1e-40, 3e38, torch.inf, -torch.inf, 1.0] * 4)])
    out = torch.empty(len(x), dtype=torch.int16)
    rounded(x.data_ptr(), out.data_ptr(), len(x))
    # To nearest, ties to even, as torch rounds; subnormals to a zero of their sign, as the instruction takes them.
    expected = torch.where(x.abs() < torch.finfo(torch.float32).tiny, x * 0, x).bfloat16().view(torch.int16)
    assert torch.equal(out, expected)


def amx_encoder(seed=0) -> tuple[BertEncoder, torch.Tensor, torch.Tensor]:
    """A small int8 encoder on the AMX kernel with heads of 32, in eval mode and fused attention, and its inputs."""
    torch.manual_seed(seed)
    encoder = BertEncoder(BertConfig(**(CONFIG | dict(hidden_size=64, intermediate_size=128)))).eval()
    quantize_encoder(encoder, kernel="amx")
    encoder.set_attention("fused")
    return encoder, *inputs()


@needs_amx_attention
def test_fused_attention_gives_nearly_the_same_encoder_output():
    encoder, ids, mask = amx_encoder()
    with torch.inference_mode():
        before = encoder(ids, mask).last_hidden_state
        assert fuse_attention(encoder) == 2
        attention = encoder.encoder.layer[0].attention
        assert attention.self.emit_codes and attention.self.next_scale is attention.output.dense.input_scale
        codes = attention.self(torch.randn(3, 19, 64), torch.zeros(3, 1, 1, 19), "fused")
        assert isinstance(codes, QuantizedRows) and codes.codes.shape == (57, 64) and tuple(codes.shape) == (3, 19)
        after = encoder(ids, mask).last_hidden_state
    attended = mask.bool()
    assert F.cosine_similarity(before[attended], after[attended], dim=-1).min() > 0.999


@needs_amx_attention
def test_fused_attention_leaves_training_and_other_attentions_alone():
    encoder, *_ = amx_encoder()
    fuse_attention(encoder)
    hidden = torch.randn(3, 19, 64)
    attention = encoder.encoder.layer[0].attention.self
    assert isinstance(attention(hidden, torch.zeros(3, 1, 1, 19), "eager"), torch.Tensor)
    attention.train()
    assert isinstance(attention(hidden, torch.zeros(3, 1, 1, 19), "fused"), torch.Tensor)


def test_fused_attention_needs_heads_of_multiples_of_32():
    encoder = BertEncoder(BertConfig(**CONFIG)).eval()  # heads of 16
    kernel = "amx" if fused_attention.amx_available() else None
    quantize_encoder(encoder, kernel=kernel)
    assert fuse_attention(encoder) == 0


def test_fused_attention_builds_nothing_for_other_int8_kernels(monkeypatch):
    def unexpected():
        raise AssertionError("the AMX attention kernel should not be looked for")

    monkeypatch.setattr(fused_attention, "amx_attention_available", unexpected)
    torch.manual_seed(0)
    encoder = BertEncoder(BertConfig(**(CONFIG | dict(hidden_size=64, intermediate_size=128)))).eval()  # heads of 32
    quantize_encoder(encoder, kernel="int_mm")
    assert fuse_attention(encoder) == 0

import copy

import pytest
import torch
from torch import nn

from model import fused_attention
from model.errors import InvalidInputError
from model.network import masked_means
from model.predictor import (
    BATCH_SIZE,
    COMPILED_BATCH_SIZE,
    COMPILED_BATCH_TOKENS,
    COMPILED_PAD_MULTIPLE,
    PAD_MULTIPLE,
    PairInput,
    StancePredictor,
    compiler_found,
    resolve_compile,
    resolve_precision,
)
from model.quant import (
    GELU_FLOOR,
    INT8_KERNELS,
    Int8Linear,
    NormedRows,
    QuantizedRows,
    fuse_gelu,
    fuse_norms,
    gelu_range,
    int8_kernel,
    quantize_encoder,
    resolve_int8_kernel,
    smoothing,
    stacked,
)

# oneDNN's int8 kernels without VNNI sum byte products in 16 bits, which can saturate on full-range codes; "onednn"
# is AMX's kernel only (int8_kernel), so it is tested where the CPU has VNNI at least. "amx" runs only with AMX.
KERNELS = [
    k
    for k in INT8_KERNELS
    if (k != "onednn" or torch.cpu._is_vnni_supported()) and (k != "amx" or fused_attention.amx_available())
]


def _linear(seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(48, 40)


@pytest.mark.parametrize("kernel", KERNELS)
def test_int8_linear_is_close_to_fp32(kernel):
    linear = _linear()
    x = torch.randn(3, 7, 48)
    exact, quantised = linear(x), Int8Linear(linear, kernel=kernel)(x)
    assert quantised.shape == exact.shape == (3, 7, 40)
    assert (quantised - exact).norm() / exact.norm() < 0.02


@pytest.mark.parametrize("kernel", KERNELS)
def test_a_tokens_result_does_not_depend_on_its_batch(kernel):
    # One scale per token: padding or other pairs in the batch cannot move a token's result.
    layer = Int8Linear(_linear(), kernel=kernel)
    x = torch.randn(1, 5, 48)
    big = torch.cat([x, 100 * torch.randn(1, 5, 48)])
    assert torch.equal(layer(x)[0], layer(big)[0])


@pytest.mark.parametrize("kernel", KERNELS)
def test_the_per_token_offset_spends_the_steps_on_the_range_a_token_uses(kernel):
    # Values around 5 that vary by 0.01: one scale from zero would leave them a handful of steps.
    layer = Int8Linear(_linear(), kernel=kernel)
    x = 5 + 0.01 * torch.randn(4, 48)
    dequantised = layer.weight_int8.float() * layer.weight_scale  # compare against the same rounded weights
    assert (layer(x) - (x @ dequantised + layer.bias)).abs().max() < 2e-3  # 0.04 a step without the offset


@pytest.mark.parametrize("kernel", KERNELS)
def test_smoothing_is_exact_before_rounding(kernel):
    linear = _linear()
    smooth = torch.rand(48) + 0.5
    layer = Int8Linear(linear, smooth, kernel)
    x = torch.randn(4, 48)
    # Dividing the input by s and multiplying the weights by s changes nothing before rounding ...
    assert torch.allclose((x * layer.input_scale) @ (linear.weight * smooth).t(), x @ linear.weight.t(), atol=1e-4)
    # ... and the stored int8 weights are the smoothed weights to within half a step.
    dequantised = layer.weight_int8.t().float() * layer.weight_scale[:, None]
    assert ((dequantised - linear.weight * smooth).abs() <= layer.weight_scale[:, None] / 2 + 1e-6).all()
    assert (layer(x) - linear(x)).norm() / linear(x).norm() < 0.02


def test_the_kernels_give_nearly_the_same_result_and_the_cpu_picks_one():
    linear = _linear()
    x = torch.randn(6, 48)
    out = {k: Int8Linear(linear, kernel=k)(x) for k in KERNELS}
    # fbgemm keeps 7 bits of each token (128 steps against 255), so the two differ by about one of its steps.
    assert (out["int_mm"] - out["fbgemm"]).norm() / out["int_mm"].norm() < 0.02
    if "onednn" in out:
        # The same codes and the same integer products; only the order of the two float scalings differs.
        assert torch.allclose(out["onednn"], out["int_mm"], rtol=1e-5, atol=1e-5)
    if "amx" in out:
        # oneDNN's products bit for bit, dequantised in the kernel: the same float steps, some fused.
        assert torch.allclose(out["amx"], out["onednn"], rtol=1e-6, atol=1e-6)
    expected = "int_mm" if torch.cpu._is_vnni_supported() else "fbgemm"
    if fused_attention.tiles() == "amx":
        expected = "amx" if fused_attention.amx_available() else "onednn"
    elif fused_attention.tiles() == "emulated" and fused_attention.amx_attention_available():
        expected = "amx"
    assert int8_kernel() == expected
    assert "kernel=" + int8_kernel() in repr(Int8Linear(linear))
    with pytest.raises(ValueError, match=r"kernel must be one of \('amx', 'onednn', 'int_mm', 'fbgemm'\), not 'avx'"):
        Int8Linear(linear, kernel="avx")


def test_the_amx_kernel_is_refused_where_it_cannot_run(monkeypatch):
    monkeypatch.setattr(fused_attention, "amx_available", lambda: False)
    needs = r"^the amx kernel needs AMX's int8 tiles or AVX512-VNNI, and a C\+\+ compiler \(fused_attention.amx_available\)$"
    with pytest.raises(ValueError, match=needs):
        Int8Linear(_linear(), kernel="amx")


@pytest.mark.parametrize(
    ("capabilities", "builds", "expected"),
    [
        ({"amx_int8": True, "avx512_vnni": True}, ("int8", "attention"), "amx"),
        ({"amx_int8": True, "avx512_vnni": True}, ("int8",), "amx"),
        ({"amx_int8": True, "avx512_vnni": True}, (), "onednn"),
        # On emulated tiles only with every step in our kernels, as measured against int_mm.
        ({"amx_int8": False, "avx512_vnni": True}, ("int8", "attention"), "amx"),
        ({"amx_int8": False, "avx512_vnni": True}, ("int8",), "int_mm"),
        ({"amx_int8": False, "avx512_vnni": True}, (), "int_mm"),
        ({"avx512_vnni": False}, (), "fbgemm"),
    ],
)
def test_the_int8_kernel_follows_the_cpu(monkeypatch, capabilities, builds, expected):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.setattr("torch.cpu.get_capabilities", lambda: capabilities)
    monkeypatch.setattr(fused_attention, "amx_available", lambda: "int8" in builds)
    monkeypatch.setattr(fused_attention, "amx_attention_available", lambda: "attention" in builds)
    assert int8_kernel() == expected


@pytest.mark.parametrize(
    ("variable", "cap", "expected"),
    [
        ("ONEDNN_MAX_CPU_ISA", "ALL", "amx"),
        ("ONEDNN_MAX_CPU_ISA", "default", "amx"),
        ("ONEDNN_MAX_CPU_ISA", "avx512_core_amx", "amx"),
        ("ONEDNN_MAX_CPU_ISA", "AVX10_1_512_AMX_FP16", "amx"),
        ("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16", "emulated"),
        ("ONEDNN_MAX_CPU_ISA", "avx10_1_512", "emulated"),
        ("DNNL_MAX_CPU_ISA", "AVX512_CORE_VNNI", "emulated"),
        ("ONEDNN_MAX_CPU_ISA", "AVX512_CORE", None),
        ("ONEDNN_MAX_CPU_ISA", "AVX2", None),
    ],
)
def test_an_isa_cap_below_amx_keeps_the_kernels_off_amx_tiles(monkeypatch, variable, cap, expected):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.setenv(variable, cap)
    monkeypatch.setattr("torch.cpu.get_capabilities", lambda: {"amx_int8": True, "avx512_vnni": True})
    monkeypatch.setattr(torch.cpu, "_is_vnni_supported", lambda: True)
    monkeypatch.setattr(fused_attention, "amx_available", lambda: fused_attention.tiles() is not None)
    monkeypatch.setattr(fused_attention, "amx_attention_available", lambda: fused_attention.tiles() is not None)
    assert fused_attention.tiles() == expected
    assert fused_attention.amx_tiles() == (expected == "amx")
    # Our kernels on AMX's tiles or emulated ones, else the CPU's int8 dot products.
    assert int8_kernel() == ("int_mm" if expected is None else "amx")


@pytest.mark.parametrize(
    "rows",
    [
        torch.randn(64, 1536, generator=torch.Generator().manual_seed(0)) * 2,  # a feed-forward row's spread
        torch.rand(8, 5, generator=torch.Generator().manual_seed(1)) + 1,  # every x where GELU rises
        -torch.rand(8, 5, generator=torch.Generator().manual_seed(2)) - 2,  # every x where it falls
        torch.tensor([[-0.7518, 3.0], [-5.0, 20.0]]),
    ],
)
def test_gelu_range_bounds_gelu(rows):
    low, high = torch.aminmax(nn.functional.gelu(rows), dim=1, keepdim=True)
    bound_low, bound_high = gelu_range(rows)
    assert (bound_low <= low).all() and (high <= bound_high).all()


def test_gelu_range_is_tight_on_a_feed_forward_row():
    rows = torch.randn(64, 1536, generator=torch.Generator().manual_seed(0)) * 2
    low, high = torch.aminmax(nn.functional.gelu(rows), dim=1, keepdim=True)
    bound_low, bound_high = gelu_range(rows)
    assert ((bound_high - bound_low) / (high - low)).max() < 1.002


def test_gelu_floor_is_just_below_gelus_lowest_value():
    x = torch.linspace(-1, -0.5, 100_001, dtype=torch.float64)
    assert GELU_FLOOR < nn.functional.gelu(x).min().item() < GELU_FLOOR + 1e-4


@pytest.mark.parametrize("kernel", KERNELS)
def test_a_gelu_input_layer_is_gelu_then_the_layer(kernel):
    linear = _linear()
    x = 2 * torch.randn(5, 48)
    plain, fused = Int8Linear(linear, kernel=kernel), Int8Linear(linear, kernel=kernel, gelu_input=True)
    exact = linear(nn.functional.gelu(x))
    # GELU then the layer: as close as quantising GELU's output with its exact range.
    assert (fused(x) - exact).norm() / exact.norm() < 0.02
    assert (fused(x) - plain(nn.functional.gelu(x))).norm() / exact.norm() < 0.01
    assert "gelu_input=True" in repr(fused)
    with pytest.raises(ValueError, match="a layer with gelu_input cannot be smoothed"):
        Int8Linear(linear, torch.ones(48), kernel, gelu_input=True)


def test_smoothing_follows_the_layer_norm_and_the_weights():
    norm = nn.LayerNorm(4)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.0, 1.0, 16.0, 1.0]))
        norm.bias.zero_()
    linear = nn.Linear(4, 2)
    with torch.no_grad():
        linear.weight.fill_(1.0)
    s = smoothing(norm, [linear])
    # The outlier channel (gamma 16) is divided by the most.
    assert s.argmax().item() == 2 and torch.allclose(s[[0, 1, 3]], torch.ones(3))


def test_quantize_encoder_replaces_every_linear_layer(tiny_predictor):
    import copy

    encoder = copy.deepcopy(tiny_predictor.network.encoder)
    ids = torch.randint(1000, 2000, (2, 9))
    mask = torch.ones_like(ids)
    before = encoder(ids, mask).last_hidden_state
    assert quantize_encoder(encoder) == 6 * 2  # query, key, value, attention output, feed-forward in and out
    assert not any(type(m) is nn.Linear for m in encoder.modules())
    # Query, key and value are one layer: the attention input, its output, feed-forward in and out.
    assert len([m for m in encoder.modules() if isinstance(m, Int8Linear)]) == 4 * 2
    assert all(not hasattr(layer.attention.self, "query") for layer in encoder.encoder.layer)
    smoothed = [m for m in encoder.modules() if isinstance(m, Int8Linear) and m.input_scale is not None]
    assert len(smoothed) == 2 * 2  # query-key-value and feed-forward in read a LayerNorm
    # The feed-forward output layer applies the GELU, which the intermediate layer no longer does.
    assert [m.gelu_input for m in encoder.modules() if isinstance(m, Int8Linear)] == [False] * 3 + [True] + [False] * 3 + [True]
    assert all(isinstance(layer.intermediate.intermediate_act_fn, nn.Identity) for layer in encoder.encoder.layer)
    after = encoder(ids, mask).last_hidden_state
    assert torch.nn.functional.cosine_similarity(before.flatten(), after.flatten(), dim=0) > 0.999


def quantised_tiny_encoder(tiny_predictor, kernel):
    """A copy of the tiny encoder quantised on `kernel`, and a function giving its output on fixed ids."""
    encoder = copy.deepcopy(tiny_predictor.network.encoder)
    quantize_encoder(encoder, kernel=kernel)
    ids = torch.randint(1000, 2000, (3, 11))
    return encoder, lambda: encoder(ids, torch.ones_like(ids)).last_hidden_state


@pytest.mark.skipif(not fused_attention.available(), reason="the fused kernels need a C++ compiler")
@pytest.mark.parametrize("kernel", KERNELS)
def test_fused_norms_give_the_same_encoder_output(tiny_predictor, kernel):
    encoder, output = quantised_tiny_encoder(tiny_predictor, kernel)
    before = output()
    # Two layers: both attention outputs and the first layer's feed-forward output feed an int8 layer.
    assert fuse_norms(encoder) == (3 if kernel == "amx" else 0)
    step = encoder.encoder.layer[0].attention.output
    assert step.next_codes is (kernel == "amx")
    if kernel == "amx":
        assert step.next_scale is encoder.encoder.layer[0].intermediate.dense.input_scale
        normed = step(torch.randn(3, 11, 32), torch.randn(3, 11, 32))
        assert isinstance(normed, NormedRows) and normed.hidden.shape == (3, 11, 32)
        assert normed.codes.codes.shape == (33, 32) and tuple(normed.codes.shape) == (3, 11)
        assert not encoder.encoder.layer[1].output.next_codes  # the last layer's output is the encoder's
    # The same codes but where a value sits on a rounding tie.
    assert torch.allclose(before, output(), atol=1e-3)


@pytest.mark.skipif(not fused_attention.available(), reason="the fused kernels need a C++ compiler")
@pytest.mark.parametrize("kernel", KERNELS)
def test_fused_gelu_codes_give_the_same_encoder_output(tiny_predictor, kernel):
    encoder, output = quantised_tiny_encoder(tiny_predictor, kernel)
    before = output()
    assert fuse_gelu(encoder) == (0 if kernel == "fbgemm" else 2)
    first = encoder.encoder.layer[0].intermediate.dense
    assert first.emit_gelu_codes is (kernel != "fbgemm")
    if kernel != "fbgemm":
        codes = first(torch.randn(3, 11, 32))
        assert isinstance(codes, QuantizedRows) and codes.codes.shape == (33, 64) and tuple(codes.shape) == (3, 11)
    # The same codes but where a value sits on a rounding tie.
    assert torch.allclose(before, output(), atol=1e-3)


@pytest.mark.parametrize("kernel", KERNELS)
def test_query_key_and_value_as_one_layer_equal_three(kernel):
    torch.manual_seed(0)
    linears = [nn.Linear(64, 64) for _ in range(3)]
    smooth = torch.rand(64) + 0.5
    x = torch.randn(5, 7, 64)
    fused = Int8Linear(stacked(linears), smooth, kernel)(x).chunk(3, dim=-1)
    for part, linear in zip(fused, linears, strict=True):
        torch.testing.assert_close(part, Int8Linear(linear, smooth, kernel)(x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("kernel", "bf16", "compiled", "expected"),
    [
        ("int_mm", True, True, "int8"),
        ("int_mm", True, False, "bf16"),
        ("int_mm", False, False, "fp32"),
        # Without VNNI, compiled int8 (fbgemm) still beat compiled fp32; eager, it did not (model/predictor.py).
        ("fbgemm", False, True, "int8"),
        ("fbgemm", False, False, "fp32"),
        ("fbgemm", True, False, "bf16"),
    ],
)
def test_auto_precision_follows_the_cpu(monkeypatch, kernel, bf16, compiled, expected):
    monkeypatch.setattr("model.predictor.int8_kernel", lambda: kernel)
    monkeypatch.setattr("model.predictor.bf16_faster", lambda: bf16)
    assert resolve_precision("auto", compiled=compiled) == expected
    assert resolve_precision("int8", compiled=compiled) == "int8"


def test_compile_modes(monkeypatch):
    assert resolve_compile("off") is False
    with pytest.raises(InvalidInputError, match=r"compile must be one of \('auto', 'on', 'off'\), not 'yes'"):
        resolve_compile("yes")
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert compiler_found() is False and resolve_compile("auto") is False
    with pytest.raises(InvalidInputError) as raised:
        resolve_compile("on")
    assert str(raised.value) == "compile=on needs a C++ compiler (g++, c++ or clang++, or $CXX); none was found"


@pytest.mark.skipif(not compiler_found(), reason="torch.compile needs a C++ compiler")
def test_the_compiled_default_matches_eager_and_compiles_once(tiny_model_dir):
    from torch._dynamo.utils import counters

    # int8 when compiled (test_auto_precision_follows_the_cpu).
    precision = resolve_precision("auto", compiled=True)
    eager = StancePredictor.load(tiny_model_dir, precision=precision)
    counters.clear()
    compiled = StancePredictor.load(tiny_model_dir, precision="auto", compile="on")
    warm_up_graphs = counters["stats"]["unique_graphs"]
    assert compiled.compiled and compiled.precision == precision and not eager.compiled
    # The fused attention kernel, which builds wherever torch.compile's own kernels do.
    assert (compiled.attention, eager.attention) == ("fused", "sdpa")
    # The compiled path pads to each batch's longest item, the eager path to a multiple of 8 (PAD_MULTIPLE).
    assert (compiled.pad_multiple, eager.pad_multiple) == (COMPILED_PAD_MULTIPLE, PAD_MULTIPLE) == (1, 8)
    # The compiled path cuts batches by token count (up to 256 pairs), the eager path into 32 pairs.
    assert (compiled.batch_size, compiled.batch_tokens) == (COMPILED_BATCH_SIZE, COMPILED_BATCH_TOKENS) == (256, 1536)
    assert (eager.batch_size, eager.batch_tokens) == (BATCH_SIZE, None) == (32, None)
    # The heads' pooling in one kernel once compiled.
    assert (compiled.network.pool, eager.network.pool) == (fused_attention.masked_means, masked_means)
    pairs = [PairInput(f"Acme Corp hired {i} people and Trump praised it.", "Acme Corp", ((0, 9),)) for i in range(20)]
    texts = ["Trump praised it.", "A much longer sentence about Acme Corp, its workers and its many new plants."]
    assert torch.allclose(eager.stance_probabilities(pairs), compiled.stance_probabilities(pairs), atol=1e-4)
    assert torch.allclose(eager.sentiment_probabilities(texts), compiled.sentiment_probabilities(texts), atol=1e-4)
    # Batches of one and of other widths reuse the warm-up's graphs instead of compiling again.
    assert torch.allclose(eager.stance_probabilities(pairs[:1]), compiled.stance_probabilities(pairs[:1]), atol=1e-4)
    assert counters["stats"]["unique_graphs"] == warm_up_graphs
    # One graph (oneDNN's Linear is a custom op inside it), except that fbgemm's quantised Linear is opaque to the
    # compiler and splits it at each of the encoder's linear layers.
    linear_layers = sum(isinstance(m, Int8Linear) for m in compiled.network.modules())
    # The feed-forward layers' GELU and quantisation run in the fused kernel (fbgemm's quantisation differs).
    fused = sum(isinstance(m, Int8Linear) and m.emit_gelu_codes for m in compiled.network.modules())
    assert fused == (0 if int8_kernel() == "fbgemm" else compiled.network.encoder.config.num_hidden_layers)
    assert warm_up_graphs == (linear_layers + 1 if int8_kernel() == "fbgemm" else 1)


def test_an_int8_kernel_can_be_chosen_where_it_runs(monkeypatch):
    assert resolve_int8_kernel("auto") == resolve_int8_kernel() == int8_kernel()
    assert [resolve_int8_kernel(k) for k in KERNELS] == KERNELS
    with pytest.raises(InvalidInputError) as raised:
        resolve_int8_kernel("mkl")
    assert str(raised.value) == "int8_kernel must be one of ('auto', 'amx', 'onednn', 'int_mm', 'fbgemm'), not 'mkl'"
    monkeypatch.setattr(fused_attention, "amx_available", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_vnni_supported", lambda: False)
    expected = {
        "amx": "int8_kernel 'amx' needs AMX's int8 tiles or AVX512-VNNI, and a C++ compiler, which this machine lacks",
        "onednn": "int8_kernel 'onednn' needs int8 dot products (AVX512-VNNI, AVX-VNNI or AMX), which this machine lacks",
    }
    for kernel, message in expected.items():
        with pytest.raises(InvalidInputError) as raised:
            resolve_int8_kernel(kernel)
        assert str(raised.value) == message
        assert resolve_int8_kernel(kernel, used=False) == kernel  # only the name, where int8 is not the path


def test_the_predictor_loads_on_the_int8_kernel_it_is_given(tiny_model_dir):
    for kernel in ("int_mm", "auto"):
        predictor = StancePredictor.load(tiny_model_dir, precision="int8", int8_kernel=kernel)
        expected = int8_kernel() if kernel == "auto" else kernel
        assert predictor.int8_kernel == expected
        assert {m.kernel for m in predictor.network.modules() if isinstance(m, Int8Linear)} == {expected}
    assert StancePredictor.load(tiny_model_dir, precision="fp32", int8_kernel="int_mm").int8_kernel is None
    with pytest.raises(InvalidInputError, match=r"^int8_kernel must be one of"):
        StancePredictor.load(tiny_model_dir, precision="fp32", int8_kernel="mkl")

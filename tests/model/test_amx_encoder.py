import contextlib

import pytest
import torch
from transformers import BertConfig

from model import amx_encoder, fused_attention
from model.amx_encoder import AmxEncoder, fits
from model.bert import BertEncoder
from model.quant import fuse_attention, fuse_gelu, fuse_norms, quantize_encoder

needs_amx_attention = pytest.mark.skipif(
    not fused_attention.amx_attention_available(), reason="the AMX encoder needs AMX's int8 and bf16 tiles"
)


def fused_encoder(width=64, heads=2, layers=2, intermediate=128, seed=0, fuse=True) -> BertEncoder:
    """A random int8 BERT on the AMX kernels, every step fused as StancePredictor.compile fuses them (unless not
    `fuse`); head sizes of 32, which the AMX attention takes."""
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=300, hidden_size=width, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=intermediate, max_position_embeddings=64, type_vocab_size=2,
    )  # fmt: skip
    encoder = BertEncoder(config).eval()
    with torch.no_grad():  # LayerNorms and biases away from BERT's initial ones and zeros
        for name, parameter in encoder.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                parameter.add_(torch.randn_like(parameter) * 0.2)
    quantize_encoder(encoder, kernel="amx")
    encoder.set_attention("fused")
    if fuse:
        fuse_gelu(encoder), fuse_norms(encoder), fuse_attention(encoder)
    return encoder


def tokens(batch, length, vocab=300, seed=1):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (batch, length), generator=generator)
    types = torch.randint(0, 2, (batch, length), generator=generator)
    mask = torch.ones(batch, length, dtype=torch.long)
    for row in range(1, batch):  # sequences of different lengths, padded
        mask[row, length - row % length :] = 0
    return ids * mask, types * mask, mask


@needs_amx_attention
@pytest.mark.parametrize("width", [384, 64])  # 384: rows in registers; 64: any width
def test_the_embeddings_kernel_is_the_embeddings_then_the_first_layers_quantising(width):
    encoder = fused_encoder(width=width, heads=width // 32, intermediate=2 * width)
    ids, types, mask = tokens(5, 23)
    with torch.no_grad():
        hidden, codes, scale, offset, key_mask = AmxEncoder(encoder).embeddings(ids, types, mask)
        expected = encoder.embeddings(ids, types).reshape(-1, width)
        rows = encoder.encoder.layer[0].attention.self.qkv._quantized(expected)
    # The key mask as model.bert makes it for its fused attention: 0 where attended, else float32's minimum.
    assert torch.equal(key_mask, encoder._mask(mask, torch.float32).view(5, 23))
    assert torch.allclose(hidden, expected, atol=1e-5)
    # The LayerNorm's sums in another order: a code a step off only where a value sits that close to a tie.
    step = (codes.int() - rows.codes.int()).abs()
    assert step.max() <= 1 and step.float().mean() < 2e-3
    assert torch.allclose(scale, rows.scale.view(-1), rtol=1e-5)
    assert torch.allclose(offset, rows.offset.view(-1), atol=1e-5)


@needs_amx_attention
@pytest.mark.parametrize(("batch", "length"), [(6, 21), (1, 1), (3, 40)])
def test_the_amx_encoder_is_the_fused_encoders_forward(batch, length):
    encoder = fused_encoder()
    ids, types, mask = tokens(batch, length)
    with torch.no_grad():
        ours = AmxEncoder(encoder)(ids, mask, types).last_hidden_state
        expected = encoder(ids, mask, types).last_hidden_state
    assert ours.shape == expected.shape == (batch, length, 64)
    # The same kernels but for the embeddings' and the last layer's LayerNorm, whose sums run in another order: where
    # that moves a code a step, the rows after it move by about a step of the codes.
    keep = mask.bool()
    error = (ours - expected)[keep]
    assert error.norm() / expected[keep].norm() < 0.01
    assert error.abs().max() < 0.1


@contextlib.contextmanager
def kernels_rebuilt(monkeypatch, flags=(), cap=None):
    """Inside the block, the kernels built again with the extra `flags`, or under oneDNN's ISA `cap`."""
    monkeypatch.setattr(fused_attention, "FLAGS", (*fused_attention.FLAGS, *flags))
    if cap is not None:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    caches = (fused_attention._built, fused_attention.amx_available, fused_attention.amx_attention_available)
    for cache in caches:
        cache.cache_clear()
    try:
        yield
    finally:
        monkeypatch.undo()
        for cache in caches:
            cache.cache_clear()


@needs_amx_attention
def test_no_kernel_reads_its_buffers_before_it_writes_them(monkeypatch):
    # The kernels' buffers are left uninitialised (model/kernels/amx.h): built to fill them with NaN bytes, the
    # kernels must still give the same result bit for bit, padded rows and keys past each sequence's length included.
    encoder = fused_encoder()
    ids, types, mask = tokens(7, 37)
    with torch.no_grad():
        expected = AmxEncoder(encoder)(ids, mask, types).last_hidden_state
        with kernels_rebuilt(monkeypatch, flags=("-DSTANCE_POISON_BUFFERS",)):
            poisoned = AmxEncoder(encoder)(ids, mask, types).last_hidden_state
    assert torch.equal(poisoned, expected)


def twelve_heads(monkeypatch, cap, flags=()) -> torch.Tensor:
    """A 12-head encoder's output on the AMX kernels, built again under oneDNN's ISA `cap` (ALL: on AMX's tiles;
    below AMX: on emulated ones) with the extra `flags`."""
    encoder = fused_encoder(width=384, heads=12, intermediate=1536)
    ids, types, mask = tokens(7, 37)
    with torch.no_grad(), kernels_rebuilt(monkeypatch, flags, cap):
        assert fused_attention.tiles() == ("amx" if cap == "ALL" else "emulated")
        assert fused_attention.amx_available()  # which also asks Linux for AMX's tiles, as a process under `cap` does
        return AmxEncoder(encoder)(ids, mask, types).last_hidden_state


@needs_amx_attention
@pytest.mark.skipif(not torch.cpu.get_capabilities().get("amx_int8", False), reason="AMX's own tiles to compare with")
def test_the_kernels_on_emulated_tiles_give_the_amx_tiles_results(monkeypatch):
    expected = twelve_heads(monkeypatch, "ALL")
    emulated = twelve_heads(monkeypatch, "AVX512_CORE_BF16")
    # The int8 products are exact either way; the bf16 products' float32 sums round in another order (AVX512-BF16
    # rounds after each pair, and each row's sum of weights is added up apart), which moved 1.4% of the values by
    # under 1e-6.
    assert (emulated - expected).abs().max() < 1e-5
    assert (emulated == expected).float().mean() > 0.9


@needs_amx_attention
def test_the_emulated_bf16_products_are_the_same_by_dot_products_and_by_multiply_adds(monkeypatch):
    # model/kernels/tiles.h times vdpbf16ps against float32 multiply-adds to choose one; both must give the same sums.
    by_dot = twelve_heads(monkeypatch, "AVX512_CORE_BF16", ("-DSTANCE_BF16_BY_FMA=0",))
    by_fma = twelve_heads(monkeypatch, "AVX512_CORE_BF16", ("-DSTANCE_BF16_BY_FMA=1",))
    assert torch.equal(by_dot, by_fma)


@needs_amx_attention
def test_the_emulated_kernels_give_the_same_results_without_avx512_bf16(monkeypatch):
    # Under oneDNN's AVX512_CORE_VNNI cap the kernels are built without AVX512-BF16 (model/fused_attention.py), as on
    # an Ice Lake or Cascade Lake Xeon: bf16 rounding and products by other instructions, to the same bits.
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_VNNI")
    assert fused_attention.tiles() == "emulated"
    assert fused_attention._capped_flags() == ("-DSTANCE_EMULATE_TILES", "-mno-avx512bf16")
    monkeypatch.undo()
    assert torch.equal(twelve_heads(monkeypatch, "AVX512_CORE_BF16"), twelve_heads(monkeypatch, "AVX512_CORE_VNNI"))


@needs_amx_attention
def test_the_amx_encoder_takes_no_token_types_as_all_zero():
    encoder = AmxEncoder(fused_encoder())
    ids, _, mask = tokens(2, 9)
    with torch.no_grad():
        assert torch.equal(encoder(ids, mask).last_hidden_state, encoder(ids, mask, torch.zeros_like(ids)).last_hidden_state)


@needs_amx_attention
def test_only_an_encoder_fused_throughout_fits():
    assert fits(fused_encoder())
    assert not fits(fused_encoder(fuse=False))
    assert not fits(fused_encoder().train())
    tiny_heads = fused_encoder(width=32, heads=2, intermediate=64)  # head size 16: attention stays in torch
    assert not fits(tiny_heads)
    with pytest.raises(ValueError, match=r"^AmxEncoder needs an int8 encoder on the amx kernel with every step fused"):
        AmxEncoder(tiny_heads)


@needs_amx_attention
@pytest.mark.parametrize("stub", [None, lambda: 0])  # not built; built without AMX (its stub answers 0)
def test_without_the_encoder_kernel_nothing_fits(monkeypatch, stub):
    encoder = fused_encoder()
    if stub is None:
        monkeypatch.setattr(amx_encoder, "_encoder_kernel", lambda: None)
    else:
        real = fused_attention._built
        monkeypatch.setattr(fused_attention, "_built", lambda *a: stub if a[1] == "stance_amx_attention_built" else real(*a))
    assert not fits(encoder)


OUT_OF_RANGE = "an index is out of range for an embedding table of {} rows"
NO_TYPES = torch.zeros(1, 2, dtype=torch.long)


@needs_amx_attention
@pytest.mark.parametrize(
    ("ids", "types", "message"),
    [
        (torch.tensor([[1, 300]]), NO_TYPES, OUT_OF_RANGE.format(300)),
        (torch.tensor([[1, -1]]), NO_TYPES, OUT_OF_RANGE.format(300)),
        (torch.tensor([[1, 2]]), torch.tensor([[0, 2]]), OUT_OF_RANGE.format(2)),
        (torch.ones(1, 65, dtype=torch.long), torch.zeros(1, 65, dtype=torch.long), "sequences of 65 tokens are longer than the 64 positions"),  # noqa: E501
    ],
)  # fmt: skip
def test_the_amx_encoder_refuses_indices_outside_its_tables(ids, types, message):
    # The kernel reads the tables unchecked: nn.Embedding raises for these, and so must it.
    encoder = AmxEncoder(fused_encoder())
    with pytest.raises(IndexError, match=f"^{message}$"):
        encoder(ids, torch.ones_like(ids), types)


@needs_amx_attention
def test_the_amx_encoder_takes_indices_of_any_integer_type():
    encoder = AmxEncoder(fused_encoder())
    ids, types, mask = tokens(3, 11)
    with torch.no_grad():
        expected = encoder(ids, mask, types).last_hidden_state
        narrow = encoder(ids.int(), mask.bool(), types.to(torch.int16)).last_hidden_state
    assert torch.equal(narrow, expected)


@needs_amx_attention
@pytest.mark.parametrize("mask", [torch.ones(2, 1, 5, dtype=torch.long), torch.ones(2, 4, dtype=torch.long)])
def test_the_amx_encoder_takes_ids_masks_and_types_of_one_shape(mask):
    # The kernels read all three as batch × length values.
    with pytest.raises(ValueError, match=r"^AmxEncoder takes \[batch, length\] CPU tensors of ids, attention mask"):
        AmxEncoder(fused_encoder())(torch.ones(2, 5, dtype=torch.long), mask)

import pytest
import torch

from model import fused_attention
from model.network import masked_means

needs_compiler = pytest.mark.skipif(fused_attention.cxx_compiler() is None, reason="the kernel needs a C++ compiler")


def masks():
    first = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    second = torch.tensor([[0, 1, 0, 0, 0], [0, 0, 0, 0, 0], [1, 0, 0, 1, 0]], dtype=torch.bool)
    return first, second


@pytest.mark.parametrize("pool", [masked_means, pytest.param(fused_attention.masked_means, marks=needs_compiler)])
@pytest.mark.parametrize("width", [4, 384 + 3])  # 387: the kernel's vectors and its scalar tail
def test_masked_means_are_each_masks_mean_side_by_side(pool, width):
    torch.manual_seed(0)
    hidden = torch.randn(3, 5, width)
    first, second = masks()
    pooled = pool(hidden, first, second)
    assert pooled.shape == (3, 2 * width)
    for row in range(3):
        for i, mask in enumerate((first, second)):
            chosen = hidden[row][mask[row].bool()]
            # A mask with none set gives zeros.
            expected = chosen.mean(0) if len(chosen) else torch.zeros(width)
            assert torch.allclose(pooled[row, width * i : width * (i + 1)], expected, atol=1e-6)


@needs_compiler
def test_the_pooling_kernel_equals_the_batched_matmul():
    torch.manual_seed(1)
    hidden = torch.randn(40, 37, 384)[:, :30]  # not contiguous
    lengths = torch.randint(1, 31, (40,))
    attention = (torch.arange(30)[None] < lengths[:, None]).long()
    focus = (torch.rand(40, 30) < 0.1).float() * attention
    pooled = fused_attention.masked_means(hidden, attention, focus)
    assert torch.allclose(pooled, masked_means(hidden, attention, focus), atol=1e-6)


@needs_compiler
def test_the_pooling_kernel_takes_float32_rows():
    first, second = masks()
    with pytest.raises(ValueError, match=r"^the pooling kernel takes float32 CPU rows$"):
        fused_attention.masked_means(torch.randn(3, 5, 4).bfloat16(), first, second)


@needs_compiler
@pytest.mark.parametrize("masks", [(), (torch.ones(3, 5),) * 4, (torch.ones(3, 6),), (torch.ones(3, 1, 5),)])
def test_the_pooling_kernel_takes_one_to_three_masks_of_the_rows_shape(masks):
    with pytest.raises(ValueError, match=r"^the pooling kernel takes 1 to 3 masks of \[batch, length\]$"):
        fused_attention.masked_means(torch.randn(3, 5, 4), *masks)

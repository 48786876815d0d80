import torch

from model.network import masked_means


def test_masked_means_are_each_masks_mean_side_by_side():
    torch.manual_seed(0)
    hidden = torch.randn(3, 5, 4)
    first = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    second = torch.tensor([[0, 1, 0, 0, 0], [0, 0, 0, 0, 0], [1, 0, 0, 1, 0]], dtype=torch.bool)
    pooled = masked_means(hidden, first, second)
    assert pooled.shape == (3, 8)
    for row in range(3):
        for i, mask in enumerate((first, second)):
            chosen = hidden[row][mask[row].bool()]
            # A mask with none set gives zeros.
            expected = chosen.mean(0) if len(chosen) else torch.zeros(4)
            assert torch.allclose(pooled[row, 4 * i : 4 * (i + 1)], expected, atol=1e-6)

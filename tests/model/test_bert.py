import pytest
import torch
from transformers import BertConfig, BertModel

from model.bert import BertEncoder
from model.predictor import base_model_path

CONFIG = dict(vocab_size=500, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)


def pair(attention: str = "sdpa") -> tuple[BertModel, BertEncoder]:
    """transformers' BertModel and ours with the same random weights."""
    torch.manual_seed(0)
    reference = BertModel(BertConfig(**CONFIG, attn_implementation=attention), add_pooling_layer=False)
    ours = BertEncoder(BertConfig(**CONFIG))
    ours.set_attention(attention)
    ours.load_state_dict(reference.state_dict(), strict=True)
    return reference, ours


def batch(padded: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    ids = torch.randint(5, 500, (3, 11))
    mask = torch.ones_like(ids)
    if padded:
        mask[0, 7:] = 0
        mask[2, 4:] = 0
    types = torch.zeros_like(ids)
    types[1, 6:] = 1
    return ids, mask, types


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("padded", [True, False])
def test_scoring_equals_transformers_bit_for_bit(attention, padded):
    reference, ours = pair(attention)
    reference.eval()
    ours.eval()
    ids, mask, types = batch(padded)
    with torch.inference_mode():
        expected = reference(ids, mask, types).last_hidden_state
        got = ours(ids, mask, types).last_hidden_state
    assert torch.equal(got, expected)


def test_the_compiled_graphs_contiguous_key_keeps_the_scores(monkeypatch):
    # Only a compiled graph copies the key (see SelfAttention); the copy may move the last bits, nothing more.
    reference, ours = pair("eager")
    ids, mask, types = batch(padded=True)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    with torch.inference_mode():
        expected = reference.eval()(ids, mask, types).last_hidden_state
        got = ours.eval()(ids, mask, types).last_hidden_state
    assert torch.allclose(got, expected, atol=1e-5)


def test_training_with_dropout_equals_transformers_bit_for_bit():
    reference, ours = pair()
    ids, mask, types = batch(padded=True)
    results = []
    for model in (reference, ours):
        model.train()
        torch.manual_seed(2)
        loss = model(ids, mask, types).last_hidden_state.pow(2).mean()
        loss.backward()
        results.append((loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}))
    (loss_a, grads_a), (loss_b, grads_b) = results
    assert torch.equal(loss_a, loss_b)
    # In the same order too, so an optimizer's parameter groups and the gradient norm's sum come out the same.
    assert list(grads_a) == list(grads_b)
    assert all(torch.equal(grads_a[n], grads_b[n]) for n in grads_a)


def test_from_pretrained_loads_the_base_encoder_as_transformers_does():
    path = base_model_path()
    reference = BertModel.from_pretrained(str(path), add_pooling_layer=False)
    ours = BertEncoder.from_pretrained(path)
    assert not ours.training
    ids, mask, types = batch(padded=True)
    with torch.inference_mode():
        assert torch.equal(ours(ids, mask, types).last_hidden_state, reference(ids, mask, types).last_hidden_state)


def test_unknown_attention_is_refused():
    with pytest.raises(ValueError, match="attention must be one of"):
        BertEncoder(BertConfig(**CONFIG)).set_attention("flash")

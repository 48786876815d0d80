"""The multi-task network: one BERT-style encoder, a stance head per pair and a sentiment head per sentence."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def masked_means(hidden: torch.Tensor, *masks: torch.Tensor) -> torch.Tensor:
    """The mean of `hidden`'s rows where each mask is set, side by side ([batch, len(masks) × hidden]); zeros under
    a mask with none set. One batched matmul by the masks' weights, rather than two passes over `hidden` per mask."""
    weights = torch.stack([mask.to(torch.float32) for mask in masks], dim=1)
    weights = weights / weights.sum(-1, keepdim=True).clamp(min=1.0)
    return torch.bmm(weights.to(hidden.dtype), hidden).flatten(1)


STANCE_POOLINGS = ("sentence+actor", "actor")


def relation_head(hidden: int, n_relation: int, dropout: float) -> nn.Module:
    """Relations read the target's stance pass: [sentence; target markers; holder tokens] → labels."""
    return nn.Sequential(nn.Linear(3 * hidden, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, n_relation))


class StanceNetwork(nn.Module):
    """Encoder plus two linear heads.

    The stance head sees the mean-pooled sentence and the pooled actor positions
    (the entity-start markers, or the actor's tokens in the second segment).
    The sentiment head sees the mean-pooled sentence, matching how the
    sentence-transformers base encoder was trained.
    """

    def __init__(
        self,
        encoder: nn.Module,
        n_stance: int,
        n_sentiment: int,
        dropout: float = 0.1,
        n_relation: int = 0,
        stance_pooling: str = "sentence+actor",
    ) -> None:
        super().__init__()
        if stance_pooling not in STANCE_POOLINGS:
            raise ValueError(f"stance_pooling must be one of {STANCE_POOLINGS}")
        self.encoder = encoder
        hidden = encoder.config.hidden_size
        self.dropout = nn.Dropout(dropout)
        # "actor" reads only the actor's markers, so a sentence's overall tone bleeds less into every actor in it.
        self.with_sentence = stance_pooling == "sentence+actor"
        self.stance_head = nn.Linear((2 if self.with_sentence else 1) * hidden, n_stance)
        self.sentiment_head = nn.Linear(hidden, n_sentiment)
        self.relation_head = relation_head(hidden, n_relation, dropout) if n_relation else None
        # The encoder's forward compiled for scoring (StancePredictor.compile); a plain function, not a submodule.
        self.compiled_encoder: Callable[..., object] | None = None
        # The heads' pooling: masked_means, or with the scoring path compiled, the same in one CPU kernel
        # (fused_attention.masked_means): the batched matmul and the steps around it took 390 µs a batch right after
        # the encoder's kernels, against 38 in a loop of their own (benchmarks/PROFILE.md, session 21).
        self.pool: Callable[..., torch.Tensor] = masked_means

    def _encode(self, input_ids, attention_mask, token_type_ids) -> torch.Tensor:
        encoder = self.compiled_encoder or self.encoder
        return encoder(input_ids, attention_mask, token_type_ids).last_hidden_state

    def stance_features(self, input_ids, attention_mask, token_type_ids, focus_mask) -> torch.Tensor:
        """What the stance head reads: the pooled sentence and actor positions (or the actor's alone)."""
        hidden = self._encode(input_ids, attention_mask, token_type_ids)
        return self.pool(hidden, attention_mask, focus_mask) if self.with_sentence else self.pool(hidden, focus_mask)

    def stance_logits(self, input_ids, attention_mask, token_type_ids, focus_mask) -> torch.Tensor:
        features = self.stance_features(input_ids, attention_mask, token_type_ids, focus_mask)
        return self.stance_head(self.dropout(features))

    def relation_features(self, input_ids, attention_mask, token_type_ids, focus_mask, other_mask) -> torch.Tensor:
        """[sentence; target markers; holder tokens] from the target's marked stance pass."""
        hidden = self._encode(input_ids, attention_mask, token_type_ids)
        return self.pool(hidden, attention_mask, focus_mask, other_mask)

    def relation_logits(self, features: torch.Tensor) -> torch.Tensor:
        if self.relation_head is None:
            raise RuntimeError("this model has no relation head")
        return self.relation_head(features)

    def sentiment_features(self, input_ids, attention_mask, token_type_ids, focus_mask=None) -> torch.Tensor:
        """What the sentiment head reads: the mean-pooled sentence (`focus_mask`, which batches carry, unused)."""
        return self.pool(self._encode(input_ids, attention_mask, token_type_ids), attention_mask)

    def sentiment_logits(self, input_ids, attention_mask, token_type_ids, focus_mask=None) -> torch.Tensor:
        features = self.sentiment_features(input_ids, attention_mask, token_type_ids)
        return self.sentiment_head(self.dropout(features))

"""The multi-task network: one BERT-style encoder, a stance head per pair and a sentiment head per sentence."""

from __future__ import annotations

import torch
from torch import nn


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `hidden` rows where `mask` is set; zeros where a row has no mask."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class StanceNetwork(nn.Module):
    """Encoder plus two linear heads.

    The stance head sees the mean-pooled sentence and the pooled actor positions
    (the entity-start markers, or the actor's tokens in the second segment).
    The sentiment head sees the mean-pooled sentence, matching how the
    sentence-transformers base encoder was trained.
    """

    def __init__(self, encoder: nn.Module, n_stance: int, n_sentiment: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = encoder
        hidden = encoder.config.hidden_size
        self.dropout = nn.Dropout(dropout)
        self.stance_head = nn.Linear(2 * hidden, n_stance)
        self.sentiment_head = nn.Linear(hidden, n_sentiment)

    def _encode(self, input_ids, attention_mask, token_type_ids) -> torch.Tensor:
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        return out.last_hidden_state

    def stance_logits(self, input_ids, attention_mask, token_type_ids, focus_mask) -> torch.Tensor:
        hidden = self._encode(input_ids, attention_mask, token_type_ids)
        sentence = masked_mean(hidden, attention_mask)
        actor = masked_mean(hidden, focus_mask)
        return self.stance_head(self.dropout(torch.cat([sentence, actor], dim=-1)))

    def sentiment_logits(self, input_ids, attention_mask, token_type_ids, focus_mask=None) -> torch.Tensor:
        hidden = self._encode(input_ids, attention_mask, token_type_ids)
        return self.sentiment_head(self.dropout(masked_mean(hidden, attention_mask)))

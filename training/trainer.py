"""The multi-task training loop: stance pairs plus sentence sentiment, length-grouped batches."""

from __future__ import annotations

import copy
import math
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from model.encoding import Encoded
from model.io import WORD_EMBEDDINGS
from model.labels import RELATION_LABELS
from model.predictor import StancePredictor
from training.config import TrainConfig
from training.data import LabelledData, RelationExample, SentimentExample, StanceExample
from training.metrics import classification_report

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class TrainResult:
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0


def grouped_batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar-length items: sort within random pools, then shuffle the batches."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    pool = batch_size * 50
    batches: list[list[int]] = []
    for i in range(0, len(order), pool):
        chunk = sorted(order[i : i + pool], key=lambda j: lengths[j])
        batches += [chunk[k : k + batch_size] for k in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def sampled_batches(items: Sequence[Encoded], per_epoch: int, batch_size: int, rng: random.Random) -> list[list[int]]:
    """`per_epoch` items drawn without replacement, in length-grouped batches of their indices."""
    chosen = rng.sample(range(len(items)), per_epoch)
    lengths = [len(items[i].input_ids) for i in chosen]
    return [[chosen[j] for j in b] for b in grouped_batches(lengths, batch_size, rng)]


def multi_actor_pairs(examples: Sequence[StanceExample]) -> list[int]:
    """Indices of the stance examples whose sentence has another labelled actor."""
    actors: dict[str, set[str]] = {}
    for e in examples:
        actors.setdefault(e.pair.text, set()).add(e.pair.actor)
    return [i for i, e in enumerate(examples) if len(actors[e.pair.text]) > 1]


def class_weights(gold: Sequence[int], n_labels: int, power: float = 1.0) -> torch.Tensor:
    """Inverse class frequencies, (n / (labels · count)) ** power, for a class-weighted loss."""
    counts = Counter(gold)
    return torch.tensor([(len(gold) / (n_labels * max(1, counts[i]))) ** power for i in range(n_labels)])


def _param_groups(predictor: StancePredictor, config: TrainConfig) -> list[dict[str, Any]]:
    """Per-layer learning rates (layer-wise decay), no weight decay on biases, norms and embeddings."""
    encoder = predictor.network.encoder
    n_layers = encoder.config.num_hidden_layers
    groups: list[dict[str, Any]] = []
    for name, param in predictor.network.named_parameters():
        if not param.requires_grad:
            continue
        if name.startswith(("stance_head", "sentiment_head", "relation_head")):
            lr = config.head_lr
        elif ".layer." in name:
            depth = int(name.split(".layer.")[1].split(".")[0])
            lr = config.lr * config.layer_decay ** (n_layers - 1 - depth)
        else:
            lr = config.lr * config.layer_decay**n_layers
        no_decay = "embeddings" in name or name.endswith("bias") or "LayerNorm" in name
        groups.append({"params": [param], "lr": lr, "weight_decay": 0.0 if no_decay else config.weight_decay})
    return groups


def _freeze_word_embeddings(predictor: StancePredictor) -> None:
    """Only the entity-marker rows of the word embeddings learn, so the saved model stays a small delta."""
    weight = dict(predictor.network.named_parameters())[WORD_EMBEDDINGS]
    mask = torch.zeros(weight.shape[0], 1, device=weight.device)
    mask[predictor.marker_rows] = 1.0
    weight.register_hook(lambda grad: grad * mask)


def _report(
    logits: torch.Tensor, examples: Sequence[Any], labels: Sequence[str]
) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor]:
    gold = torch.tensor([labels.index(e.label) for e in examples], dtype=torch.long)
    return classification_report(gold.tolist(), logits.argmax(-1).tolist(), labels), logits, gold


def evaluate_stance(
    predictor: StancePredictor, examples: Sequence[StanceExample]
) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor]:
    """Report, raw logits and gold indices for stance examples."""
    return _report(predictor.stance_logits([e.pair for e in examples]), examples, predictor.config.stance_labels)


def evaluate_sentiment(
    predictor: StancePredictor, examples: Sequence[SentimentExample]
) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor]:
    """Report, raw logits and gold indices for sentiment examples."""
    return _report(predictor.sentiment_logits([e.text for e in examples]), examples, predictor.config.sentiment_labels)


def evaluate_relations(
    predictor: StancePredictor, examples: Sequence[RelationExample]
) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor]:
    """Report, raw logits and gold indices for relation examples, through the inference path."""
    with torch.inference_mode():
        logits = predictor.network.relation_logits(predictor.relation_features([e.relation for e in examples]))
    return _report(logits, examples, predictor.config.relation_labels)


class EmbeddingPerturbation:
    """Adversarial training (FGM, Miyato et al. 2017) on the word embeddings' output.

    A forward hook keeps the gradient of a training pass's embeddings; `arm()` turns it into a perturbation of L2
    norm `eps` per example, which the hook adds until `disarm()`. The word embedding rows themselves stay frozen.
    """

    def __init__(self, embeddings: nn.Module, eps: float) -> None:
        self.eps = eps
        self.output: torch.Tensor | None = None
        self.delta: torch.Tensor | None = None
        self.handle = embeddings.register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor | None:
        if not module.training:
            return None
        if self.delta is not None:
            return output + self.delta
        output.retain_grad()
        self.output = output
        return None

    def arm(self) -> bool:
        """Set the perturbation from the last clean pass's gradient; False when that pass kept none."""
        grad = None if self.output is None else self.output.grad
        self.output = None
        if grad is None:
            return False
        norm = grad.flatten(1).norm(dim=1).clamp_min(1e-12)
        self.delta = self.eps * grad / norm[:, None, None]
        return True

    def disarm(self) -> None:
        self.delta = None


@dataclass
class _Task:
    """One head's training rows (encoded, with gold indices), how many are drawn per epoch, and its loss."""

    items: list[Encoded]
    gold: list[int]
    per_epoch: int
    loss: Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor]
    with_other: bool = False


def _per_epoch(n: int, cap: int | None, weight: float) -> int:
    """Rows drawn per epoch: all `n`, at most `cap`, none when the head's loss weight is 0."""
    return 0 if weight == 0 else n if cap is None else min(cap, n)


def train(
    predictor: StancePredictor,
    train_data: LabelledData,
    dev_data: LabelledData,
    config: TrainConfig,
    sentiment_per_epoch: int | None = None,
    relation_per_epoch: int | None = None,
    log: Log = _stderr,
) -> TrainResult:
    """Fine-tune `predictor` in place; keeps the weights of the best dev epoch (stance macro-F1).

    With `config.relation_training == "joint"` and relation rows, the predictor gets a fresh relation head
    and relation batches (class-weighted loss, rows as given) join the loop, so their gradients reach the encoder.
    """
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    predictor.to(config.device)
    net = predictor.network
    if predictor.config.base_model:
        _freeze_word_embeddings(predictor)
    relations = train_data.relations if config.relation_training == "joint" else []
    if relations:
        predictor.add_relation_head(RELATION_LABELS)
    stance_labels = predictor.config.stance_labels
    sentiment_labels = predictor.config.sentiment_labels
    loss_fn = nn.CrossEntropyLoss()
    stance_gold = [stance_labels.index(e.label) for e in train_data.stance]
    stance_weights = class_weights(stance_gold, len(stance_labels), config.class_balance).to(predictor.device)
    stance_loss = nn.CrossEntropyLoss(weight=stance_weights if config.class_balance else None)
    # Each epoch's stance pairs: all of them, plus the repeats of multi-actor ones.
    stance_order = list(range(len(train_data.stance))) + multi_actor_pairs(train_data.stance) * (config.multi_actor_repeat - 1)
    stance = _Task(
        predictor.encode_pairs([e.pair for e in train_data.stance]),
        stance_gold,
        len(stance_order),
        lambda inputs, gold: stance_loss(net.stance_logits(**inputs), gold),
    )
    stance_lengths = [len(stance.items[i].input_ids) for i in stance_order]
    sentiment = _Task(
        predictor.encode_sentences([e.text for e in train_data.sentiment]),
        [sentiment_labels.index(e.label) for e in train_data.sentiment],
        _per_epoch(len(train_data.sentiment), sentiment_per_epoch, config.sentiment_weight),
        lambda inputs, gold: config.sentiment_weight * loss_fn(net.sentiment_logits(**inputs), gold),
    )
    tasks = {"stance": stance, "sentiment": sentiment}
    if relations:
        relation_labels = predictor.config.relation_labels
        relation_gold = [relation_labels.index(e.label) for e in relations]
        weighted_loss = nn.CrossEntropyLoss(weight=class_weights(relation_gold, len(relation_labels)).to(predictor.device))

        def relation_loss(inputs: dict[str, torch.Tensor], gold: torch.Tensor) -> torch.Tensor:
            """The inference path (predictor.relation_probabilities) with gradients, class-weighted."""
            return config.relation_weight * weighted_loss(net.relation_logits(net.relation_features(**inputs)), gold)

        tasks["relation"] = _Task(
            predictor.encode_relations([e.relation for e in relations]),
            relation_gold,
            _per_epoch(len(relations), relation_per_epoch, config.relation_weight),
            relation_loss,
            with_other=True,
        )

    steps_per_epoch = sum(math.ceil(task.per_epoch / config.batch_size) for task in tasks.values())
    total_steps = max(1, steps_per_epoch * config.epochs)
    optimizer = torch.optim.AdamW(_param_groups(predictor, config))
    warmup = int(total_steps * config.warmup_ratio)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / (warmup + 1) if s < warmup else max(0.0, (total_steps - s) / max(1, total_steps - warmup))
    )
    adversarial = (
        EmbeddingPerturbation(net.get_submodule(WORD_EMBEDDINGS.rsplit(".", 1)[0]), config.adversarial)
        if config.adversarial
        else None
    )
    result = TrainResult()
    best_score, best_state, stale = -1.0, None, 0
    step, started = 0, time.monotonic()
    for epoch in range(1, config.epochs + 1):
        net.train()
        jobs: list[tuple[str, list[int]]] = [
            ("stance", [stance_order[j] for j in b]) for b in grouped_batches(stance_lengths, config.batch_size, rng)
        ]
        for head, task in tasks.items():
            if head != "stance" and task.per_epoch:
                jobs += [(head, b) for b in sampled_batches(task.items, task.per_epoch, config.batch_size, rng)]
        rng.shuffle(jobs)
        running, since_log, seen, epoch_start = 0.0, 0, 0, time.monotonic()
        for head, batch in jobs:
            task = tasks[head]
            inputs = predictor.to_batch([task.items[i] for i in batch], task.with_other, multiple=1)  # no padding waste
            gold = torch.tensor([task.gold[i] for i in batch], device=predictor.device)
            loss = task.loss(inputs, gold)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if adversarial is not None and adversarial.arm():
                task.loss(inputs, gold).backward()  # gradients of the clean and perturbed passes add up
                adversarial.disarm()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            step += 1
            seen += len(batch)
            running += loss.item()
            since_log += 1
            if step % 50 == 0 or step == total_steps:
                elapsed = time.monotonic() - started
                eta = elapsed / step * (total_steps - step)
                rate = seen / max(1e-9, time.monotonic() - epoch_start)
                loss_now = running / since_log
                log(f"epoch {epoch} step {step}/{total_steps} loss {loss_now:.4f} {rate:.1f} ex/s eta {eta / 60:.1f} min")
                running, since_log = 0.0, 0
        net.eval()
        record: dict[str, Any] = {"epoch": epoch, "train_seconds": round(time.monotonic() - epoch_start, 1)}
        if dev_data.stance:
            record["stance"] = evaluate_stance(predictor, dev_data.stance)[0]
        if dev_data.sentiment:
            record["sentiment"] = evaluate_sentiment(predictor, dev_data.sentiment)[0]
        if relations and dev_data.relations:
            record["relations"] = evaluate_relations(predictor, dev_data.relations)[0]
        heads = [k for k in ("stance", "sentiment", "relations") if k in record]
        score = record[heads[0]]["macro_f1"] if heads else 0.0
        log(f"epoch {epoch} dev: " + ", ".join(f"{k} macro-F1 {record[k]['macro_f1']:.4f}" for k in heads))
        result.history.append(record)
        if score > best_score:
            best_score, best_state, stale, result.best_epoch = score, copy.deepcopy(net.state_dict()), 0, epoch
        else:
            stale += 1
            if stale >= config.patience:
                log(f"early stop: no dev improvement for {stale} epochs")
                break
    if adversarial is not None:
        adversarial.handle.remove()
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    return result

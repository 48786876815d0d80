"""Average the weights of fine-tuned models that share a base and a config (a uniform "model soup").

Runs from the same initialisation that differ in data order or extra data usually sit in one basin;
their average is often better than each, at no cost at inference. The soup is re-calibrated and
measured on the first ingredient's dev data, and saved like any trained model.

    python -m training.soup runs/E1 runs/F --out model/default
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from model.errors import InvalidInputError
from model.io import read_json
from model.predictor import StancePredictor
from training.pipeline import DataSpec, _versions, calibrate_and_measure, data_record, load_dev, save_model

_MUST_MATCH = ("input_format", "max_length", "stance_labels", "sentiment_labels", "encoder", "base_model")


def soup(folders: Sequence[str | Path], out: str | Path, command: Sequence[str]) -> dict[str, Any]:
    if len(folders) < 2:
        raise InvalidInputError("a soup needs at least two model folders")
    predictors = [StancePredictor.load(f) for f in folders]
    first = predictors[0]
    for folder, other in zip(folders[1:], predictors[1:], strict=True):
        for key in _MUST_MATCH:
            if getattr(other.config, key) != getattr(first.config, key):
                raise InvalidInputError(f"{folder}: {key} differs from {folders[0]}; only like models can be averaged")
    states = [p.network.state_dict() for p in predictors]
    averaged = {
        name: torch.stack([s[name].float() for s in states]).mean(0) if tensor.is_floating_point() else tensor
        for name, tensor in states[0].items()
    }
    first.network.load_state_dict(averaged)
    records = [read_json(Path(f) / "training.json") for f in folders]
    data = records[0]["data"]
    spec = DataSpec(train=(), dev=data["dev"], sentiment_corpora=data["sentiment_corpora"], sst2_limit=data.get("sst2_limit"))
    dev_data, dev_sets = load_dev(spec, records[0]["config"]["seed"])
    metrics = {
        "soup_of": [str(f) for f in folders],
        "ingredients": {str(f): read_json(Path(f) / "metrics.json")["dev"] for f in folders},
        **calibrate_and_measure(first, dev_data, dev_sets),
    }
    record = {
        "command": list(command),
        "soup_of": {str(f): r for f, r in zip(folders, records, strict=True)},
        "data": data_record(spec) | {"train": sorted({p for r in records for p in r["data"]["train"]})},
        "versions": _versions(),
    }
    record["data"]["sha256"] |= {p: h for r in records for p, h in r["data"]["sha256"].items()}
    save_model(first, out, metrics, record)
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.soup", description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    metrics = soup(args.folders, args.out, ["python", "-m", "training.soup", *(argv if argv is not None else sys.argv[1:])])
    for name, heads in metrics["dev"].items():
        print(name, {h: r["macro_f1"] for h, r in heads.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())

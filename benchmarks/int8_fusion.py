"""One fused query/key/value GEMM against three separate ones, on the compiled int8 path, in one process.

The two encoders differ only in `quantize_encoder(..., fuse_qkv=...)`; both are compiled. Timed runs alternate
between them (--rounds each, after a warm-up) on the 2,000 NewsMTSC pairs of benchmarks/inference.py, batch 32, so
the machine's drift hits both alike; the figure is the median. Also checks that they give the same labels.
Writes benchmarks/results/int8_fusion.json.

    .venv/bin/python benchmarks/int8_fusion.py [--rounds 9] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inference import RESULTS, sample_pairs

from model import StancePredictor, default_model_path
from model.predictor import BATCH_SIZE
from model.quant import quantize_encoder


def compiled_int8(fuse_qkv: bool) -> StancePredictor:
    predictor = StancePredictor.load(default_model_path())
    quantize_encoder(predictor.network.encoder, fuse_qkv=fuse_qkv)
    predictor.precision = "int8"
    predictor.compile()
    return predictor


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "int8_fusion.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pairs = sample_pairs(args.pairs, 0)
    predictors = {"separate_qkv": compiled_int8(False), "fused_qkv": compiled_int8(True)}
    labels = {name: p.stance_probabilities(pairs).argmax(-1) for name, p in predictors.items()}  # also the warm-up
    seconds: dict[str, list[float]] = {name: [] for name in predictors}
    for _ in range(args.rounds):
        for name, predictor in predictors.items():
            started = time.perf_counter()
            predictor.stance_probabilities(pairs, batch_size=BATCH_SIZE)
            seconds[name].append(time.perf_counter() - started)
    rates = {name: round(len(pairs) / statistics.median(s), 1) for name, s in seconds.items()}
    out = {
        "pairs": len(pairs),
        "batch_size": BATCH_SIZE,
        "threads": args.threads,
        "rounds": args.rounds,
        "median_pairs_per_s": rates,
        "fused_vs_separate": round(rates["fused_qkv"] / rates["separate_qkv"], 3),
        "pairs_per_s_by_round": {name: [round(len(pairs) / t, 1) for t in s] for name, s in seconds.items()},
        "label_agreement": round((labels["fused_qkv"] == labels["separate_qkv"]).float().mean().item(), 4),
    }
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

"""The fused attention kernel against the compiled matmul-softmax-matmul graph, on the compiled default path.

    .venv/bin/python benchmarks/attention.py [--pairs 2000] [--rounds 3] [--passes 5] [--threads 2] [--out FILE]

Each variant runs in its own process, in turns, round after round, so that neither's compiled graphs, caches or
memory touch the other's timing. A process loads and compiles its variant, scores the pairs
once to warm up and then --passes times; its figure is the median pass. The ratio is the median over rounds of
fused ÷ eager pairs/s. Also records how many pairs each variant labels as the exact fp32 path does. Writes
benchmarks/results/attention.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from inference import RESULTS, cpu_model, sample_pairs

from model import StancePredictor, default_model_path
from model.predictor import DEFAULT_PRECISION, cpu_features, resolve_precision

VARIANTS = ("fused", "eager")


def child(attention: str, pairs: int, passes: int, threads: int) -> None:
    """One variant's process: prints its load-and-compile time, pass times and labels as JSON."""
    torch.set_num_threads(threads)
    sample = sample_pairs(pairs, seed=0)
    started = time.perf_counter()
    predictor = StancePredictor.load(default_model_path(), resolve_precision(DEFAULT_PRECISION, compiled=True), "off")
    predictor.compile(attention)
    compile_s = time.perf_counter() - started
    labels = predictor.stance_logits(sample).argmax(-1).tolist()  # also the warm-up
    seconds = []
    for _ in range(passes):
        started = time.perf_counter()
        predictor.stance_logits(sample)
        seconds.append(time.perf_counter() - started)
    facts = {"attention": predictor.attention, "precision": predictor.precision, "compile_s": compile_s}
    print(json.dumps({**facts, "pass_s": seconds, "labels": labels}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "attention.json")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.pairs, args.passes, args.threads)
        return
    torch.set_num_threads(args.threads)
    exact = StancePredictor.load(default_model_path(), "fp32", "off").stance_logits(sample_pairs(args.pairs, 0)).argmax(-1)
    runs: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    for _ in range(args.rounds):
        for name in VARIANTS:
            command = [
                sys.executable,
                __file__,
                "--child",
                name,
                *(f"--{k}={getattr(args, k)}" for k in ("pairs", "passes", "threads")),
            ]
            done = subprocess.run(command, check=True, capture_output=True, text=True)
            runs[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
    rates = {name: [args.pairs / statistics.median(r["pass_s"]) for r in rs] for name, rs in runs.items()}
    labels = {name: torch.tensor(rs[0]["labels"]) for name, rs in runs.items()}
    out = {
        "pairs": args.pairs,
        "source": "newsmtsc/train.jsonl, random.Random(0).sample",
        "precision": {name: rs[0]["precision"] for name, rs in runs.items()},
        "threads": args.threads,
        "rounds": args.rounds,
        "passes_per_process": args.passes,
        "attention_used": {name: rs[0]["attention"] for name, rs in runs.items()},
        "pairs_per_s_median": {name: round(statistics.median(r), 1) for name, r in rates.items()},
        "pairs_per_s_rounds": {name: [round(v, 1) for v in r] for name, r in rates.items()},
        "fused_vs_eager_median_of_rounds": round(
            statistics.median(f / e for f, e in zip(rates["fused"], rates["eager"], strict=True)), 3
        ),
        "labels_equal_to_fp32": {name: round(float((lab == exact).float().mean()), 4) for name, lab in labels.items()},
        "labels_fused_vs_eager_differ": int((labels["fused"] != labels["eager"]).sum()),
        "load_and_compile_s": {name: [round(r["compile_s"], 1) for r in rs] for name, rs in runs.items()},
        "machine": {"cpu": cpu_model(), **cpu_features(), "torch": torch.__version__},
    }
    args.out.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

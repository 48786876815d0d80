"""Where the compiled encoder's time goes: a torch profiler run of the default scoring path over sampled NewsMTSC
pairs, with inductor's kernel profiling on, so each fused kernel has its own row. Where the scoring path chains our
AMX kernels (model/amx_encoder.py), that call and the heads' pooling kernel, made through ctypes and so unseen by
the profiler, are wrapped in profiler ranges of their C names.

    .venv/bin/python benchmarks/profile_compiled.py [--pairs 2000] [--threads 2] [--top 12] [--attention fused|eager] [--out FILE]

Kernel times are summed inside one pass, so they drift less between variants than whole-pass pairs/s do. Writes
the --top kernels by self time (seconds, calls, share of the profiled total), the profiled pass and the machine to
benchmarks/results/profile_compiled.json (or --out). See benchmarks/PROFILE.md for the findings.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch._inductor.config as inductor_config
from inference import RESULTS, cpu_model, sample_pairs
from torch.profiler import ProfilerActivity, profile, record_function

from model import StancePredictor, amx_encoder, default_model_path, fused_attention
from model.predictor import DEFAULT_PRECISION, cpu_features, resolve_precision


def label_kernels() -> None:
    """The encoder (AmxEncoder) and the heads' pooling, called through ctypes, as profiler ranges of their C names
    (benchmarks/kernel_revisions.py times the encoder's kernels one by one)."""
    for module, getter in ((amx_encoder, "_encoder_kernel"), (fused_attention, "_masked_means_kernel")):
        kernel = getattr(module, getter)()
        if kernel is None:
            continue

        def labelled(*args, kernel=kernel):
            with record_function(kernel.__name__):
                return kernel(*args)

        setattr(module, getter, lambda labelled=labelled: labelled)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--attention", choices=("fused", "eager"), help="default: the compiled path's own choice")
    parser.add_argument("--out", type=Path, default=RESULTS / "profile_compiled.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    inductor_config.cpp.enable_kernel_profile = True
    label_kernels()
    pairs = sample_pairs(args.pairs, seed=0)
    predictor = StancePredictor.load(default_model_path(), resolve_precision(DEFAULT_PRECISION, compiled=True), "off")
    predictor.compile(args.attention)
    predictor.stance_probabilities(pairs)  # warm-up: compiles for the sample's shapes
    started = time.perf_counter()
    predictor.stance_probabilities(pairs)
    unprofiled = time.perf_counter() - started
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        predictor.stance_probabilities(pairs)
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in rows)
    out = {
        "pairs": len(pairs),
        "source": "newsmtsc/train.jsonl, random.Random(0).sample",
        "precision": predictor.precision,
        "attention": predictor.attention,
        "threads": args.threads,
        "pass_s_unprofiled": round(unprofiled, 3),
        "profiled_total_s": round(total / 1e6, 3),
        "kernels": [
            {
                "name": e.key,
                "seconds": round(e.self_cpu_time_total / 1e6, 3),
                "calls": e.count,
                "share": round(e.self_cpu_time_total / total, 3),
            }
            for e in rows[: args.top]
        ],
        "machine": {"processor": cpu_model(), **cpu_features(), "torch": torch.__version__},
    }
    args.out.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

"""Memory of the scoring path over many calls of varied shapes, per precision and batch-width padding.

Each variant runs in a fresh process: the shipped model scores --calls calls of 1-64 (sentence, actor) pairs
of synthetic news sentences (the encoder path only, no spaCy), and the process's resident memory is read after
--warmup calls and at the end. The variants differ in precision, in the multiple that batch widths are rounded up
to (`StancePredictor.pad_multiple`), and in the capacities of oneDNN's primitive cache
(ONEDNN_PRIMITIVE_CACHE_CAPACITY) and of torch's ideep cache of matmul descriptors (LRU_CACHE_CAPACITY).
Compiled int8 variants compile the encoder before their first call, and cut batches by token count as compiled
scoring does (model.predictor.COMPILED_BATCH_TOKENS).
Writes --out (default benchmarks/results/memory.json); exits 1 when the default variants grow by more than 10%.

    .venv/bin/python benchmarks/memory.py [--calls 400] [--warmup 100] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))
from load import rss_mb
from synthetic import sentence

from model.predictor import COMPILED_BATCH_TOKENS, COMPILED_PAD_MULTIPLE, PAD_MULTIPLE

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "memory.json"
# (name, precision, pad multiple, oneDNN primitive cache capacity, ideep LRU cache capacity, compile). 1, 1024, 1024
# is how scoring ran before session 3 (1,024 is each library's own default); PAD_MULTIPLE, 64, 256 is the eager
# default now (model.predictor, model/__init__.py); a compiled encoder pads to COMPILED_PAD_MULTIPLE instead.
VARIANTS = [
    ("bf16, before", "bf16", 1, 1024, 1024, "off"),
    (f"bf16, widths to {PAD_MULTIPLE}, oneDNN cache 64", "bf16", PAD_MULTIPLE, 64, 1024, "off"),
    (f"bf16, widths to {PAD_MULTIPLE}, oneDNN cache 64, ideep cache 256 (default)", "bf16", PAD_MULTIPLE, 64, 256, "off"),
    ("fp32, before", "fp32", 1, 1024, 1024, "off"),
    (f"fp32, widths to {PAD_MULTIPLE}, oneDNN cache 64, ideep cache 256 (default)", "fp32", PAD_MULTIPLE, 64, 256, "off"),
    (
        f"int8 compiled, widths to {PAD_MULTIPLE}, batches to {COMPILED_BATCH_TOKENS} tokens, oneDNN cache 64, ideep cache 256",
        "int8",
        PAD_MULTIPLE,
        64,
        256,
        "on",
    ),
    (
        f"int8 compiled, widths to {COMPILED_PAD_MULTIPLE}, batches to {COMPILED_BATCH_TOKENS} tokens, oneDNN cache 64, "
        "ideep cache 256 (default)",
        "int8",
        COMPILED_PAD_MULTIPLE,
        64,
        256,
        "on",
    ),
]


def child(precision: str, multiple: int, compile_mode: str, calls: int, warmup: int, seed: int) -> dict:
    from model import StancePredictor, default_model_path
    from model.predictor import PairInput

    predictor = StancePredictor.load(default_model_path(), precision=precision, compile=compile_mode)
    predictor.pad_multiple = multiple
    rng = random.Random(seed)
    batches = []
    for _ in range(calls):
        texts = [sentence(rng) for _ in range(rng.randint(1, 64))]
        batches.append([PairInput(t, t.split()[0], ((0, len(t.split()[0])),)) for t in texts])
    rss, seconds = {}, 0.0
    for i, pairs in enumerate(batches, 1):
        predictor.encoder.clear_cache()  # tokenisation cache: not what is measured here
        start = time.perf_counter()
        predictor.stance_probabilities(pairs)
        seconds += time.perf_counter() - start if i > warmup else 0.0
        if i in (1, warmup, calls):
            rss[i] = rss_mb(os.getpid())
    return {
        "rss_mb_after_first_call": round(rss[1], 1),
        "rss_mb_after_warmup": round(rss[warmup], 1),
        "rss_mb_at_end": round(rss[calls], 1),
        "growth_after_warmup": round(rss[calls] / rss[warmup], 3),
        "pairs_scored_after_warmup": sum(len(b) for b in batches[warmup:]),
        "seconds_after_warmup": round(seconds, 2),
        "pairs_per_s_after_warmup": round(sum(len(b) for b in batches[warmup:]) / seconds, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--child", nargs=3, metavar=("PRECISION", "MULTIPLE", "COMPILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        precision, multiple, compile_mode = args.child
        print(json.dumps(child(precision, int(multiple), compile_mode, args.calls, args.warmup, args.seed)))
        return 0
    results = []
    for name, precision, multiple, capacity, lru, compile_mode in VARIANTS:
        env = dict(os.environ, ONEDNN_PRIMITIVE_CACHE_CAPACITY=str(capacity), LRU_CACHE_CAPACITY=str(lru))
        argv = [sys.executable, __file__, "--child", precision, str(multiple), compile_mode, "--calls", str(args.calls)]
        argv += ["--warmup", str(args.warmup), "--seed", str(args.seed)]
        out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True, cwd=ROOT).stdout
        row = {"variant": name, "precision": precision, "compile": compile_mode, "pad_multiple": multiple}
        row["onednn_primitive_cache"] = capacity
        row["ideep_lru_cache"] = lru
        results.append(row | json.loads(out.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    report = {
        "calls": args.calls,
        "warmup_calls": args.warmup,
        "pairs_per_call": "1-64, synthetic news sentences",
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        "variants": results,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    defaults = [r for r in results if r["variant"].endswith("(default)")]
    return 0 if all(r["growth_after_warmup"] <= 1.10 for r in defaults) else 1


if __name__ == "__main__":
    sys.exit(main())

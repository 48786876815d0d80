"""How scoring batches are cut: fixed counts of pairs against token budgets, on the `auto` stance path.

The same 2,000 pairs as benchmarks/inference.py, scored in one call per variant, variants timed in turns
(benchmarks/ab.py), each the median of --repeats rounds. Eager (bf16 here) by default; `--compile on` compiles
the encoder (int8 here). Writes benchmarks/results/batching.json (batching_compiled.json when compiled).

    .venv/bin/python benchmarks/batching.py [--repeats 7] [--compile on]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ab import alternate
from inference import sample_pairs

from model import StancePredictor, default_model_path
from model.predictor import COMPILE_MODES

OUT = Path(__file__).resolve().parent / "results" / "batching.json"
# (most pairs, most tokens): fixed counts, then token budgets capped at 256 pairs.
VARIANTS = {
    "32_pairs": (32, None),
    "64_pairs": (64, None),
    "1024_tokens": (256, 1024),
    "1536_tokens": (256, 1536),
    "2048_tokens": (256, 2048),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--compile", default="off", choices=COMPILE_MODES)
    args = parser.parse_args()
    pairs = sample_pairs(args.pairs, 0)
    predictor = StancePredictor.load(default_model_path(), precision="auto", compile=args.compile)
    default = (predictor.batch_size, predictor.batch_tokens)
    predictor.stance_logits(pairs)  # warm-up: tokenisation cache and kernels

    def use(size: int, tokens: int | None):
        def set_up() -> None:
            predictor.batch_size, predictor.batch_tokens = size, tokens

        return set_up

    rates = alternate(
        {name: use(*v) for name, v in VARIANTS.items()}, lambda: predictor.stance_logits(pairs), len(pairs), args.repeats
    )
    result = {
        "pairs": len(pairs),
        "precision": predictor.precision,
        "compiled": predictor.compiled,
        "default": {"batch_size": default[0], "batch_tokens": default[1]},
        "variants": {name: {"batch_size": v[0], "batch_tokens": v[1]} for name, v in VARIANTS.items()},
        "pairs_per_s_median": {name: r["median"] for name, r in rates.items()},
        "pairs_per_s_runs": {name: r["runs"] for name, r in rates.items()},
    }
    out = OUT.with_name("batching_compiled.json") if predictor.compiled else OUT
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result["pairs_per_s_median"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

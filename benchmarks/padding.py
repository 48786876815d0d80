"""What padding batch widths to a multiple costs: the `auto` stance path on NewsMTSC pairs, per multiple.

The same 2,000 pairs as benchmarks/inference.py, scored in one call per multiple (1: exact widths), each the median
of --repeats timed runs in one process, multiples timed in turns (benchmarks/ab.py). Eager (bf16 here) by default;
`--compile on` compiles the encoder (int8 here). Writes benchmarks/results/padding.json (padding_compiled.json when compiled).

    .venv/bin/python benchmarks/padding.py [--repeats 3] [--compile on]
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

OUT = Path(__file__).resolve().parent / "results" / "padding.json"
MULTIPLES = (1, 8, 16)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", default="off", choices=COMPILE_MODES)
    args = parser.parse_args()
    pairs = sample_pairs(args.pairs, 0)
    predictor = StancePredictor.load(default_model_path(), precision="auto", compile=args.compile)
    predictor.stance_logits(pairs)  # warm-up: tokenisation cache and kernels

    def use(multiple: int):
        def set_up() -> None:
            predictor.pad_multiple = multiple

        return set_up

    rates = alternate({str(m): use(m) for m in MULTIPLES}, lambda: predictor.stance_logits(pairs), len(pairs), args.repeats)
    result = {
        "pairs": len(pairs),
        "precision": predictor.precision,
        "compiled": predictor.compiled,
        "pairs_per_s_median": {m: r["median"] for m, r in rates.items()},
        "pairs_per_s_runs": {m: r["runs"] for m, r in rates.items()},
    }
    out = OUT.with_name("padding_compiled.json") if predictor.compiled else OUT
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result["pairs_per_s_median"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

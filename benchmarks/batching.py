"""How scoring batches are cut: fixed counts of pairs against token budgets, on the `auto` stance path.

The same 2,000 pairs as benchmarks/inference.py, scored in one call per variant, variants timed in turns
(benchmarks/ab.py), each the median of --repeats rounds. Eager (bf16 here) by default; `--compile on` compiles
the encoder (int8 here). Writes benchmarks/results/batching.json (batching_compiled.json when compiled).

    .venv/bin/python benchmarks/batching.py [--repeats 7] [--compile on]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ab import compare_settings

OUT = Path(__file__).resolve().parent / "results" / "batching.json"
# Fixed counts of pairs, then token budgets capped at 256 pairs.
VARIANTS = {
    "32_pairs": {"batch_size": 32, "batch_tokens": None},
    "64_pairs": {"batch_size": 64, "batch_tokens": None},
    "1024_tokens": {"batch_size": 256, "batch_tokens": 1024},
    "1536_tokens": {"batch_size": 256, "batch_tokens": 1536},
    "2048_tokens": {"batch_size": 256, "batch_tokens": 2048},
}

if __name__ == "__main__":
    sys.exit(compare_settings(__doc__.splitlines()[0], VARIANTS, OUT, repeats=7))

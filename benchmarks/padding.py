"""What padding batch widths to a multiple costs: the `auto` stance path on NewsMTSC pairs, per multiple.

The same 2,000 pairs as benchmarks/inference.py, scored in one call per multiple (1: exact widths), each the median
of --repeats timed runs in one process, multiples timed in turns (benchmarks/ab.py). Eager (bf16 here) by default;
`--compile on` compiles the encoder (int8 here). Writes benchmarks/results/padding.json (padding_compiled.json when
compiled).

    .venv/bin/python benchmarks/padding.py [--repeats 3] [--compile on]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ab import compare_settings

OUT = Path(__file__).resolve().parent / "results" / "padding.json"
VARIANTS = {str(m): {"pad_multiple": m} for m in (1, 8, 16)}

if __name__ == "__main__":
    sys.exit(compare_settings(__doc__.splitlines()[0], VARIANTS, OUT, repeats=3))

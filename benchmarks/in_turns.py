"""Two variants of the compiled default path, each in its own process, in turns: `--compare attention` times the
fused attention kernel against the compiled matmul-softmax-matmul graph (results/attention.json), `--compare
int8-kernel` oneDNN's prepacked int8 Linear against `torch._int_mm` (results/int8_kernel.json; model/quant.py),
`--compare amx-kernel` our AMX int8 kernel against oneDNN's Linear (results/amx_kernel_in_turns.json; per layer,
benchmarks/amx_kernel.py), `--compare amx-attention` the query-key-value layer and attention in one AMX kernel
(model/kernels/amx_attention.cpp) against the query-key-value GEMM and then the float32 attention kernel
(results/amx_attention.json), `--compare emulated-tiles` our AMX kernels against `torch._int_mm` where AMX's
tiles may not be used (a CPU without AMX, or oneDNN's ISA cap below it: ONEDNN_MAX_CPU_ISA=AVX10_1_512), so that ours
run on tiles emulated with AVX512-VNNI (model/kernels/tiles.h; results/emulated_tiles.json), `--compare revision
--against REV` the working tree's `model` package against git revision REV's (results/revision.json; REV's tree is
exported to a temporary folder, which goes first on the child's PYTHONPATH).

    .venv/bin/python benchmarks/in_turns.py --compare attention|int8-kernel|amx-kernel|amx-attention|emulated-tiles|revision
        [--against REV] [--pairs 2000] [--rounds 3] [--passes 5] [--threads 2] [--out FILE]

Each variant runs in its own process, in turns, round after round, so that neither's compiled graphs, caches or
memory touch the other's timing. A process loads and compiles its variant, scores the pairs once to warm up and
then --passes times; its figure is the median pass. The ratio is the median over rounds of the first variant's
pairs/s over the second's. Also records how many pairs each variant labels as the exact fp32 path does, how many
labels the two variants give differently and, where ../shared has it, each variant's stance macro-F1 on devtest_mt.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from inference import NEWSMTSC, RESULTS, cpu_model, sample_pairs, stance_f1

import model
from model import StancePredictor, default_model_path
from model.predictor import DEFAULT_PRECISION, cpu_features, resolve_precision
from model.quant import quantize_encoder


def with_attention(attention: str | None) -> StancePredictor:
    predictor = StancePredictor.load(default_model_path(), resolve_precision(DEFAULT_PRECISION, compiled=True), "off")
    predictor.compile(attention)
    return predictor


def with_int8_kernel(kernel: str) -> StancePredictor:
    predictor = StancePredictor.load(default_model_path(), "fp32", "off")
    quantize_encoder(predictor.network.encoder, kernel=kernel)
    predictor.precision = "int8"
    predictor.compile()
    return predictor


def with_default(_: str) -> StancePredictor:
    """The compiled default path of whichever `model` package the process imports."""
    return with_attention(None)


def with_amx_attention(variant: str) -> StancePredictor:
    """The compiled default path with attention in the AMX kernel ("amx") or without it ("float32": the
    query-key-value GEMM, then the float32 attention kernel)."""
    if variant == "float32":
        model.predictor.fuse_attention = lambda encoder: 0  # in this variant's own process only
    return with_default(variant)


# Each comparison: its two variants (the first is the candidate), how a process builds one, its default output.
COMPARISONS: dict[str, tuple[tuple[str, str], Callable[[str], StancePredictor], str]] = {
    "attention": (("fused", "eager"), with_attention, "attention.json"),
    "int8-kernel": (("onednn", "int_mm"), with_int8_kernel, "int8_kernel.json"),
    "amx-kernel": (("amx", "onednn"), with_int8_kernel, "amx_kernel_in_turns.json"),
    "amx-attention": (("amx", "float32"), with_amx_attention, "amx_attention.json"),
    "emulated-tiles": (("amx", "int_mm"), with_int8_kernel, "emulated_tiles.json"),
    "revision": (("working-tree", "revision"), with_default, "revision.json"),
}


def exported(revision: str, folder: Path) -> str:
    """`revision`'s tree written into `folder`; returns its full commit hash."""
    root = Path(__file__).resolve().parent.parent
    commit = subprocess.run(["git", "rev-parse", revision], cwd=root, check=True, capture_output=True, text=True).stdout.strip()
    archive = subprocess.run(["git", "archive", commit], cwd=root, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return commit


def child(compare: str, variant: str, pairs: int, passes: int, threads: int) -> None:
    """One variant's process: prints its load-and-compile time, pass times and labels as JSON."""
    torch.set_num_threads(threads)
    sample = sample_pairs(pairs, seed=0)
    started = time.perf_counter()
    predictor = COMPARISONS[compare][1](variant)
    compile_s = time.perf_counter() - started
    labels = predictor.stance_logits(sample).argmax(-1).tolist()  # also the warm-up
    seconds = []
    for _ in range(passes):
        started = time.perf_counter()
        predictor.stance_logits(sample)
        seconds.append(time.perf_counter() - started)
    facts = {
        "f1": round(stance_f1(predictor), 4) if NEWSMTSC.is_dir() else None,
        "attention": predictor.attention,
        "precision": predictor.precision,
        "compile_s": compile_s,
        "model_package": str(Path(model.__file__).resolve().parent),
    }
    print(json.dumps({**facts, "pass_s": seconds, "labels": labels}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--compare", choices=COMPARISONS, required=True)
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--against", help="the git revision to compare the working tree with (--compare revision)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.compare, args.child, args.pairs, args.passes, args.threads)
        return
    if (args.compare == "revision") != (args.against is not None):
        parser.error("--against REV goes with --compare revision, and only with it")
    with tempfile.TemporaryDirectory() as folder:
        environments = {name: None for name in COMPARISONS[args.compare][0]}
        against = None
        if args.against:
            against = exported(args.against, Path(folder))
            environments["revision"] = {**os.environ, "PYTHONPATH": os.pathsep.join([folder, os.environ.get("PYTHONPATH", "")])}
        out = compare(args, environments)
    if against:
        out = {"against": against, **out}
    (args.out or RESULTS / COMPARISONS[args.compare][2]).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(out, indent=2))


def compare(args: argparse.Namespace, environments: dict[str, dict[str, str] | None]) -> dict:
    """The two variants' processes in turns (each with its entry of `environments`, None for this one's), and what
    they measured."""
    first, second = environments
    torch.set_num_threads(args.threads)
    exact = StancePredictor.load(default_model_path(), "fp32", "off").stance_logits(sample_pairs(args.pairs, 0)).argmax(-1)
    runs: dict[str, list[dict]] = {name: [] for name in (first, second)}
    for _ in range(args.rounds):
        for name in runs:
            command = [
                sys.executable,
                __file__,
                "--child",
                name,
                *(f"--{k}={getattr(args, k)}" for k in ("compare", "pairs", "passes", "threads")),
            ]
            done = subprocess.run(command, capture_output=True, text=True, env=environments[name])
            if done.returncode != 0:
                raise SystemExit(f"variant {name} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
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
        f"{first}_vs_{second}_median_of_rounds": round(
            statistics.median(a / b for a, b in zip(rates[first], rates[second], strict=True)), 3
        ),
        "labels_equal_to_fp32": {name: round(float((lab == exact).float().mean()), 4) for name, lab in labels.items()},
        f"labels_{first}_vs_{second}_differ": int((labels[first] != labels[second]).sum()),
        "stance_macro_f1_devtest_mt": {name: rs[0]["f1"] for name, rs in runs.items()},
        "load_and_compile_s": {name: [round(r["compile_s"], 1) for r in rs] for name, rs in runs.items()},
        "model_package": {name: rs[0]["model_package"] for name, rs in runs.items()},
        "machine": {"cpu": cpu_model(), **cpu_features(), "torch": torch.__version__},
    }
    return out


if __name__ == "__main__":
    main()

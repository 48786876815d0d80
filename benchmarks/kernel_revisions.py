"""The AMX kernels of the working tree against git revision REV's, each called on the same inputs in turns in one
process: the feed-forward input layer with GELU (`stance_amx_gelu_codes`), the attention-output and feed-forward
output layers with their LayerNorm (`stance_amx_linear_norm`) and the query-key-value layer with attention
(`stance_amx_qkv_attention`), at one compiled batch's rows and all-MiniLM-L6-v2's widths. REV's
model/kernels are exported to a temporary folder and built as the working tree's are; REV's kernels must take
the same arguments (session 19 on). With --cut-off, each side's GELU and LayerNorm kernels are built with the
steps after their GEMM cut off (each row returns at once), which splits their time into the GEMM's and the rest's;
their outputs are then never written, so the codes compared for them mean nothing.

    .venv/bin/python benchmarks/kernel_revisions.py --against REV [--rows 1464] [--rounds 11] [--calls 40]
        [--threads 2] [--cut-off] [--out FILE]

Each round times --calls calls of each side, the two in alternating order; a kernel's figure is the median of the
rounds (µs per call), its ratio the median of the rounds' ratios (working tree over REV). Also the share of output
codes that differ between the two. Needs a CPU with AMX. Writes benchmarks/results/kernel_revisions.json (or --out).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from io import BytesIO
from pathlib import Path

import torch
from inference import RESULTS, ROOT, cpu_model

from model import fused_attention as fa
from model.quant import UINT8_ZERO

HIDDEN, INNER, HEADS, LENGTH = 384, 1536, 12, 37
# The GELU and LayerNorm steps' row functions, and what makes them return at once for --cut-off.
CUT_OFF = (
    ("[&](const int32_t* sums, int64_t ld, int64_t first, int64_t count, GeluScratch& s) {", "if (sums[0] != 12345) return;"),
    ("[&](const int32_t* sums, int64_t ld, int64_t i, int64_t count, TwoRows<V>& y) {", "if (sums[0] != 12345) return;"),
)


def export_kernels(revision: str, folder: Path) -> Path:
    """REV's model/kernels under `folder`."""
    archive = subprocess.run(["git", "archive", revision, "model/kernels"], cwd=ROOT, check=True, capture_output=True)
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(folder, filter="data")
    return folder / "model" / "kernels"


def cut_off(kernels: Path, folder: Path) -> Path:
    """A copy of `kernels` whose GELU and LayerNorm row steps return at once."""
    folder.mkdir(parents=True)
    for source in kernels.iterdir():
        text = source.read_text()
        if source.name == "amx_linear.cpp":
            for opening, early_return in CUT_OFF:
                if opening not in text:
                    raise SystemExit(f"--cut-off: no {opening!r} in {source}")
                text = text.replace(opening, f"{opening} {early_return}")
        (folder / source.name).write_text(text)
    return folder


def kernels(folder: Path) -> dict[str, Callable[..., None]]:
    compiler = fa.cxx_compiler()
    if compiler is None:
        raise SystemExit("no C++ compiler")
    linear, attention = fa.build(compiler, folder / "amx_linear.cpp"), fa.build(compiler, folder / "amx_attention.cpp")
    return {
        "init": fa.bind(linear, "stance_amx_init", (), ctypes.c_int),
        "gelu": fa.bind(linear, "stance_amx_gelu_codes", fa.AMX_GELU_CODES_ARGS),
        "norm": fa.bind(linear, "stance_amx_linear_norm", fa.AMX_LINEAR_NORM_ARGS),
        "attention": fa.bind(attention, "stance_amx_qkv_attention", fa.AMX_QKV_ATTENTION_ARGS),
    }


def layer(rows: int, k: int, n: int) -> list[torch.Tensor]:
    """Random codes [rows, k] and an int8 layer k → n as the AMX kernels take them: the codes, packed weights, column
    sums, weight scales, row scales and offsets, weight sums and bias."""
    weights = torch.randint(-127, 128, (k, n), dtype=torch.int8)
    weight_scale = torch.rand(n) * 0.004 / 127
    return [
        torch.randint(1, 256, (rows, k), dtype=torch.uint8),
        fa.amx_pack(weights),
        weights.sum(0, dtype=torch.int32),
        weight_scale,
        torch.rand(rows, 1) * 0.05 + 0.01,
        torch.randn(rows, 1) * 0.1,
        weights.float().sum(0) * weight_scale,
        torch.randn(n) * 0.3,
    ]


def codes_out(rows: int, n: int) -> list[torch.Tensor]:
    return [torch.empty(rows, n, dtype=torch.uint8), torch.empty(rows, 1), torch.empty(rows, 1)]


def pointers(tensors: list[torch.Tensor]) -> list[int]:
    return [t.data_ptr() for t in tensors]


def calls(rows: int, threads: int) -> dict[str, Callable[[dict, list[torch.Tensor]], None]]:
    """Each kernel's call on fixed inputs, given a side's kernels and its own outputs."""
    gelu = layer(rows, HIDDEN, INNER)
    norms = {name: layer(rows, k, HIDDEN) for name, k in (("attention_output", HIDDEN), ("output", INNER))}
    residual, gamma, beta, smooth = (
        torch.randn(rows, HIDDEN),
        torch.rand(HIDDEN) + 0.5,
        torch.randn(HIDDEN) * 0.1,
        torch.rand(HIDDEN) + 0.5,
    )
    qkv = layer(rows, HIDDEN, 3 * HIDDEN)
    batch = rows // LENGTH
    lengths = torch.randint(LENGTH // 2, LENGTH + 1, (batch,))
    mask = torch.where(torch.arange(LENGTH)[None] < lengths[:, None], 0.0, torch.finfo(torch.float32).min).contiguous()
    out = {
        "gelu": lambda k, o: k["gelu"](*pointers(gelu + o), rows, HIDDEN, INNER, UINT8_ZERO, threads),
        "attention": lambda k, o: k["attention"](
            *pointers([*qkv, mask, smooth, *o]), batch * LENGTH, HIDDEN, 3 * HIDDEN, batch, HEADS,
            (HIDDEN // HEADS) ** -0.5, UINT8_ZERO, threads,
        ),
    }  # fmt: skip
    for name, inputs in norms.items():
        k = inputs[0].shape[1]
        out[f"norm_{name}"] = lambda kernels, o, inputs=inputs, k=k: kernels["norm"](
            *pointers([*inputs, residual, gamma, beta, smooth, *o]), rows, k, HIDDEN, 1e-12, UINT8_ZERO, threads
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--against", required=True, help="git revision whose kernels to compare with")
    parser.add_argument("--rows", type=int, default=1464, help="rows of a batch (attention: its whole sequences of 37)")
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cut-off", action="store_true", help="GELU and LayerNorm steps cut off after the GEMM")
    parser.add_argument("--out", type=Path, default=RESULTS / "kernel_revisions.json")
    args = parser.parse_args()
    if not fa.amx_attention_available():
        raise SystemExit("this CPU has no AMX int8 and bf16 tiles (or no C++ compiler): nothing to compare")
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as temporary:
        folders = {"working-tree": fa.SOURCE.parent, "revision": export_kernels(args.against, Path(temporary))}
        if args.cut_off:
            folders = {side: cut_off(folder, Path(temporary) / f"cut_{side}") for side, folder in folders.items()}
        sides = {side: kernels(folder) for side, folder in folders.items()}
    sides["working-tree"]["init"]()
    results = {}
    for name, call in calls(args.rows, args.threads).items():
        n = INNER if name == "gelu" else HIDDEN
        # Attention takes whole sequences of LENGTH rows.
        rows = args.rows // LENGTH * LENGTH if name == "attention" else args.rows
        outputs = {side: codes_out(rows, n) for side in sides}
        if name.startswith("norm"):
            outputs = {side: [torch.empty(args.rows, HIDDEN), *o] for side, o in outputs.items()}
        times: dict[str, list[float]] = {side: [] for side in sides}
        for round_ in range(args.rounds):
            for side in sides if round_ % 2 == 0 else reversed(list(sides)):
                call(sides[side], outputs[side])
                started = time.perf_counter()
                for _ in range(args.calls):
                    call(sides[side], outputs[side])
                times[side].append((time.perf_counter() - started) / args.calls * 1e6)
        codes = [outputs[side][-3].int() for side in sides]
        results[name] = {
            "us_per_call_median": {side: round(statistics.median(t), 1) for side, t in times.items()},
            "working_tree_over_revision": round(
                statistics.median(w / r for w, r in zip(times["working-tree"], times["revision"], strict=True)), 3
            ),
            "codes_differing": round((codes[0] != codes[1]).float().mean().item(), 6),
        }
        print(name, results[name])
    out = {
        "against": subprocess.run(["git", "rev-parse", args.against], cwd=ROOT, capture_output=True, text=True).stdout.strip(),
        "rows": args.rows,
        "rounds": args.rounds,
        "calls": args.calls,
        "threads": args.threads,
        "cut_off": args.cut_off,
        "kernels": results,
        "machine": cpu_model(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()

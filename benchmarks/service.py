"""Service latency and throughput: one client at a time against 16 concurrent clients, in the same run.

Starts `stance serve` on a free loopback port, waits for /ready, then sends 600-word articles, each request a
different article (so the service's deduplication of identical sentences does not flatter the figures):
sequentially (p50/p95 latency, documents/s) and from 16 concurrent clients (documents/s), the same articles
in both modes. Writes benchmarks/results/service.json.

    .venv/bin/python benchmarks/service.py [--requests 40] [--model DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving import free_port, wait_ready
from synthetic import article

from model.predictor import DEFAULT_PRECISION

RESULTS = Path(__file__).resolve().parent / "results"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run_clients(url: str, texts: list[str], clients: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    queue = list(reversed(texts))

    async def client(c: httpx.AsyncClient) -> None:
        while queue:
            text = queue.pop()
            started = time.perf_counter()
            response = await c.post(f"{url}/classify", json={"text": text})
            response.raise_for_status()
            latencies.append(time.perf_counter() - started)

    async with httpx.AsyncClient(timeout=300) as c:
        started = time.perf_counter()
        await asyncio.gather(*(client(c) for _ in range(clients)))
        return time.perf_counter() - started, latencies


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its threads, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(server: subprocess.Popen, url: str, texts: list[str], clients: int) -> tuple[float, list[float], float]:
    """Wall seconds, latencies, and the cores the server kept busy on average (CPU seconds / wall seconds)."""
    cpu = cpu_seconds(server.pid)
    wall, latencies = asyncio.run(run_clients(url, texts, clients))
    return wall, latencies, (cpu_seconds(server.pid) - cpu) / wall


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--model", default=None)
    args = parser.parse_args()

    rng = random.Random(7)
    texts = [article(rng, words=600) for _ in range(args.requests + 1)]
    warm_text, texts = texts[0], texts[1:]
    port = free_port()
    command = [sys.executable, "-m", "service.cli", "serve", "--port", str(port)]
    if args.model:
        command += ["--model", args.model]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, server, timeout=300, compiled=True)
        warm = httpx.post(f"{url}/classify", json={"text": warm_text}, timeout=300).json()
        pairs = sum(len(s["actors"]) for s in warm["sentences"])
        seq_time, seq_lat, seq_cores = measured(server, url, texts, 1)
        conc_time, conc_lat, conc_cores = measured(server, url, texts, args.clients)
    finally:
        server.terminate()
        server.wait(30)
    result = {
        "article": {"words": len(warm_text.split()), "sentences": len(warm["sentences"]), "pairs": pairs},
        "distinct_articles": len(texts),
        "requests_per_mode": args.requests,
        "one_client": {
            "latency_p50_ms": round(statistics.median(seq_lat) * 1000, 1),
            "latency_p95_ms": round(percentile(seq_lat, 0.95) * 1000, 1),
            "documents_per_s": round(args.requests / seq_time, 3),
            "server_cores_busy": round(seq_cores, 2),
        },
        f"{args.clients}_clients": {
            "latency_p50_ms": round(statistics.median(conc_lat) * 1000, 1),
            "latency_p95_ms": round(percentile(conc_lat, 0.95) * 1000, 1),
            "documents_per_s": round(args.requests / conc_time, 3),
            "server_cores_busy": round(conc_cores, 2),
        },
        "throughput_ratio": round((args.requests / conc_time) / (args.requests / seq_time), 3),
        # The ratio cannot exceed this unless batching makes each pair cheaper: all cores over what one client uses.
        "ratio_bound_from_idle_cores": round((os.cpu_count() or 1) / seq_cores, 2),
        "precision": os.environ.get("STANCE_PRECISION", DEFAULT_PRECISION),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "service.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""Load test: a real `stance serve` under concurrent clients for a fixed time; errors, latency, throughput, memory.

Starts `stance serve` (as `python -m service.cli serve`) on a free loopback port with the shipped model, or
--model, and waits for /ready. Then --clients clients, each with one request in flight at a time, send short news
articles (3-8 sentences, each request different ones) for --warmup seconds, and again for --duration seconds
measured: three requests in four to POST /classify, the rest to POST /classify/batch with 2-4 documents.
Records failed requests (not 2xx, a batch document that was not 200, or no answer), p50/p95/p99 latency per
route and overall, requests/s and documents/s, and the server's resident memory (VmRSS) after the warm-up,
every 10 s, and at the end. Writes --out (default benchmarks/results/load.json); exits 1 when a request failed or the memory
grew by more than 20%.

    .venv/bin/python benchmarks/load.py [--clients 32] [--duration 60] [--warmup 10] [--model DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.append(str(Path(__file__).resolve().parent))  # appended: benchmarks/service.py must not shadow the package
from serving import free_port, wait_ready
from synthetic import sentence

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "load.json"
BATCH_SHARE = 0.25
MAX_RSS_GROWTH = 0.20
REQUEST_TIMEOUT_S = 180.0
RSS_EVERY_S = 10.0


@dataclass(frozen=True)
class Sample:
    route: str
    seconds: float
    documents: int
    error: str | None  # None, a status code, "document <status>", or the exception's name


def articles(count: int, seed: int = 11) -> list[str]:
    """Distinct short articles of 3-8 sentences, so the service's deduplication does not flatter the figures."""
    rng = random.Random(seed)
    return [" ".join(sentence(rng) for _ in range(rng.randint(3, 8))) for _ in range(count)]


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def percentiles(seconds: Sequence[float]) -> dict[str, float | None]:
    """Nearest-rank p50, p95 and p99 in milliseconds."""
    ordered = sorted(seconds)
    if not ordered:
        return {"p50": None, "p95": None, "p99": None}
    pick = {q: ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] for q in (0.50, 0.95, 0.99)}
    return {f"p{round(q * 100)}": round(v * 1000, 1) for q, v in pick.items()}


async def send(client: httpx.AsyncClient, rng: random.Random, texts: list[str], order: itertools.count) -> Sample:
    """One request, to /classify or /classify/batch, with the next unused articles."""
    batch = rng.random() < BATCH_SHARE
    documents = rng.randint(2, 4) if batch else 1
    picked = [texts[next(order) % len(texts)] for _ in range(documents)]
    route = "/classify/batch" if batch else "/classify"
    body = {"documents": [{"id": str(i), "text": t} for i, t in enumerate(picked)]} if batch else {"text": picked[0]}
    started = time.perf_counter()
    try:
        response = await client.post(route, json=body)
        error = None if response.is_success else str(response.status_code)
        if batch and error is None:
            failed = [r["status"] for r in response.json()["results"] if r["status"] != 200]
            error = f"document {failed[0]}" if failed else None
    except httpx.HTTPError as exc:
        error = type(exc).__name__
    return Sample(route, time.perf_counter() - started, documents, error)


async def phase(
    url: str, clients: int, seconds: float, texts: list[str], seed: int, pid: int
) -> tuple[list[Sample], float, list[list[float]]]:
    """`clients` clients sending back to back until `seconds` have passed.

    Returns the samples, the wall time, and [seconds, server RSS in MB] every RSS_EVERY_S seconds.
    """
    samples: list[Sample] = []
    timeline: list[list[float]] = []
    order = itertools.count(seed * 100_003)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S, limits=limits) as client:
        started = time.monotonic()
        deadline = started + seconds

        async def run(index: int) -> None:
            rng = random.Random(seed * 1000 + index)
            while time.monotonic() < deadline:
                samples.append(await send(client, rng, texts, order))

        async def watch() -> None:
            while time.monotonic() < deadline:
                timeline.append([round(time.monotonic() - started, 1), round(rss_mb(pid), 1)])
                await asyncio.sleep(RSS_EVERY_S)

        await asyncio.gather(watch(), *(run(i) for i in range(clients)))
        return samples, time.monotonic() - started, timeline


def summarise(samples: list[Sample], elapsed: float) -> dict:
    routes = {}
    for route in ("/classify", "/classify/batch"):
        mine = [s for s in samples if s.route == route]
        routes[route] = {
            "requests": len(mine),
            "errors": sum(s.error is not None for s in mine),
            "latency_ms": percentiles([s.seconds for s in mine]),
        }
    documents = sum(s.documents for s in samples if s.error is None)
    return {
        "requests": len(samples),
        "errors": sum(s.error is not None for s in samples),
        "error_kinds": dict(Counter(s.error for s in samples if s.error is not None)),
        "documents": documents,
        "seconds": round(elapsed, 2),
        "requests_per_s": round(len(samples) / elapsed, 3),
        "documents_per_s": round(documents / elapsed, 3),
        "latency_ms": percentiles([s.seconds for s in samples]),
        "routes": routes,
    }


def start_server(port: int, model: str | None, log) -> subprocess.Popen:
    command = [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    if model:
        command += ["--model", model]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=60, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=10, help="seconds of the same traffic before measuring")
    parser.add_argument("--model", help="model folder (default: the shipped model)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)

    texts = articles(4000)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        server = start_server(port, args.model, log)
        try:
            wait_ready(url, server, compiled=True)
            warm, _, _ = asyncio.run(phase(url, args.clients, args.warmup, texts, 1, server.pid))
            rss_warm = rss_mb(server.pid)
            samples, elapsed, timeline = asyncio.run(phase(url, args.clients, args.duration, texts, 2, server.pid))
            rss_end = rss_mb(server.pid)
        except Exception:
            log.seek(0)
            sys.stderr.write(log.read().decode(errors="replace")[-4000:])
            raise
        finally:
            server.terminate()
            server.wait(30)
    growth = rss_end / rss_warm
    result = {
        "settings": {
            "clients": args.clients,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "model": args.model or "default",
            "batch_share": BATCH_SHARE,
            "batch_documents": [2, 4],
            "sentences_per_document": [3, 8],
        },
        "warmup": {"requests": len(warm), "errors": sum(s.error is not None for s in warm)},
        **summarise(samples, elapsed),
        "server_rss_mb": {"after_warmup": round(rss_warm, 1), "end": round(rss_end, 1), "end_over_warmup": round(growth, 3)},
        "server_rss_timeline_mb": timeline,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    result["passed"] = result["errors"] == 0 and growth <= 1 + MAX_RSS_GROWTH
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())

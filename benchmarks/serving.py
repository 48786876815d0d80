"""Helpers for the benchmarks that start a real `stance serve`: a free port, and waiting for /ready."""

from __future__ import annotations

import socket
import subprocess
import time

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, server: subprocess.Popen, timeout: float = 300, poll: float = 0.2, compiled: bool = False) -> None:
    """Return once `url`/ready answers 200 (with `compiled`, once /info also says the background compile is over);
    raise if the server exits or `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if httpx.get(f"{url}/ready", timeout=5).status_code == 200 and (
                not compiled or httpx.get(f"{url}/info", timeout=5).json()["runtime"]["compile"] != "compiling"
            ):
                return
        except httpx.HTTPError:
            pass
        time.sleep(poll)
    raise RuntimeError("the server did not become ready" if server.poll() is None else f"the server exited ({server.returncode})")

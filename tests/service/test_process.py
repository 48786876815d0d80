"""The real server process: kill -9 while the model loads and requests are in flight, restart, readiness."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
# `stance serve`, with the background model load held until a gate file exists, so the loading phase can be observed.
SERVE_GATED = """
import os, sys, time
from pathlib import Path

import service.app

load = service.app.load_predictor


def gated(folder, settings):
    while not Path(os.environ["STANCE_TEST_GATE"]).exists():
        time.sleep(0.02)
    return load(folder, settings)


service.app.load_predictor = gated
from service.cli import main

sys.exit(main(sys.argv[1:]))
"""
LOADING = {"error": "model is loading", "error_type": "not_ready"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(port: int, model_dir: Path, gate: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "STANCE_MODEL_DIR": str(model_dir), "STANCE_TEST_GATE": str(gate), "HF_HUB_OFFLINE": "1"}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-c", SERVE_GATED, "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_for(
    client: httpx.Client, path: str, status: int, server: subprocess.Popen, log: Path, timeout: float = 60
) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, f"server exited with {server.returncode}:\n{log.read_text()}"
        try:
            response = client.get(path)
            if response.status_code == status:
                return response
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{path} never answered {status}:\n{log.read_text()}")


def test_kill_9_mid_load_and_restart(tiny_model_dir, tmp_path):
    port, gate, log = free_port(), tmp_path / "gate", tmp_path / "server.log"
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    servers = [start(port, tiny_model_dir, gate, log)]
    try:
        wait_for(client, "/health", 200, servers[0], log)
        response = client.get("/ready")
        assert response.status_code == 503 and response.json() == LOADING

        # Clients keep sending documents while the model loads; then the server is killed under them.
        outcomes: list[object] = []
        stop = threading.Event()

        def send() -> None:
            with httpx.Client(base_url=client.base_url, timeout=10) as own:
                while not stop.is_set():
                    try:
                        response = own.post("/classify", json={"text": "Acme Corp praised Globex."})
                        outcomes.append((response.status_code, response.json()))
                    except httpx.TransportError as exc:
                        outcomes.append(type(exc).__name__)
                        time.sleep(0.02)

        senders = [threading.Thread(target=send) for _ in range(3)]
        for sender in senders:
            sender.start()
        time.sleep(0.5)
        servers[0].send_signal(signal.SIGKILL)
        assert servers[0].wait(10) == -signal.SIGKILL
        time.sleep(0.3)
        stop.set()
        for sender in senders:
            sender.join(10)
            assert not sender.is_alive()
        answered = [o for o in outcomes if isinstance(o, tuple)]
        assert answered and all(o == (503, LOADING) for o in answered)
        assert len(answered) < len(outcomes)  # and, once it was gone, connection errors rather than hangs

        # A restart on the same port is not ready until the model is in memory, then serves.
        servers.append(start(port, tiny_model_dir, gate, log))
        wait_for(client, "/health", 200, servers[1], log)
        response = client.get("/ready")
        assert response.status_code == 503 and response.json() == LOADING
        gate.touch()
        assert wait_for(client, "/ready", 200, servers[1], log).json() == {"status": "ready"}
        response = client.post("/classify", json={"text": "Acme Corp praised Globex."})
        assert response.status_code == 200 and response.json()["model"] == {"name": "tiny-test", "version": "0.0.1"}
    finally:
        client.close()
        for server in servers:
            server.kill()
            server.wait(10)

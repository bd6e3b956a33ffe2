"""`gateway serve --workers 2` as a real process tree: a SIGTERM in the middle of an upload lets
that upload finish and be stored, and the port refuses new connections afterwards."""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from gateway.config import ENVIRONMENT
from tests.conftest import make_config
from tests.helpers import png

pytestmark = pytest.mark.embedded
REPO = Path(__file__).resolve().parent.parent
BOUNDARY = "gatewayboundary"


def read_line(proc: subprocess.Popen[bytes], timeout: float) -> str:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            proc.kill()
            raise AssertionError(f"no output within {timeout}s")
    return proc.stdout.readline().decode()


def start_server(data_dir: Path, log: Path, *args: str, extra_env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], int]:
    """`python -m gateway serve` on a free port, configured by the environment like a container."""
    env = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT and k != "GATEWAY_CONFIG"}
    env.update({"DATA_DIR": str(data_dir), "LOG_FORMAT": "json", "APP_HOST": "127.0.0.1", **(extra_env or {})})
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--port", "0", *args],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=stderr,
        )  # fmt: skip
    line = read_line(proc, 30)
    assert "serving on http://127.0.0.1:" in line, line
    port = int(line.split("http://127.0.0.1:")[1].split()[0])
    return proc, port


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not within {timeout}s"
        time.sleep(0.05)


def refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


def multipart(image: bytes) -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="note"\r\n\r\nin-flight\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="late.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode() + image + f"\r\n--{BOUNDARY}--\r\n".encode()


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    status = int(head.split()[1])
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    return status, body


async def test_sigterm_mid_upload_finishes_it_and_refuses_new_connections(tmp_path: Path, aiohttp_client: Any) -> None:
    data_dir = tmp_path / "data"
    log = tmp_path / "gateway.log"
    proc, port = start_server(data_dir, log, "--workers", "2")
    try:
        wait_for(lambda: healthy(port), 30, "/health: " + log.read_text())
        image = png((64, 48), seed=5)
        body = multipart(image)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                (
                    "POST /collections/shutdown/images HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {len(body)}\r\n"
                    "Expect: 100-continue\r\n\r\n"
                ).encode()
            )
            # aiohttp answers 100 Continue once the request is routed into the app: it is in flight.
            assert sock.recv(1024).startswith(b"HTTP/1.1 100 Continue")
            proc.send_signal(signal.SIGTERM)
            wait_for(lambda: refused(port), 15, "new connections refused")
            sock.sendall(body)
            try:
                status, answer = read_response(sock)
            except TimeoutError:
                proc.kill()
                raise AssertionError(log.read_text())
        assert status == 200, answer
        doc = json.loads(answer)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    stderr = log.read_text()
    access = [json.loads(line) for line in stderr.splitlines() if line.startswith("{") and '"gateway.access"' in line]
    assert any(entry["route"] == "/collections/{collection}/images" and entry["status"] == 200 for entry in access), stderr

    # The acknowledged upload is stored, bytes and record.
    client = await aiohttp_client(create_app(make_config(tmp_path)))
    stored = await client.get(f"/collections/shutdown/images/{doc['id']}")
    assert stored.status == 200 and (await stored.json())["properties"] == {"note": "in-flight"}
    fetched = await client.get(f"/collections/shutdown/images/{doc['id']}/image")
    assert await fetched.read() == image


def test_workers_argument_is_validated() -> None:
    from gateway.cli.serve import worker_count

    assert worker_count("auto") >= 1 and worker_count("3") == 3
    for bad in ("0", "-1", "many"):
        with pytest.raises(Exception, match="worker|number"):
            worker_count(bad)

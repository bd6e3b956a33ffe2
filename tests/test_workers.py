"""`gateway serve --workers 2` as a real process tree: a SIGTERM in the middle of an upload lets
that upload finish and be stored, and the port refuses new connections afterwards; open event
feeds are closed at once rather than waited for."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.app import create_app
from tests.helpers import make_config, png
from tests.processes import healthy, start_server, stop, wait_for_log

pytestmark = pytest.mark.embedded
BOUNDARY = "gatewayboundary"


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
    proc, port = start_server(data_dir, "--workers", "2")
    seen: list[str] = []
    try:
        # Each worker says so once it accepts and handles SIGTERM.
        wait_for_log(proc, r"worker \d+ serving", 2, seen)
        assert healthy(port)
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
            wait_for_log(proc, "stopped accepting connections; .*", 2, seen)
            assert refused(port)
            sock.sendall(body)
            try:
                status, answer = read_response(sock)
            except TimeoutError:
                raise AssertionError(stop(proc, seen))
        assert status == 200, answer
        doc = json.loads(answer)
        assert proc.wait(timeout=30) == 0
    finally:
        stderr = stop(proc, seen)
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


async def test_sigterm_closes_open_feeds_without_waiting_for_them(tmp_path: Path) -> None:
    proc, port = start_server(tmp_path / "data", "--workers", "2")
    seen: list[str] = []
    try:
        # Each worker says so once it accepts and handles SIGTERM.
        wait_for_log(proc, r"worker \d+ serving", 2, seen)
        assert healthy(port)
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(f"http://127.0.0.1:{port}/events")
            assert (await ws.receive_json(timeout=30))["event"] == "subscribed"
            proc.send_signal(signal.SIGTERM)
            message = await ws.receive(timeout=30)
            assert (message.type, message.data) == (aiohttp.WSMsgType.CLOSE, aiohttp.WSCloseCode.GOING_AWAY)
        # Well inside the 30 s drain timeout, which a feed counted as in flight would use up.
        assert await asyncio.to_thread(proc.wait, 20) == 0
    finally:
        stop(proc, seen)

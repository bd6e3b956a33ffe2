"""The HTTP parser's limits as `gateway serve` runs them: an over-long request line, header field
or header count is refused with a 4xx before any handler runs, and the process keeps serving."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from yarl import URL

from gateway.middlewares import HTTP_PARSER_LIMITS
from tests.test_cli import serving

pytestmark = pytest.mark.embedded


def exchange(base_url: str, head: str) -> int:
    """Send a request head on a raw socket; the status of the answer."""
    url = URL(base_url)
    with socket.create_connection((url.host, url.port), timeout=10) as sock:
        sock.sendall(head.encode("latin-1"))
        answer = b""
        while b"\r\n" not in answer and (data := sock.recv(4096)):
            answer += data
    return int(answer.split(b" ", 2)[1])


def test_request_line_and_header_limits(tmp_path: Path) -> None:
    line, field, count = HTTP_PARSER_LIMITS["max_line_size"], HTTP_PARSER_LIMITS["max_field_size"], HTTP_PARSER_LIMITS["max_headers"]
    with serving(tmp_path / "data") as base_url:
        assert exchange(base_url, "GET /collections HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n") == 200
        assert exchange(base_url, f"GET /collections?filter={'a' * line} HTTP/1.1\r\nHost: x\r\n\r\n") == 400
        assert exchange(base_url, f"GET /collections HTTP/1.1\r\nHost: x\r\nX-Big: {'b' * (field + 1)}\r\n\r\n") in (400, 431)
        many = "".join(f"X-H{i}: 1\r\n" for i in range(count + 1))
        assert exchange(base_url, f"GET /collections HTTP/1.1\r\nHost: x\r\n{many}\r\n") in (400, 431)
        # Just inside the limits is served.
        near = "".join(f"X-H{i}: 1\r\n" for i in range(count - 4))
        assert exchange(base_url, f"GET /collections HTTP/1.1\r\nHost: x\r\nX-Big: {'b' * (field - 100)}\r\n{near}Connection: close\r\n\r\n") == 200

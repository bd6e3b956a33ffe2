"""`python -m gateway serve` as a real process: started on a free port, its log read as it
comes, killed if a test leaves it running."""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from gateway.config import ENVIRONMENT

REPO = Path(__file__).resolve().parent.parent


def read_line(stream: Any, timeout: float) -> str:
    """One line from an unbuffered pipe, or fail after `timeout`."""
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise AssertionError(f"no output within {timeout}s")
    return stream.readline().decode()


def start_server(
    data_dir: Path, *args: str, log: Path | None = None, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """`python -m gateway serve` on a free port, configured by the environment like a container.
    stdout and stderr (the JSON log) are unbuffered pipes, read as lines arrive; the log goes to
    the file `log` instead when given (a long-running server whose log nobody reads)."""
    env = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT and k != "GATEWAY_CONFIG"}
    env.update({"DATA_DIR": str(data_dir), "LOG_FORMAT": "json", "APP_HOST": "127.0.0.1", **(extra_env or {})})
    with contextlib.ExitStack() as files:
        stderr = files.enter_context(log.open("wb")) if log is not None else subprocess.PIPE
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--port", "0", *args],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=stderr, bufsize=0,
        )  # fmt: skip
    line = read_line(proc.stdout, 30)
    assert "serving on http://127.0.0.1:" in line, line
    port = int(line.split("http://127.0.0.1:")[1].split()[0])
    return proc, port


def wait_for_log(proc: subprocess.Popen[bytes], pattern: str, count: int, seen: list[str], timeout: float = 30) -> None:
    """Read the server's log into `seen` until `count` messages match `pattern`."""
    deadline = time.monotonic() + timeout
    matched = 0
    while matched < count:
        line = read_line(proc.stderr, max(deadline - time.monotonic(), 0))
        assert line, f"log ended before {count} x {pattern!r}: {seen}"
        seen.append(line)
        matched += line.startswith("{") and re.fullmatch(pattern, json.loads(line)["message"]) is not None


def healthy(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=30) as response:
        return response.status == 200


def stop(proc: subprocess.Popen[bytes], seen: list[str]) -> str:
    """Kill the server if it is still running; its whole log (the lines read so far, `seen`,
    and the rest of the pipe)."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    assert proc.stdout is not None
    proc.stdout.close()
    if proc.stderr is not None:
        seen.append(proc.stderr.read().decode())
        proc.stderr.close()
    return "".join(seen)

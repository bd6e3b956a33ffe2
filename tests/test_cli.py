"""`gateway serve` as a user runs it: a real process on the embedded default."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers import png
from tests.peers import free_port

pytestmark = pytest.mark.embedded
REPO = Path(__file__).resolve().parent.parent


@contextmanager
def serving(data_dir: Path, *extra: str, port: str | None = "0", environ: dict[str, str] | None = None) -> Iterator[str]:
    """`gateway serve` on `--port port` (none given when None); yields the URL it prints."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MONGODB_", "S3_", "GATEWAY_", "APP_"))}
    env.update(DATA_DIR=str(data_dir), **(environ or {}))
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", *(["--port", port] if port is not None else []), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "serving on http://" in line, process.stderr.read() if process.stderr else line
        yield line.strip().rsplit(" ", 1)[-1]
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err


def request(url: str, data: bytes | None = None, headers: dict[str, str] | None = None, method: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    with urllib.request.urlopen(req, timeout=30) as response:
        return response.status, response.read()


def test_serve_prints_url_and_keeps_data_across_restarts(tmp_path: Path) -> None:
    import base64

    image = png((20, 20))
    with serving(tmp_path / "data") as url:
        status, body = request(url + "/")
        assert status == 200 and json.loads(body)["storage"] == "filesystem"
        payload = json.dumps({"data": base64.b64encode(image).decode()}).encode()
        status, body = request(url + "/v1/images", payload, {"Content-Type": "application/json"})
        assert status == 201
        created = json.loads(body)
    with serving(tmp_path / "data") as url:
        status, body = request(f"{url}/v1/images/{created['id']}/image")  # follows the redirect
        assert status == 200 and body == image
    assert (tmp_path / "data" / "metadata.sqlite3").is_file()
    assert (tmp_path / "data" / "objects" / created["path"]).is_file()


def test_app_port_decides_where_serve_listens_without_port(tmp_path: Path) -> None:
    port = free_port()
    with serving(tmp_path / "data", port=None, environ={"APP_PORT": str(port)}) as url:
        assert url == f"http://127.0.0.1:{port}"
        assert request(url + "/health")[0] == 200


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize(("variables", "expected"), [([], "gateway serve"), (["PORT=9001"], "gateway serve --port 9001")])
def test_make_run_leaves_the_port_to_app_port_unless_told(variables: list[str], expected: str) -> None:
    # `APP_PORT=9000 make run` must serve on 9000: the Makefile passes no --port of its own.
    env = dict(os.environ, APP_PORT="9000")
    result = subprocess.run(["make", "-n", "run", *variables], cwd=REPO, capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    served = [line.strip() for line in result.stdout.splitlines() if "gateway serve" in line]
    assert len(served) == 1 and served[0].endswith(expected), result.stdout


def test_bad_configuration_stops_start_up_with_one_line(tmp_path: Path) -> None:
    env = dict(os.environ, APP_PORT="not-a-port", DATA_DIR=str(tmp_path))
    result = subprocess.run([sys.executable, "-m", "gateway", "serve"], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "server.port" in result.stderr


def test_secrets_never_reach_the_log(tmp_path: Path) -> None:
    env = dict(
        os.environ, DATA_DIR=str(tmp_path), MONGODB_URL="mongodb://admin:hunter2-secret@127.0.0.1:1/", LOG_LEVEL="debug"
    )
    result = subprocess.run([sys.executable, "-m", "gateway", "serve", "--port", "0"], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 1  # nothing listens on port 1: start-up fails cleanly
    assert "hunter2-secret" not in result.stdout + result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("gateway: cannot start:")

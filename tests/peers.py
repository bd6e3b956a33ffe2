"""Helpers to run real peer servers (MinIO, FerretDB) for integration tests.

The binaries are built by ``scripts/build-peers.sh`` into ``.peers/bin``.
This module holds no pytest fixtures; ``conftest.py`` wraps these classes.

Every server listens on 127.0.0.1 only, on ports picked with :func:`free_port`,
and writes its output to a log file under its ``data_dir``. Startup polls the
server with short intervals and a bounded timeout; a failure raises
:class:`PeerStartError` with the tail of the log.
"""

from __future__ import annotations

import atexit
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = [
    "PEERS_BIN",
    "DistributedMinio",
    "FerretDBServer",
    "MinioServer",
    "PeerStartError",
    "free_port",
    "peer_binary",
    "wait_until",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
PEERS_BIN = REPO_ROOT / ".peers" / "bin"

POLL_INTERVAL = 0.05  # seconds between readiness probes
START_TIMEOUT = 30.0  # seconds to wait for a server to become ready
STOP_TIMEOUT = 10.0  # seconds between SIGTERM and SIGKILL
LOG_TAIL_LINES = 40

# processes still running at interpreter exit get SIGKILLed (no orphans)
_LIVE: set[subprocess.Popen[bytes]] = set()


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_LIVE):
        if proc.poll() is None:
            proc.kill()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        _LIVE.discard(proc)


class PeerStartError(RuntimeError):
    """A peer server failed to start or did not become ready in time."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is currently free."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def peer_binary(name: str) -> Path | None:
    """Path of ``.peers/bin/<name>`` if it exists and is executable, else None."""
    path = PEERS_BIN / name
    if path.is_file() and os.access(path, os.X_OK):
        return path
    return None


def _require_binary(name: str) -> Path:
    path = peer_binary(name)
    if path is None:
        raise PeerStartError(f"{PEERS_BIN / name} not found; run scripts/build-peers.sh")
    return path


def _log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        data = path.read_bytes()[-64 * 1024 :]
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    text = data.decode("utf-8", "replace").splitlines()[-lines:]
    return "\n".join(text) if text else "<log is empty>"


def _http_status(url: str, timeout: float = 1.0) -> tuple[int, Mapping[str, str]] | None:
    """GET url; return (status, headers) or None if nothing answered."""
    req = urllib.request.Request(url, method="GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers)
    except (OSError, ValueError):
        return None


def _tcp_connectable(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def _clean_env(drop_prefixes: Sequence[str]) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(tuple(drop_prefixes))}


class _PeerProcess:
    """One server process: start/stop/kill/restart, log file, readiness poll."""

    name = "peer"
    log_name = "peer.log"

    def __init__(self, data_dir: Path, *, start_timeout: float = START_TIMEOUT) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.log_path = self.data_dir / self.log_name
        self.start_timeout = start_timeout
        self.startup_seconds: float | None = None  # duration of the last start()
        self._t0 = 0.0
        self._proc: subprocess.Popen[bytes] | None = None
        self._ports_fixed = False  # after the first start, keep ports for restart()

    # -- to be provided by subclasses -------------------------------------
    def _pick_ports(self) -> None:
        raise NotImplementedError

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _env(self) -> dict[str, str]:
        raise NotImplementedError

    def _probe(self) -> bool:
        """True once the server is ready to serve requests."""
        raise NotImplementedError

    # -- lifecycle ----------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Self:
        """Start the server and wait until it is ready. Returns self.

        On the first start the ports are picked here; if another process
        grabbed one in the meantime ("... already in use"), new ports are
        picked and the start is retried. restart() keeps the ports.
        """
        first = not self._ports_fixed
        for attempt in range(3):
            log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            self.spawn()
            try:
                self.wait_ready()
                return self
            except PeerStartError:
                with open(self.log_path, "rb") as f:
                    f.seek(log_offset)
                    this_run = f.read()
                if not (first and attempt < 2 and b"already in use" in this_run):
                    raise
                self._ports_fixed = False
        raise AssertionError("unreachable")

    def spawn(self) -> None:
        """Start the process without waiting for readiness."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self._reap()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self._ports_fixed:
            self._pick_ports()
            self._ports_fixed = True
        cmd = self._command()
        self._t0 = time.monotonic()
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== {time.strftime('%H:%M:%S')} starting: {' '.join(cmd)}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env(),
                cwd=self.data_dir,
                start_new_session=True,  # not hit by the terminal's Ctrl-C
            )
        _LIVE.add(self._proc)

    def wait_ready(self, timeout: float | None = None) -> None:
        """Poll until ready; on failure kill the process and raise PeerStartError."""
        deadline = time.monotonic() + (self.start_timeout if timeout is None else timeout)
        while True:
            proc = self._proc
            if proc is None:
                raise RuntimeError(f"{self.name} was not started")
            if proc.poll() is not None:
                self._reap()
                raise PeerStartError(
                    f"{self.name} exited with code {proc.returncode} during startup; "
                    f"log {self.log_path}:\n{_log_tail(self.log_path)}"
                )
            if self._probe():
                self.startup_seconds = time.monotonic() - self._t0
                return
            if time.monotonic() >= deadline:
                self.kill()
                raise PeerStartError(
                    f"{self.name} not ready after {time.monotonic() - self._t0:.1f}s; "
                    f"log {self.log_path}:\n{_log_tail(self.log_path)}"
                )
            time.sleep(POLL_INTERVAL)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, then SIGKILL if still running after ``timeout`` seconds."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._reap()

    def kill(self) -> None:
        """SIGKILL (simulates a crash); data on disk is kept."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        self._reap()

    def restart(self, *, hard: bool = False) -> Self:
        """Stop (or kill if ``hard``) and start again on the same ports and data."""
        if hard:
            self.kill()
        else:
            self.stop()
        return self.start()

    def _reap(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            _LIVE.discard(self._proc)
            self._proc = None

    def __enter__(self) -> Self:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} pid={self.pid} data_dir={self.data_dir}>"


# --------------------------------------------------------------------------
# MinIO
# --------------------------------------------------------------------------

_MINIO_ENV = {
    "MINIO_UPDATE": "off",  # no update check against dl.min.io
    "MINIO_CALLHOME_ENABLE": "off",  # no call-home / diagnostics upload
    "MINIO_CI_CD": "1",  # allow drives on the root disk, small buffer pool
}


class MinioServer(_PeerProcess):
    """A single MinIO server on 127.0.0.1.

    ``drives``: drive directories; default ``[data_dir / "data"]``. With 4 or
    more drives MinIO runs erasure-coded on one node.
    """

    name = "minio"
    log_name = "minio.log"

    def __init__(
        self,
        data_dir: Path,
        *,
        drives: list[Path] | None = None,
        access_key: str = "gateway-test",
        secret_key: str | None = None,
        browser: bool = True,
        env: Mapping[str, str] | None = None,
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        super().__init__(data_dir, start_timeout=start_timeout)
        self.drives = [Path(d).resolve() for d in drives] if drives else [self.data_dir / "data"]
        self.access_key = access_key
        self.secret_key = secret_key or secrets.token_hex(16)
        self.browser = browser
        self.extra_env = dict(env or {})
        self.port = 0
        self.console_port = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def console_url(self) -> str:
        return f"http://127.0.0.1:{self.console_port}"

    def _pick_ports(self) -> None:
        self.port = free_port()
        self.console_port = free_port()
        while self.console_port == self.port:
            self.console_port = free_port()

    def _server_args(self) -> list[str]:
        for d in self.drives:
            d.mkdir(parents=True, exist_ok=True)
        return [str(d) for d in self.drives]

    def _command(self) -> list[str]:
        return [
            str(_require_binary("minio")),
            "server",
            "--address", f"127.0.0.1:{self.port}",
            "--console-address", f"127.0.0.1:{self.console_port}",
            *self._server_args(),
        ]  # fmt: skip

    def _env(self) -> dict[str, str]:
        env = _clean_env(["MINIO_", "AWS_"])
        env.update(_MINIO_ENV)
        env["MINIO_ROOT_USER"] = self.access_key
        env["MINIO_ROOT_PASSWORD"] = self.secret_key
        env["MINIO_BROWSER"] = "on" if self.browser else "off"
        env.update(self.extra_env)
        return env

    def _probe(self) -> bool:
        # /minio/health/live answers 200 as soon as HTTP is up, even before the
        # object layer is initialised (it then sets x-minio-server-status:
        # offline); /minio/health/cluster is 200 only once S3 calls work.
        live = _http_status(f"{self.endpoint}/minio/health/live")
        if live is None or live[0] != 200:
            return False
        cluster = _http_status(f"{self.endpoint}/minio/health/cluster")
        return cluster is not None and cluster[0] == 200

    def client_kwargs(self) -> dict[str, str]:
        """kwargs for ``boto3.client("s3", **kwargs)`` / aioboto3."""
        return {
            "endpoint_url": self.endpoint,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "region_name": "us-east-1",
        }


class _MinioNode(MinioServer):
    """One node of a DistributedMinio; its server args are the pool's URLs."""

    def __init__(self, data_dir: Path, *, pool: DistributedMinio, index: int) -> None:
        super().__init__(
            data_dir,
            drives=[data_dir / "drive"],
            access_key=pool.access_key,
            secret_key=pool.secret_key,
            browser=pool.browser,
            env=pool.extra_env,
            start_timeout=pool.start_timeout,
        )
        self.name = f"minio-node{index}"
        self._pool = pool
        self._index = index

    def _pick_ports(self) -> None:  # ports are assigned by the pool
        pass

    def _env(self) -> dict[str, str]:
        env = super()._env()
        # In a container (/.dockerenv, /run/.containerenv or
        # KUBERNETES_SERVICE_HOST) MinIO treats the host as "orchestrated" and
        # waits forever for endpoints that resolve to loopback to resolve to a
        # real IP. _MINIO_SERVER_LOCAL (host:port) tells the node which
        # endpoint is its own, which ends that discovery loop; elsewhere it is
        # ignored.
        env["_MINIO_SERVER_LOCAL"] = f"127.0.0.1:{self.port}"
        return env

    def _server_args(self) -> list[str]:
        for node in self._pool.nodes:
            for d in node.drives:
                d.mkdir(parents=True, exist_ok=True)
        return self._pool.server_urls()


class DistributedMinio:
    """``nodes`` MinIO processes on 127.0.0.1, one drive each, one erasure set.

    Each node listens on its own port and serves a distinct drive path, and
    all of them get the same server argument list::

        minio server --address 127.0.0.1:P1 --console-address 127.0.0.1:C1
            http://127.0.0.1:P1/<dir>/node0/drive http://127.0.0.1:P2/<dir>/node1/drive ...

    (MinIO rejects the same path on two ports of one host, hence the distinct
    per-node paths.) With 4 nodes the default parity is EC:2, so reads and
    writes keep working with one node down.
    Nodes are indexed from 0; ``endpoint`` is node 0's.

    Measured caveats (this MinIO build): right after kill_node() a PUT through
    a surviving node may take ~1 s or fail once with SlowDownWrite until the
    peers mark the dead node offline; right after start_node() GETs through
    the restarted node may answer NoSuchKey for up to ~1 s while it
    reconnects. GETs through surviving nodes work at once. Tests should
    retry briefly around those transitions.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        nodes: int = 4,
        access_key: str = "gateway-test",
        secret_key: str | None = None,
        browser: bool = False,
        env: Mapping[str, str] | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        if nodes < 2:
            raise ValueError("distributed mode needs at least 2 nodes")
        self.data_dir = Path(data_dir).resolve()
        self.access_key = access_key
        self.secret_key = secret_key or secrets.token_hex(16)
        self.browser = browser
        self.extra_env = dict(env or {})
        self.start_timeout = start_timeout
        self.startup_seconds: float | None = None
        self.nodes: list[MinioServer] = []
        for i in range(nodes):
            self.nodes.append(_MinioNode(self.data_dir / f"node{i}", pool=self, index=i))
        used: set[int] = set()
        for node in self.nodes:
            for attr in ("port", "console_port"):
                p = free_port()
                while p in used:
                    p = free_port()
                used.add(p)
                setattr(node, attr, p)
            node._ports_fixed = True

    def server_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{n.port}{n.drives[0].as_posix()}" for n in self.nodes]

    @property
    def endpoint(self) -> str:
        return self.nodes[0].endpoint

    @property
    def endpoints(self) -> list[str]:
        return [n.endpoint for n in self.nodes]

    def client_kwargs(self, node: int = 0) -> dict[str, str]:
        return self.nodes[node].client_kwargs()

    def start(self) -> DistributedMinio:
        """Spawn all nodes (they wait for each other), then wait for each."""
        t0 = time.monotonic()
        try:
            for node in self.nodes:
                if not node.running:
                    node.spawn()
            deadline = time.monotonic() + self.start_timeout
            for node in self.nodes:
                node.wait_ready(timeout=max(0.0, deadline - time.monotonic()))
        except BaseException:
            self.kill()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def kill_node(self, i: int) -> None:
        """SIGKILL node ``i`` (0-based)."""
        self.nodes[i].kill()

    def stop_node(self, i: int) -> None:
        self.nodes[i].stop()

    def start_node(self, i: int) -> None:
        """Start node ``i`` again (same port and drive) and wait for it."""
        self.nodes[i].start()

    def stop(self) -> None:
        for node in self.nodes:
            if node.running:
                node._proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        for node in self.nodes:
            node.stop()

    def kill(self) -> None:
        for node in self.nodes:
            node.kill()

    def __enter__(self) -> DistributedMinio:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------
# FerretDB
# --------------------------------------------------------------------------


class FerretDBServer(_PeerProcess):
    """FerretDB (SQLite backend) on 127.0.0.1; data in ``data_dir / "sqlite"``."""

    name = "ferretdb"
    log_name = "ferretdb.log"

    def __init__(
        self,
        data_dir: Path,
        *,
        extra_args: Sequence[str] = (),
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        super().__init__(data_dir, start_timeout=start_timeout)
        self.sqlite_dir = self.data_dir / "sqlite"
        self.state_dir = self.data_dir / "state"
        self.extra_args = list(extra_args)
        self.port = 0

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    def _pick_ports(self) -> None:
        self.port = free_port()

    def _command(self) -> list[str]:
        self.sqlite_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        return [
            str(_require_binary("ferretdb")),
            "--handler=sqlite",
            f"--sqlite-url=file:{self.sqlite_dir.as_posix()}/",
            f"--listen-addr=127.0.0.1:{self.port}",
            f"--state-dir={self.state_dir}",
            "--telemetry=disable",
            "--debug-addr=-",  # no metrics/pprof HTTP listener
            *self.extra_args,
        ]

    def _env(self) -> dict[str, str]:
        env = _clean_env(["FERRETDB_"])
        env["DO_NOT_TRACK"] = "1"
        return env

    def _probe(self) -> bool:
        if not _tcp_connectable(self.port):
            return False
        import pymongo  # lazily: only needed when FerretDB is used

        client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
            self.url,
            directConnection=True,
            serverSelectionTimeoutMS=1000,
            connectTimeoutMS=1000,
        )
        try:
            client.admin.command("ping")
            return True
        except pymongo.errors.PyMongoError:
            return False
        finally:
            client.close()


def wait_until(predicate: Callable[[], bool], timeout: float, what: str = "condition") -> None:
    """Poll ``predicate`` every POLL_INTERVAL until true; TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not met within {timeout}s")
        time.sleep(POLL_INTERVAL)

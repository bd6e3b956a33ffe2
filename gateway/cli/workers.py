"""`gateway serve --workers N`: N processes accepting on one listening socket.

The parent binds the socket (so `--port 0` and a busy port behave as with one process), forks
the workers, which inherit it, and closes its own copy. The kernel hands each connection to one
waiting worker. SIGTERM or SIGINT to the parent is passed to every worker; each stops accepting,
lets its in-flight requests finish (up to the shutdown timeout) and closes its clients. A worker
that dies on its own takes the others down with it, so the supervisor (compose, systemd,
Kubernetes) sees the failure and restarts the whole server.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from gateway.config import Config

log = logging.getLogger("gateway")

Serve = Callable[[Config, socket.socket], Coroutine[Any, Any, None]]


def worker_count(raw: str) -> int:
    """argparse type: a positive number, or `auto` for one per CPU."""
    if raw == "auto":
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        count = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {raw!r}") from None
    if count < 1:
        raise argparse.ArgumentTypeError("at least 1 worker")
    return count


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=1024)


def _worker(serve: Serve, config: Config, sock: socket.socket) -> int:
    try:
        asyncio.run(serve(config, sock))
        return 0
    except KeyboardInterrupt:
        return 0
    except BaseException:
        log.exception("worker %d failed", os.getpid())
        return 1


def run(config: Config, count: int, serve: Serve, announce: Callable[[socket.socket], None]) -> int:
    sock = bind(config.server.host, config.server.port)
    announce(sock)
    sys.stdout.flush()
    sys.stderr.flush()
    children: set[int] = set()
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            os._exit(_worker(serve, config, sock))
        children.add(pid)
    sock.close()
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            _signal(child, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    status = 0
    while children:
        try:
            pid, wait_status = os.wait()
        except ChildProcessError:
            break
        children.discard(pid)
        code = os.waitstatus_to_exitcode(wait_status)
        if not stopping:
            log.error("worker %d exited (%d); stopping the others", pid, code)
            status = 1
            stop(signal.SIGTERM, None)
        elif code not in (0, -signal.SIGTERM, -signal.SIGINT):
            status = 1
    return status


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass

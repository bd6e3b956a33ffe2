"""`gateway serve`: the server's lifecycle, from binding the port to the last in-flight answer.

With `--workers N`, the parent binds the socket (so `--port 0` and a busy port behave as with one
process), forks the workers, which inherit it, and closes its own copy. The kernel hands each
connection to one waiting worker. SIGTERM or SIGINT to the parent is passed to every worker; each
stops accepting, lets its in-flight requests finish (up to the shutdown timeout) and closes its
clients. A worker that dies on its own takes the others down with it, so the supervisor (compose,
systemd, Kubernetes) sees the failure and restarts the whole server.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import socket
import sys
import time

from aiohttp import web

from gateway import __version__
from gateway.app import create_app
from gateway.cli import eventloop
from gateway.config import Config
from gateway.errors import GatewayError
from gateway.keys import IN_FLIGHT
from gateway.middlewares import HTTP_PARSER_LIMITS

log = logging.getLogger("gateway")

SHUTDOWN_TIMEOUT = 30
# The cyclic garbage collector's first threshold while serving (Python's default is 700): under
# load a young-generation pass ran every few dozen requests, each walking every request then in
# flight, and cost a third of a document GET's CPU (0.96 against 0.56 ms measured with 10,000).
# Most request objects are freed by reference counting anyway; cycles wait a little longer.
GC_THRESHOLD = (10_000, 10, 10)


def settle_garbage_collector() -> None:
    """Once the app has started: what start-up built (modules, clients, the routes) lives as long
    as the process, so it is frozen out of every later collection (a full one walked it all,
    pausing requests for over 100 ms), and young collections run less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


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


def run(config: Config, workers: int) -> int:
    """Serve until SIGTERM/SIGINT, in this process or in `workers` forked ones; the exit status."""
    try:
        if workers > 1:
            return _run_workers(config, workers)
        eventloop.run(serve(config))
    except OSError as exc:
        print(f"gateway: cannot serve on {config.server.host}:{config.server.port}: {exc.strerror}", file=sys.stderr)
        return 1
    except GatewayError as exc:
        print(f"gateway: cannot start: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


async def serve(config: Config, sock: socket.socket | None = None) -> None:
    """Serve until SIGTERM/SIGINT; on `sock` when given (a worker of `--workers`)."""
    runner = web.AppRunner(
        create_app(config), access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT, **HTTP_PARSER_LIMITS
    )  # fmt: skip
    await runner.setup()
    settle_garbage_collector()
    try:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if sock is not None:
            await web.SockSite(runner, sock).start()
            log.info("worker %d serving", os.getpid())
        else:
            await web.TCPSite(runner, config.server.host, config.server.port).start()
            addresses = runner.addresses
            host, port = addresses[0][:2] if addresses else (config.server.host, config.server.port)
            _announce(host, port)
        await stop.wait()
        log.info("shutting down: finishing in-flight requests")
        await drain(runner, timeout=SHUTDOWN_TIMEOUT)
    finally:
        # aiohttp's own shutdown: on_shutdown (which closes the event feeds), then cleanup_ctx
        # (which closes the clients).
        await runner.cleanup()


async def drain(runner: web.AppRunner, timeout: float) -> None:
    """Stop accepting, then wait (up to `timeout`) for in-flight requests to finish.

    aiohttp's own graceful shutdown stops reading from open connections at once, so a request
    whose body is still arriving could never complete; closing only the listeners first lets it.
    """
    for site in list(runner.sites):
        await site.stop()
    log.info("stopped accepting connections; %d requests in flight", len(runner.app[IN_FLIGHT]))
    deadline = time.monotonic() + timeout
    while _busy(runner) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


def _busy(runner: web.AppRunner) -> bool:
    if runner.app[IN_FLIGHT]:
        return True
    # A request between its `100 Continue` and our middlewares is not in IN_FLIGHT yet; aiohttp's
    # connection knows (private flags, hence the defaults). An upgraded connection is a feed.
    connections = runner.server.connections if runner.server is not None else []
    return any(getattr(c, "_request_in_progress", False) and not getattr(c, "_upgraded", False) for c in connections)


def _announce(host: str, port: int, workers: int | None = None) -> None:
    shown = f"[{host}]" if ":" in str(host) else host
    suffix = f" with {workers} workers" if workers is not None else ""
    print(f"image-gateway {__version__} serving on http://{shown}:{port}{suffix}", flush=True)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=1024)


def _worker(config: Config, sock: socket.socket) -> int:
    try:
        eventloop.run(serve(config, sock))
        return 0
    except KeyboardInterrupt:
        return 0
    except BaseException:
        log.exception("worker %d failed", os.getpid())
        return 1


def _run_workers(config: Config, count: int) -> int:
    sock = _bind(config.server.host, config.server.port)
    host, port = sock.getsockname()[:2]
    _announce(host, port, workers=count)
    sys.stdout.flush()
    sys.stderr.flush()
    children: set[int] = set()
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            os._exit(_worker(config, sock))
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

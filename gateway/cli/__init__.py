"""The `gateway` command: `gateway serve`, and the maintenance commands."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import sys
from dataclasses import replace
from pathlib import Path

from aiohttp import web

from gateway import __version__
from gateway.cli import maintenance
from gateway import metrics
from gateway.cli import logs, workers
from gateway.app import create_app
from gateway.config import Config, load_config
from gateway.edge import HTTP_PARSER_LIMITS
from gateway.errors import ConfigError, GatewayError

log = logging.getLogger("gateway")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="image-gateway: an image store over S3/MinIO or local disk")
    parser.add_argument("--version", action="version", version=f"image-gateway {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--config", type=Path, help="YAML configuration file (default: $GATEWAY_CONFIG or config/gateway.yaml)")
    serve.add_argument("--host", help="address to listen on (overrides configuration)")
    serve.add_argument("--port", type=int, help="port to listen on (overrides configuration and APP_PORT)")
    serve.add_argument("--workers", type=workers.worker_count, default=1, help="processes sharing the port: a number or 'auto' (one per CPU); default 1")
    maintenance.add_commands(commands)
    return parser


def _configure_logging(level: str, log_format: str = "auto") -> None:
    logs.configure(level, log_format)


def _announce(sock: socket.socket, count: int = 1) -> None:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in str(host) else host
    print(f"image-gateway {__version__} serving on http://{shown}:{port} with {count} workers", flush=True)


async def serve(config: Config, sock: socket.socket | None = None) -> None:
    """Serve until SIGTERM/SIGINT; on `sock` when given (a worker of `--workers`)."""
    runner = web.AppRunner(create_app(config), access_log=None, handle_signals=False, shutdown_timeout=30, **HTTP_PARSER_LIMITS)
    await runner.setup()
    try:
        if sock is not None:
            await web.SockSite(runner, sock).start()
        else:
            site = web.TCPSite(runner, config.server.host, config.server.port)
            await site.start()
            sockets = [s for s in runner.addresses]
            host, port = sockets[0][:2] if sockets else (config.server.host, config.server.port)
            shown = f"[{host}]" if ":" in str(host) else host
            print(f"image-gateway {__version__} serving on http://{shown}:{port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("shutting down: finishing in-flight requests")
        await metrics.drain(runner.app, runner, timeout=30)
    finally:
        # Stops accepting, lets in-flight requests finish, then runs cleanup_ctx (closes clients).
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command != "serve":
        return maintenance.run(config, args)
    if args.command == "serve":
        server = config.server
        config = replace(config, server=replace(server, host=args.host or server.host, port=server.port if args.port is None else args.port))
        _configure_logging(config.log_level, config.log_format)
        try:
            if args.workers > 1:
                return workers.run(config, args.workers, serve, lambda sock: _announce(sock, args.workers))
            asyncio.run(serve(config))
        except OSError as exc:
            print(f"gateway: cannot serve on {config.server.host}:{config.server.port}: {exc.strerror}", file=sys.stderr)
            return 1
        except GatewayError as exc:
            print(f"gateway: cannot start: {exc.message}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            pass
    return 0

"""The `gateway` command: `gateway serve`, and the maintenance commands."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from gateway import __version__
from gateway.cli import logs, maintenance, serve
from gateway.config import load_config
from gateway.errors import ConfigError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="image-gateway: an image store over S3/MinIO or local disk")
    parser.add_argument("--version", action="version", version=f"image-gateway {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serving = commands.add_parser("serve", help="run the HTTP server")
    serving.add_argument("--config", type=Path, help="YAML configuration file (default: $GATEWAY_CONFIG or config/gateway.yaml)")
    serving.add_argument("--host", help="address to listen on (overrides configuration)")
    serving.add_argument("--port", type=int, help="port to listen on (overrides configuration and APP_PORT)")
    serving.add_argument("--workers", type=serve.worker_count, default=1, help="processes sharing the port: a number or 'auto' (one per CPU); default 1")
    maintenance.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command != "serve":
        return maintenance.run(config, args)
    server = config.server
    config = replace(config, server=replace(server, host=args.host or server.host, port=server.port if args.port is None else args.port))
    logs.configure(config.log_level, config.log_format)
    return serve.run(config, args.workers)

"""The maintenance commands: `gateway reconcile`, `gateway import`, `gateway export`, `gateway migrate`.

They open the stores from the configuration exactly as the app does, and go through the same
`ImageService`, so their writes are ordered like any request's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from gateway.datasets.export import DirExport, ZipExport
from gateway.datasets.service import DEFAULT_CONCURRENCY, Datasets
from gateway.config import Config
from gateway.errors import GatewayError, Invalid
from gateway.metadata import migrate_metadata, open_metadata_store
from gateway.datasets.progress import Progress
from gateway.service.reconcile import DEFAULT_GRACE, OrderError, Reconciler
from gateway.service import ImageService
from gateway.storage import open_blob_store
from gateway.names import collection_name


def _collection(raw: str) -> str:
    try:
        return collection_name(raw)
    except Invalid as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def add_commands(commands: argparse._SubParsersAction) -> None:
    def command(name: str, text: str) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, help=text, description=text)
        parser.add_argument("--config", type=Path, help="YAML configuration file (default: $GATEWAY_CONFIG or config/gateway.yaml)")
        return parser

    reconcile = command("reconcile", "compare objects with records; report (and with --fix remove) what a failure left")
    reconcile.add_argument("--collection", type=_collection, help="only this collection")
    reconcile.add_argument("--fix", action="store_true", help="delete orphan objects and records without objects; finish interrupted drops")
    reconcile.add_argument("--verify", action="store_true", help="re-read every object and check it against the record's sha256")
    reconcile.add_argument("--grace", type=float, default=DEFAULT_GRACE.total_seconds(), metavar="SECONDS", help="ignore objects younger than this (uploads in flight; default %(default)s)")
    reconcile.add_argument("--json", action="store_true", help="print a machine-readable summary")

    load = command("import", "import a dataset (our export or the original service's) from a zip or a directory")
    load.add_argument("source", type=Path, metavar="DIR_OR_ZIP")
    load.add_argument("--collection", type=_collection, required=True)
    load.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY, help="images uploaded at once (default %(default)s)")

    dump = command("export", "export a collection's images and metadata to a zip or a directory")
    dump.add_argument("collection", type=_collection)
    dump.add_argument("target", type=Path, metavar="DIR_OR_ZIP")

    command(
        "migrate",
        "move records stored by an earlier release into the current layout (MongoDB: one collection per image "
        "collection); run it once with every gateway stopped; safe to run again or after a crash",
    )


@asynccontextmanager
async def _service(config: Config) -> AsyncIterator[ImageService]:
    async with open_blob_store(config) as blobs, open_metadata_store(config) as meta:
        yield ImageService(blobs, meta, config)


async def _reconcile(config: Config, args: argparse.Namespace) -> int:
    progress = Progress("reconcile", enabled=None if not args.json else False)
    async with _service(config) as service:
        total = 0
        for name in await service.meta.collections(include_dropping=True):
            if args.collection in (None, name):
                total += await service.meta.count(name, ())
        progress.total = total or None
        reconciler = Reconciler(
            service, fix=args.fix, verify=args.verify, grace=timedelta(seconds=args.grace),
            on_item=lambda s: progress.advance(s.records - progress.done, note=f"objects {s.objects} problems {s.remaining + s.fixed}"),
        )
        summary = await reconciler.run(args.collection)
    progress.close()
    if args.json:
        print(json.dumps(summary.as_dict(), indent=2))
    else:
        print(
            f"objects {summary.objects}, records {summary.records}, matched {summary.matched}, verified {summary.verified}; "
            f"orphan objects {summary.orphan_objects}, records without objects {summary.missing_objects}, "
            f"corrupt objects {summary.corrupt_objects}, unfinished drops {summary.unfinished_drops}, partial writes {summary.partial_writes}, "
            f"young objects skipped {summary.young_objects}; fixed {summary.fixed}, remaining {summary.remaining}"
        )
        for sample in summary.samples:
            if sample["state"] == "remaining":
                print(f"  {sample['problem']}: {sample['key']}")
    return 1 if summary.remaining else 0


async def _import(config: Config, args: argparse.Namespace) -> int:
    progress = Progress(f"import {args.collection}")
    try:
        async with _service(config) as service:
            summary = await Datasets(service).import_path(args.collection, args.source, concurrency=args.concurrency, progress=progress)
    finally:
        progress.close()
    print(json.dumps(summary.as_dict(), indent=2))
    return 1 if summary.rejected else 0


async def _export(config: Config, args: argparse.Namespace) -> int:
    progress = Progress(f"export {args.collection}")
    target: Path = args.target
    async with _service(config) as service:
        datasets = Datasets(service)
        await datasets.check_export(args.collection)
        if target.suffix.lower() == ".zip":
            partial = target.with_name(target.name + ".partial")
            with partial.open("wb") as handle:

                async def write(data: bytes) -> None:
                    await asyncio.to_thread(handle.write, data)

                counts = await datasets.export(args.collection, ZipExport(write), progress=progress)
            partial.replace(target)
        else:
            counts = await datasets.export(args.collection, DirExport(target), progress=progress)
    progress.close()
    print(json.dumps({"collection": args.collection, "target": str(target), **counts}))
    return 0


async def _migrate(config: Config, args: argparse.Namespace) -> int:
    print(json.dumps(await migrate_metadata(config)))
    return 0


def run(config: Config, args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    commands = {"reconcile": _reconcile, "import": _import, "export": _export, "migrate": _migrate}
    try:
        return asyncio.run(commands[args.command](config, args))
    except GatewayError as exc:
        print(f"gateway {args.command}: {exc.message}", file=sys.stderr)
        return 2
    except (OrderError, OSError) as exc:
        print(f"gateway {args.command}: {exc}", file=sys.stderr)
        return 2

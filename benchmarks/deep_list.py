"""Listing cost against collection size: records loaded straight into the metadata store (SQLite,
and FerretDB), then the queries a list page makes, timed one at a time:

- `first`: the 50 newest (what `GET .../images` asks for);
- `cursor20`: the page 20 cursor hops deep (the keyset after the 1,000th newest record);
- `owner`: the first page of one owner's records (the indexed field `auth.scope: user` filters on);
- `skip20`: the same depth as `cursor20` by `skip=1000`, which no index can jump;
- `count`: the X-Total-Count of the collection;
- `get`: one record by id (not a page: what every lookup costs, for comparison).

A second collection of the same size sits beside the measured one, so a layout whose pages cost
O(all records) shows it. On FerretDB the store keeps reads under the collection's revision
(`metadata.mongo_reads`): every timed run here first changes the revision, so each is a read of
the database, as the first read after a write is; `kept` is the first page read again under an
unchanged revision, what a page costs between writes. Each figure is the median wall time of `--repeat` runs (the store's
process is idle otherwise; FerretDB past 10,000 records: one run, as each takes about a minute)
and, for FerretDB, the CPU its process spent; the ratio is against
`first` at the smallest size. Target: `first`, `cursor20` and `owner` at 100,000 within 2x of
`first` at 1,000.

    .venv/bin/python benchmarks/deep_list.py [--sizes 1000,100000] [--repeat 3] [--backends sqlite,ferretdb]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.config import load_config  # noqa: E402
from gateway.metadata import open_metadata_store  # noqa: E402
from gateway.metadata.base import ImageRecord, MetadataStore  # noqa: E402
from gateway.metadata.query import Cursor, ListQuery, owned_by  # noqa: E402
from tests.peers import FerretDBServer  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
START = datetime(2026, 1, 1, tzinfo=timezone.utc)
OWNERS = 10
PAGE = 50
DEPTH = 20 * PAGE


def cpu_seconds(pid: int | None) -> float:
    if pid is None:
        return time.process_time()
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def record(collection: str, index: int) -> ImageRecord:
    """The index-th record of a collection: one a millisecond, ids in time order as ours are."""
    at = START + timedelta(milliseconds=index)
    ident = f"{int(at.timestamp()):08x}{index:016x}"
    return ImageRecord(
        collection=collection, id=ident, image=f"{ident}.jpg", time=at, updated_at=at, content_type="image/jpeg",
        format="jpeg", width=640, height=480, size=100_000, sha256=f"{index:064x}", path=f"{collection}/{ident}.jpg",
        properties={"camera": f"c{index % 7}", "index": index}, owner=f"user{index % OWNERS}",
    )


async def load(store: MetadataStore, collection: str, count: int) -> None:
    await store.ensure_collection(collection)
    bulk: Callable[[list[ImageRecord]], Awaitable[None]] | None = getattr(store, "insert_many", None)
    batch = 1000
    for start in range(0, count, batch):
        records = [record(collection, i) for i in range(start, min(count, start + batch))]
        if bulk is not None:
            await bulk(records)
        else:
            await asyncio.gather(*(store.insert(r) for r in records))


async def measure(store: MetadataStore, size: int, repeat: int, pid: int | None) -> dict[str, tuple[float, float]]:
    # The last record of the 20th page, newest first (of the last full page in a collection too
    # small for 20).
    depth = min(DEPTH, size - PAGE - 1)
    deep = record("deep", size - 1 - depth)
    queries: dict[str, Callable[[], Awaitable[Any]]] = {
        "first": lambda: store.find("deep", ListQuery(limit=PAGE + 1)),
        "cursor20": lambda: store.find("deep", ListQuery(limit=PAGE + 1, after=Cursor(deep.time, deep.id))),
        "owner": lambda: store.find("deep", owned_by(ListQuery(limit=PAGE + 1), "user3")),
        "skip20": lambda: store.find("deep", ListQuery(limit=PAGE + 1, skip=depth)),
        "count": lambda: store.count("deep", ()),
        "get": lambda: store.get("deep", deep.id),
    }
    reads = getattr(store, "reads", None)
    if reads is not None:
        queries["kept"] = queries["first"]
    results: dict[str, tuple[float, float]] = {}
    for name, query in queries.items():
        walls, cpus = [], []
        if name == "kept":
            await query()
        for _ in range(repeat):
            if reads is not None and name != "kept":
                await reads.changed("deep")
            cpu0, wall0 = cpu_seconds(pid), time.perf_counter()
            answer = await query()
            walls.append(time.perf_counter() - wall0)
            cpus.append(cpu_seconds(pid) - cpu0)
        if name == "cursor20":
            assert answer and answer[0].id == record("deep", size - 2 - depth).id, "the cursor page starts after its cursor"
        results[name] = (statistics.median(walls) * 1000, statistics.median(cpus) * 1000)
    return results


async def run_backend(backend: str, sizes: list[int], repeat: int, workdir: Path) -> dict[int, dict[str, tuple[float, float]]]:
    figures: dict[int, dict[str, tuple[float, float]]] = {}
    ferret = FerretDBServer(workdir / "ferret").start() if backend == "ferretdb" else None
    try:
        for size in sizes:
            overrides: dict[str, Any] = {"data_dir": str(workdir / f"{backend}-{size}")}
            if ferret is not None:
                overrides["metadata"] = {"backend": "mongodb", "mongodb_url": ferret.url, "mongodb_db": f"deep{size}"}
            config = load_config(environ={}, overrides=overrides)
            async with open_metadata_store(config) as store:
                started = time.perf_counter()
                await load(store, "deep", size)
                await load(store, "other", size)
                print(f"  {backend}: loaded 2 x {size} records in {time.perf_counter() - started:.1f} s", flush=True)
                # FerretDB reads the whole collection for each of these: one run each past 10,000.
                runs = 1 if ferret is not None and size > 10_000 else repeat
                figures[size] = await measure(store, size, runs, ferret.pid if ferret else None)
    finally:
        if ferret is not None:
            ferret.stop()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,100000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,ferretdb")
    args, _ = parser.parse_known_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    verdicts = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends.split(","):
            figures = asyncio.run(run_backend(backend, sizes, args.repeat, Path(tmp)))
            base = figures[sizes[0]]["first"][0]
            what = "ms wall (ms CPU of FerretDB)" if backend == "ferretdb" else "ms wall (ms CPU of this process)"
            print(f"{backend}: median of {args.repeat}, {what}; ratio to `first` at {sizes[0]}")
            print(f"  {'query':<10}" + "".join(f" {size:>26,}" for size in sizes))
            for name in figures[sizes[0]]:
                cells = "".join(f" {figures[s][name][0]:9.2f} ({figures[s][name][1]:7.2f}) {figures[s][name][0] / base:5.1f}x" for s in sizes)
                print(f"  {name:<10}{cells}")
            top = figures[sizes[-1]]
            for name in ("first", "cursor20", "owner"):
                ratio = top[name][0] / base
                verdicts.append(f"{backend}.{name}={ratio:.1f}x{'' if ratio <= 2 else '(MISS)'}")
            verdicts.append(" ".join(f"{backend}.{name}={top[name][0] / base:.1f}x" for name in ("skip20", "count", "get", "kept") if name in top))
    print(f"SUMMARY deep_list at {sizes[-1]} vs first page at {sizes[0]} (target <= 2x): {' '.join(verdicts)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Load against real MinIO and FerretDB: thousands of uploads with concurrent reads, listings and
deletes, then every acknowledged image verified byte for byte and `gateway reconcile` run.

The gateway runs as its own process (`python -m gateway serve`), as in production. Printed:
counts (acknowledged, deleted, verified, lost, orphaned) and throughput. The run fails (exit 1)
if any acknowledged image is lost or reconcile finds anything.

    .venv/bin/python benchmarks/load.py [--images 3000] [--uploaders 12] [--readers 4] [--listers 2] [--deleters 2]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers import jpeg, png  # noqa: E402
from tests.peers import FerretDBServer, MinioServer, free_port  # noqa: E402

COLLECTION = "load"


class Ledger:
    def __init__(self) -> None:
        self.uploaded: dict[str, str] = {}
        self.deleted: set[str] = set()
        self.bytes_up = 0
        self.reads = 0
        self.bytes_read = 0
        self.listings = 0
        self.errors: list[str] = []


async def uploader(session: aiohttp.ClientSession, base: str, ledger: Ledger, queue: list[int]) -> None:
    while queue:
        index = queue.pop()
        rng = random.Random(index)
        make = png if index % 2 else jpeg
        image = make((rng.randint(16, 640), rng.randint(16, 480)), seed=index)
        form = aiohttp.FormData()
        form.add_field("json", json.dumps({"index": index, "label": rng.choice(["cat", "dog", "bird"])}))
        form.add_field("image", image, filename=f"{index}.img", content_type="application/octet-stream")
        async with session.post(f"{base}/collections/{COLLECTION}/images", data=form) as response:
            if response.status != 200:
                ledger.errors.append(f"upload {index}: {response.status} {await response.text()}")
                continue
            doc = await response.json()
        if doc["sha256"] != hashlib.sha256(image).hexdigest():
            ledger.errors.append(f"upload {index}: the acknowledged sha256 is not the image's")
        ledger.uploaded[doc["id"]] = doc["sha256"]
        ledger.bytes_up += len(image)


async def download(session: aiohttp.ClientSession, base: str, image_id: str) -> tuple[int, bytes]:
    async with session.get(f"{base}/collections/{COLLECTION}/images/{image_id}/image") as response:
        return response.status, await response.read()


async def reader(session: aiohttp.ClientSession, base: str, ledger: Ledger, done: asyncio.Event, rng: random.Random) -> None:
    while not done.is_set():
        candidates = [i for i in ledger.uploaded if i not in ledger.deleted]
        if not candidates:
            await asyncio.sleep(0.01)
            continue
        image_id = rng.choice(candidates)
        status, data = await download(session, base, image_id)
        if status == 200:
            ledger.reads += 1
            ledger.bytes_read += len(data)
            if hashlib.sha256(data).hexdigest() != ledger.uploaded[image_id]:
                ledger.errors.append(f"read {image_id}: bytes differ from the acknowledged sha256")
        elif image_id not in ledger.deleted:
            # A delete is entered in the ledger before it is sent, so only an undeleted image
            # that cannot be read is an error.
            ledger.errors.append(f"read {image_id}: {status}")


async def lister(session: aiohttp.ClientSession, base: str, ledger: Ledger, done: asyncio.Event) -> None:
    rounds = 0
    while not done.is_set():
        rounds += 1
        # Mostly plain pages (an index serves them); every fifth walk filters on a property,
        # which FerretDB answers by scanning.
        url: str | None = f"{base}/collections/{COLLECTION}/images?limit=200"
        if rounds % 5 == 0:
            url += "&filter=" + json.dumps({"label": "cat"})
        while url and not done.is_set():
            async with session.get(url) as response:
                if response.status != 200:
                    ledger.errors.append(f"list: {response.status}")
                    break
                await response.json()
                ledger.listings += 1
                url = response.links.get("next", {}).get("url") if response.links else None  # type: ignore[assignment]
                url = str(url) if url else None


async def deleter(session: aiohttp.ClientSession, base: str, ledger: Ledger, done: asyncio.Event, rng: random.Random) -> None:
    while not done.is_set():
        candidates = [i for i in ledger.uploaded if i not in ledger.deleted]
        if len(candidates) < 20 or rng.random() > 0.1:
            await asyncio.sleep(0.01)
            continue
        image_id = rng.choice(candidates)
        ledger.deleted.add(image_id)
        async with session.delete(f"{base}/collections/{COLLECTION}/images/{image_id}") as response:
            if response.status not in (200, 404):
                ledger.errors.append(f"delete {image_id}: {response.status}")


async def start_gateway(config: Path, base: str, log: Path) -> asyncio.subprocess.Process:
    with log.open("w") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "serve", "--config", str(config), stdout=asyncio.subprocess.DEVNULL, stderr=stderr
        )
    async with aiohttp.ClientSession() as session:
        for _ in range(600):
            try:
                async with session.get(base + "/collections") as response:
                    if response.status == 200:
                        return process
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    process.kill()
    raise SystemExit("the gateway did not start")


async def run(args: argparse.Namespace, minio: MinioServer, ferretdb: FerretDBServer, workdir: Path) -> int:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = workdir / "gateway.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(workdir / "data"),
                "log_level": "warning",
                "server": {"host": "127.0.0.1", "port": port},
                "storage": {"backend": "s3", "s3": {"endpoint_url": minio.endpoint, "bucket": "load", "access_key_id": minio.access_key, "secret_access_key": minio.secret_key}},
                "metadata": {"backend": "mongodb", "mongodb_url": ferretdb.url, "mongodb_db": "load"},
            }
        )
    )
    log = workdir / "gateway.log"
    process = await start_gateway(config, base, log)
    ledger = Ledger()
    rng = random.Random(args.seed)
    try:
        connector = aiohttp.TCPConnector(limit=200)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
            done = asyncio.Event()
            queue = list(range(args.images))
            background = [
                *(asyncio.create_task(reader(session, base, ledger, done, random.Random(rng.random()))) for _ in range(args.readers)),
                *(asyncio.create_task(lister(session, base, ledger, done)) for _ in range(args.listers)),
                *(asyncio.create_task(deleter(session, base, ledger, done, random.Random(rng.random()))) for _ in range(args.deleters)),
            ]
            started = time.perf_counter()
            await asyncio.gather(*(uploader(session, base, ledger, queue) for _ in range(args.uploaders)))
            elapsed = time.perf_counter() - started
            done.set()
            await asyncio.gather(*background)

            verify_started = time.perf_counter()
            live = [i for i in ledger.uploaded if i not in ledger.deleted]
            lost: list[str] = []
            semaphore = asyncio.Semaphore(16)

            async def check(image_id: str) -> None:
                async with semaphore:
                    status, data = await download(session, base, image_id)
                if status != 200 or hashlib.sha256(data).hexdigest() != ledger.uploaded[image_id]:
                    lost.append(image_id)

            await asyncio.gather(*(check(i) for i in live))
            gone_but_present = 0
            for image_id in ledger.deleted:
                async with session.get(f"{base}/collections/{COLLECTION}/images/{image_id}") as response:
                    gone_but_present += response.status != 404
            verify_elapsed = time.perf_counter() - verify_started
            async with session.get(f"{base}/collections/{COLLECTION}/images?limit=1") as response:
                stored = int(response.headers["X-Total-Count"])
    finally:
        process.terminate()
        await process.wait()

    reconcile = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "reconcile", "--config", str(config), "--grace", "0", "--verify", "--json",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await reconcile.communicate()
    summary = json.loads(out)

    mib = 1024 * 1024
    print(f"uploads acknowledged  {len(ledger.uploaded)} of {args.images} in {elapsed:.1f}s: {len(ledger.uploaded) / elapsed:.0f}/s, {ledger.bytes_up / mib / elapsed:.2f} MiB/s")
    print(f"concurrent reads      {ledger.reads} ({ledger.reads / elapsed:.0f}/s, {ledger.bytes_read / mib:.0f} MiB), listing pages {ledger.listings}, deletes {len(ledger.deleted)}")
    print(f"verified byte for byte {len(live) - len(lost)} of {len(live)} live images in {verify_elapsed:.1f}s; lost {len(lost)}; deleted but still present {gone_but_present}; stored {stored}")
    print(
        f"reconcile --verify     objects {summary['objects']}, records {summary['records']}, verified {summary['verified']}, "
        f"orphan objects {summary['orphan_objects']}, records without objects {summary['missing_objects']}, corrupt {summary['corrupt_objects']}"
    )
    warnings = log.read_text().splitlines()
    print(f"gateway log lines      {len(warnings)}" + (f", first: {warnings[0][:200]}" if warnings else ""))
    for error in ledger.errors[:10]:
        print("error:", error)
    failed = lost or gone_but_present or ledger.errors or summary["remaining"] or stored != len(live)
    print("RESULT", "FAIL" if failed else "OK: zero lost, zero orphaned")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--uploaders", type=int, default=12)
    parser.add_argument("--readers", type=int, default=4)
    parser.add_argument("--listers", type=int, default=2)
    parser.add_argument("--deleters", type=int, default=2)
    parser.add_argument("--seed", type=int, default=6)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gateway-load-") as folder:
        workdir = Path(folder)
        (workdir / "minio").mkdir()
        (workdir / "ferretdb").mkdir()
        with MinioServer(workdir / "minio") as minio, FerretDBServer(workdir / "ferretdb") as ferretdb:
            os.environ.pop("GATEWAY_CONFIG", None)
            return asyncio.run(run(args, minio, ferretdb, workdir))


if __name__ == "__main__":
    sys.exit(main())

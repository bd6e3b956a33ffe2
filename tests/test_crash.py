"""Crash test with real processes: `python -m gateway serve` against MinIO and FerretDB is killed
with SIGKILL at random points (seeded) while a client streams uploads and deletes; after a
restart and `gateway reconcile --fix`, every acknowledged upload is downloadable with its
`sha256`, every acknowledged delete is gone, and reconcile finds nothing left to repair."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
import yaml

from tests import peers
from tests.helpers import png, unique

pytestmark = pytest.mark.peers

SEED = int(os.environ.get("GATEWAY_CRASH_SEED", "20261123"))
KILLS = 10
CLIENTS = 6
START_TIMEOUT = 30.0


def write_config(tmp_path: Path, minio: peers.MinioServer, ferretdb: peers.FerretDBServer, port: int) -> Path:
    config = {
        "data_dir": str(tmp_path / "data"),
        "log_level": "warning",
        "server": {"host": "127.0.0.1", "port": port},
        "storage": {
            "backend": "s3",
            "s3": {"endpoint_url": minio.endpoint, "bucket": unique("crash"), "access_key_id": minio.access_key, "secret_access_key": minio.secret_key},
        },
        "metadata": {"backend": "mongodb", "mongodb_url": ferretdb.url, "mongodb_db": unique("crash").replace("-", "_")},
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def gateway_env() -> dict[str, str]:
    # Only the config file speaks: no stray S3_/MONGODB_ variables from the developer's shell.
    return {k: v for k, v in os.environ.items() if not k.startswith(("S3_", "AWS_", "MONGODB_", "STORAGE_", "METADATA_", "APP_"))}


@asynccontextmanager
async def gateway(config: Path, base: str) -> AsyncIterator[asyncio.subprocess.Process]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "serve", "--config", str(config),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, env=gateway_env(),
    )
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(int(START_TIMEOUT / 0.05)):
                try:
                    async with session.get(base + "/collections") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert process.returncode is None, "the gateway exited during start-up"
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the gateway did not start")
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


class Ledger:
    """What the client was told: acknowledged uploads (id -> sha256) and deletes, and the deletes
    sent whose answer never came (those images may or may not exist; if they do, whole)."""

    def __init__(self) -> None:
        self.uploaded: dict[str, str] = {}
        self.deleted: set[str] = set()
        self.deleting: set[str] = set()
        self.failed = 0

    def live(self) -> list[str]:
        return [i for i in self.uploaded if i not in self.deleted and i not in self.deleting]


async def client_loop(base: str, rng: random.Random, ledger: Ledger, stop: asyncio.Event) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        while not stop.is_set():
            try:
                live = ledger.live()
                if live and rng.random() < 0.3:
                    target = rng.choice(live)
                    # Known only once answered: aiohttp resends an idempotent request when the
                    # connection drops, so even a refused DELETE may have reached the gateway.
                    ledger.deleting.add(target)
                    async with session.delete(f"{base}/collections/crash/images/{target}") as response:
                        if response.status in (200, 404):
                            ledger.deleted.add(target)
                            ledger.deleting.discard(target)
                    continue
                image = png((rng.randint(8, 400), rng.randint(8, 300)), seed=rng.randint(0, 10_000))
                form = aiohttp.FormData()
                form.add_field("n", str(rng.randint(0, 1000)))
                form.add_field("image", image, filename="a.png", content_type="image/png")
                async with session.post(f"{base}/collections/crash/images", data=form) as response:
                    if response.status == 200:
                        doc = await response.json()
                        assert doc["sha256"] == hashlib.sha256(image).hexdigest()
                        ledger.uploaded[doc["id"]] = doc["sha256"]
                    else:
                        ledger.failed += 1
            except (aiohttp.ClientError, asyncio.TimeoutError):
                # The gateway died under this request: its outcome is unknown to the client.
                ledger.failed += 1


async def run_gateway_command(config: Path, *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", *args, "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=gateway_env(),
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode() + err.decode()


async def test_sigkill_during_uploads_and_deletes_loses_nothing(minio: peers.MinioServer, ferretdb: peers.FerretDBServer, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    port = peers.free_port()
    base = f"http://127.0.0.1:{port}"
    config = write_config(tmp_path, minio, ferretdb, port)
    ledger = Ledger()
    for _ in range(KILLS):
        async with gateway(config, base) as process:
            stop = asyncio.Event()
            clients = [asyncio.create_task(client_loop(base, random.Random(rng.random()), ledger, stop)) for _ in range(CLIENTS)]
            await asyncio.sleep(rng.uniform(0.3, 1.5))
            process.send_signal(signal.SIGKILL)
            stop.set()
            await process.wait()
            await asyncio.gather(*clients)

    status, output = await run_gateway_command(config, "reconcile", "--fix", "--grace", "0", "--json")
    assert status == 0, output
    repaired = json.loads(output[: output.rindex("}") + 1])
    status, output = await run_gateway_command(config, "reconcile", "--verify", "--grace", "0", "--json")
    assert status == 0, output
    after = json.loads(output[: output.rindex("}") + 1])
    assert after["remaining"] == 0 and after["orphan_objects"] == after["missing_objects"] == after["corrupt_objects"] == 0

    lost: list[str] = []
    async with gateway(config, base), aiohttp.ClientSession() as session:
        for image_id in ledger.live():
            async with session.get(f"{base}/collections/crash/images/{image_id}/image") as response:
                data = await response.read() if response.status == 200 else b""
            if hashlib.sha256(data).hexdigest() != ledger.uploaded[image_id]:
                async with session.get(f"{base}/collections/crash/images/{image_id}") as doc:
                    lost.append(f"{image_id}: download {response.status}, document {doc.status}")
        for image_id in ledger.deleted:
            async with session.get(f"{base}/collections/crash/images/{image_id}") as response:
                assert response.status == 404, image_id
        async with session.get(f"{base}/collections/crash/images?limit=1") as response:
            stored = int(response.headers["X-Total-Count"])
    print(
        f"\ncrash test (seed {SEED}): {KILLS} SIGKILLs, {len(ledger.uploaded)} uploads acknowledged, "
        f"{len(ledger.deleted)} deletes acknowledged, {ledger.failed} requests cut off "
        f"({len(ledger.deleting)} deletes unanswered); reconcile fixed "
        f"{repaired['fixed']} (orphan objects {repaired['orphan_objects']}, records without objects "
        f"{repaired['missing_objects']}); {stored} images stored, {len(ledger.live())} expected at least; "
        f"lost {len(lost)}, verified {after['verified']}"
    )
    assert not lost, f"acknowledged uploads lost: {lost}"
    assert stored >= len(ledger.live())
    assert len(ledger.uploaded) > 20, "the load was too light to mean anything"

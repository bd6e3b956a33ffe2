"""The gateway's cost against the least any server could do, each baseline measured in the same run
on the same MinIO and FerretDB, the gateway as its own process (`python -m gateway serve`):

- `/image` redirect vs a bare aiohttp app answering a constant 302 (same Location), 64 connections;
- document GET vs a bare aiohttp app answering the same document as constant JSON, 64 connections;
- 1 MB upload (multipart POST, 8 in flight) vs direct `put_object` of the same bytes to MinIO;
- server RSS growth while one 200 MB image uploads;
- the CPU cost of one presigned URL (and of a reused one).

The bare apps run on the event loop the gateway runs on (uvloop when installed), so the ratios
measure the gateway's own work. Ratios are throughput ours/baseline (>1 = ours faster) and p99
ours/baseline; `cpu` is the server's CPU ms per request. The last line sums up against the targets:

    .venv/bin/python benchmarks/targets.py [--seconds 5] [--uploads 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aioboto3
import aiohttp
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers import noisy_jpeg  # noqa: E402
from tests.peers import FerretDBServer, MinioServer, free_port  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
MiB = 1024 * 1024
BARE_APP = r"""
import sys
from aiohttp import web
from gateway.cli import eventloop
location, document = sys.argv[2], sys.argv[3].encode()
async def found(request):
    return web.Response(status=302, headers={"Location": location})
async def doc(request):
    return web.Response(body=document, content_type="application/json", charset="utf-8")
async def main():
    app = web.Application()
    app.router.add_get("/image", found)
    app.router.add_get("/doc", doc)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", int(sys.argv[1])).start()
    print("ready", flush=True)
    await asyncio.Event().wait()
import asyncio
eventloop.run(main())
"""


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


@dataclass
class Result:
    name: str
    ops: float
    p50_ms: float
    p99_ms: float
    cpu_ms: float

    def row(self) -> str:
        return f"  {self.name:<44} {self.ops:9.1f}/s  p50 {self.p50_ms:7.2f} ms  p99 {self.p99_ms:7.2f} ms  cpu {self.cpu_ms:6.3f} ms/op"


async def hammer(name: str, pid: int, connections: int, seconds: float, one: Callable[[aiohttp.ClientSession], Awaitable[None]]) -> Result:
    """`connections` loops each doing `one` back to back for `seconds`; the server's CPU per op."""
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        # Open the connections before measuring.
        await asyncio.gather(*(one(session) for _ in range(connections)))
        deadline = time.perf_counter() + seconds

        async def loop() -> None:
            while (started := time.perf_counter()) < deadline:
                await one(session)
                latencies.append(time.perf_counter() - started)

        cpu0, wall0 = cpu_seconds(pid), time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(connections)))
        cpu1, wall1 = cpu_seconds(pid), time.perf_counter()
    cuts = statistics.quantiles(latencies, n=100)
    return Result(name, len(latencies) / (wall1 - wall0), cuts[49] * 1000, cuts[98] * 1000, (cpu1 - cpu0) * 1000 / len(latencies))


async def batch(name: str, pid: int | None, count: int, concurrency: int, one: Callable[[int], Awaitable[None]]) -> Result:
    latencies: list[float] = []
    todo = iter(range(count))

    async def worker() -> None:
        for index in todo:
            started = time.perf_counter()
            await one(index)
            latencies.append(time.perf_counter() - started)

    # Without a server process, the CPU is this process's: the SDK's own work for a direct call.
    cpu0 = cpu_seconds(pid) if pid else time.process_time()
    wall0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - wall0
    cpu = (cpu_seconds(pid) if pid else time.process_time()) - cpu0
    cuts = statistics.quantiles(latencies, n=100)
    return Result(name, count / wall, cuts[49] * 1000, cuts[98] * 1000, cpu * 1000 / count)


def bmp_header(width: int, height: int) -> bytes:
    row = (width * 3 + 3) // 4 * 4
    size = 54 + row * height
    return b"BM" + struct.pack("<IHHI", size, 0, 0, 54) + struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, row * height, 2835, 2835, 0, 0)


async def big_image(width: int, height: int) -> AsyncIterator[bytes]:
    yield bmp_header(width, height)
    remaining = (width * 3 + 3) // 4 * 4 * height
    block = bytes(MiB)
    while remaining:
        step = min(remaining, MiB)
        yield block[:step]
        remaining -= step


async def start(command: list[str], ready: Callable[[], Awaitable[bool]], log: Path) -> asyncio.subprocess.Process:
    with log.open("w") as stderr:
        process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.DEVNULL, stderr=stderr)
    for _ in range(600):
        if await ready():
            return process
        await asyncio.sleep(0.05)
    process.kill()
    raise SystemExit(f"{command[:3]} did not start; see {log}")


async def answers(url: str) -> bool:
    try:
        async with aiohttp.ClientSession() as session, session.get(url, allow_redirects=False) as response:
            return response.status < 500
    except aiohttp.ClientError:
        return False


async def presign_cost(minio: MinioServer, workdir: Path) -> tuple[float, float]:
    """Microseconds of CPU per presigned URL: signed anew, and handed out again from the cache."""
    from gateway.caches import ExpiringCache
    from gateway.config import load_config
    from gateway.storage import open_blob_store

    config = load_config(environ={}, overrides={
        "data_dir": str(workdir / "presign"),
        "storage": {"backend": "s3", "s3": {"endpoint_url": minio.endpoint, "bucket": "presign", "access_key_id": minio.access_key, "secret_access_key": minio.secret_key}},
    })  # fmt: skip
    count = 2000
    async with open_blob_store(config) as blobs:
        await blobs.presign("bench/x.jpg", ttl=3600, content_type="image/jpeg", filename="x.jpg")
        started = time.process_time()
        for index in range(count):
            await blobs.presign(f"bench/{index:024x}.jpg", ttl=3600, content_type="image/jpeg", filename="x.jpg")
        signed = (time.process_time() - started) / count * 1e6
    cache: ExpiringCache[str] = ExpiringCache(60, 10_000)
    cache.put(("bench/x.jpg", "image/jpeg", "x.jpg"), "https://example/x")
    started = time.process_time()
    for _ in range(count * 10):
        cache.get(("bench/x.jpg", "image/jpeg", "x.jpg"))
    reused = (time.process_time() - started) / (count * 10) * 1e6
    return signed, reused


async def run(args: argparse.Namespace, minio: MinioServer, ferretdb: FerretDBServer, workdir: Path) -> int:
    port, bare_port = free_port(), free_port()
    base, bare = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{bare_port}"
    width, height = 8192, 8534  # a 24-bit BMP of 200 MiB
    config = workdir / "gateway.yaml"
    config.write_text(yaml.safe_dump({
        "data_dir": str(workdir / "data"),
        "server": {"host": "127.0.0.1", "port": port},
        "log_level": "WARNING",
        "limits": {"max_upload_bytes": 256 * MiB, "max_image_pixels": width * height},
        "storage": {"backend": "s3", "s3": {"endpoint_url": minio.endpoint, "bucket": "targets", "access_key_id": minio.access_key, "secret_access_key": minio.secret_key}},
        "metadata": {"backend": "mongodb", "mongodb_url": ferretdb.url, "mongodb_db": "targets"},
    }))  # fmt: skip
    gateway = await start([sys.executable, "-m", "gateway", "serve", "--config", str(config)], lambda: answers(base + "/health"), workdir / "gateway.log")
    payload = noisy_jpeg((900, 900))  # about 1 MB
    results: dict[str, tuple[Result, Result]] = {}
    try:
        async with aiohttp.ClientSession() as session:
            form = aiohttp.FormData()
            form.add_field("image", noisy_jpeg((64, 64)), filename="small.jpg", content_type="image/jpeg")
            async with session.post(base + "/collections/bench/images", data=form) as response:
                assert response.status == 200, await response.text()
                doc_path = f"/collections/bench/images/{(await response.json())['id']}"
            async with session.get(base + doc_path) as response:
                document = await response.read()
            async with session.get(base + doc_path + "/image", allow_redirects=False) as response:
                location = response.headers["Location"]
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
        bare_app = await asyncio.create_subprocess_exec(
            sys.executable, "-c", BARE_APP, str(bare_port), location, document.decode(), env=env, stdout=asyncio.subprocess.PIPE
        )
        assert bare_app.stdout is not None and b"ready" in await bare_app.stdout.readline()
        try:
            def get(url: str, status: int) -> Callable[[aiohttp.ClientSession], Awaitable[None]]:
                async def one(session: aiohttp.ClientSession) -> None:
                    async with session.get(url, allow_redirects=False) as response:
                        await response.read()
                        assert response.status == status, response.status

                return one

            c, s = args.connections, args.seconds
            results["redirect"] = (
                await hammer("gateway GET .../image (302)", gateway.pid, c, s, get(base + doc_path + "/image", 302)),
                await hammer("bare aiohttp constant 302", bare_app.pid, c, s, get(bare + "/image", 302)),
            )
            results["document"] = (
                await hammer("gateway GET document", gateway.pid, c, s, get(base + doc_path, 200)),
                await hammer("bare aiohttp constant JSON", bare_app.pid, c, s, get(bare + "/doc", 200)),
            )
        finally:
            bare_app.terminate()
            await bare_app.wait()

        s3session = aioboto3.Session()
        async with s3session.client("s3", endpoint_url=minio.endpoint, region_name="us-east-1",
                                    aws_access_key_id=minio.access_key, aws_secret_access_key=minio.secret_key) as s3:  # fmt: skip
            await s3.create_bucket(Bucket="direct")
            async with aiohttp.ClientSession() as session:

                async def through_gateway(index: int) -> None:
                    form = aiohttp.FormData()
                    form.add_field("image", payload, filename=f"u{index}.jpg", content_type="image/jpeg")
                    async with session.post(base + "/collections/uploads/images", data=form) as response:
                        assert response.status == 200, await response.text()

                async def direct(index: int) -> None:
                    await s3.put_object(Bucket="direct", Key=f"uploads/{index}.jpg", Body=payload, ContentType="image/jpeg")

                await batch("warm", None, 16, 8, through_gateway)
                await batch("warm", None, 16, 8, direct)
                results["upload"] = (
                    await batch(f"gateway POST 1 MB ({len(payload)} B), 8 in flight", gateway.pid, args.uploads, 8, through_gateway),
                    await batch("direct put_object, 8 in flight (cpu: the SDK's)", None, args.uploads, 8, lambda i: direct(i + 1000)),
                )

                before = rss_bytes(gateway.pid)
                peak = before
                done = asyncio.Event()

                async def sample() -> None:
                    nonlocal peak
                    while not done.is_set():
                        peak = max(peak, rss_bytes(gateway.pid))
                        await asyncio.sleep(0.02)

                sampler = asyncio.create_task(sample())
                form = aiohttp.FormData()
                form.add_field("image", big_image(width, height), filename="big.bmp", content_type="image/bmp")
                started = time.perf_counter()
                async with session.post(base + "/collections/big/images", data=form, timeout=aiohttp.ClientTimeout(total=600)) as response:
                    assert response.status == 200, await response.text()
                    big = await response.json()
                big_seconds = time.perf_counter() - started
                done.set()
                await sampler
    finally:
        gateway.terminate()
        await gateway.wait()
    signed_us, reused_us = await presign_cost(minio, workdir)

    print(f"{args.connections} connections, {args.seconds:g} s per read run; {args.uploads} uploads per upload run")
    for key, (ours, baseline) in results.items():
        print(ours.row())
        print(baseline.row())
        print(f"  {'ratio ours/baseline':<44} {ours.ops / baseline.ops:9.2f}x   p99 {ours.p99_ms / baseline.p99_ms:5.2f}x")
    growth = (peak - before) / MiB
    print(f"  200 MB upload: {big['size'] / MiB:.0f} MiB in {big_seconds:.1f} s; server RSS {before / MiB:.0f} -> peak {peak / MiB:.0f} MiB (growth {growth:.0f} MiB)")
    print(f"  presigned URL: {signed_us:.0f} us of CPU signed, {reused_us:.2f} us reused from the cache")

    def ratio(key: str) -> float:
        return results[key][0].ops / results[key][1].ops

    def p99(key: str) -> float:
        return results[key][0].p99_ms / results[key][1].p99_ms

    checks = [
        ("redirect", ratio("redirect"), ">=", 0.75), ("redirect_p99", p99("redirect"), "<=", 3.0),
        ("document", ratio("document"), ">=", 0.7), ("upload_1m", ratio("upload"), ">=", 0.8),
        ("rss_growth_mib", growth, "<=", 64),
    ]  # fmt: skip
    parts = [f"{name}={value:.2f}({op}{target:g} {'ok' if (value >= target if op == '>=' else value <= target) else 'MISS'})" for name, value, op, target in checks]
    missed = [name for name, value, op, target in checks if not (value >= target if op == ">=" else value <= target)]
    print(f"SUMMARY targets: {' '.join(parts)} presign_us={signed_us:.0f} reused_us={reused_us:.2f}; {'OK' if not missed else 'MISSED ' + ','.join(missed)}")
    if args.json:
        Path(args.json).write_text(json.dumps({k: [vars(r) for r in v] for k, v in results.items()} | {"rss_growth_mib": growth, "presign_us": signed_us}, indent=2))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--uploads", type=int, default=100)
    parser.add_argument("--json", help="also write the raw results here")
    args, _ = parser.parse_known_args()
    with tempfile.TemporaryDirectory() as tmp:
        with MinioServer(Path(tmp) / "minio") as minio, FerretDBServer(Path(tmp) / "ferret") as ferret:
            return asyncio.run(run(args, minio, ferret, Path(tmp)))


if __name__ == "__main__":
    sys.exit(main())

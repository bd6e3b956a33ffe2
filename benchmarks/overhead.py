"""What the gateway costs on top of the work any image store must do, measured in one run.

Baseline: for each image, a direct PutObject to MinIO plus a direct insert into FerretDB, through
the same SDKs the gateway uses. Gateway: the same image uploaded through the HTTP API (multipart),
then the document fetched and the presigned redirect resolved. Printed as medians and ratios;
machines here are noisy, so compare ratios, not absolute times.

    .venv/bin/python benchmarks/overhead.py [--images 200] [--size 100000] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aioboto3
import aiohttp
from aiohttp import web
from bson import ObjectId
from pymongo import AsyncMongoClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.app import create_app  # noqa: E402
from gateway.config import load_config  # noqa: E402
from tests.helpers import noisy_jpeg  # noqa: E402
from tests.peers import FerretDBServer, MinioServer, free_port  # noqa: E402


async def timed(count: int, concurrency: int, one: Callable[[int], Awaitable[None]]) -> tuple[list[float], float]:
    latencies: list[float] = []
    queue = iter(range(count))

    async def worker() -> None:
        for index in queue:
            started = time.perf_counter()
            await one(index)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - started


def report(name: str, latencies: list[float], wall: float) -> float:
    median = statistics.median(latencies) * 1000
    print(f"  {name:<34} median {median:7.2f} ms   p90 {statistics.quantiles(latencies, n=10)[-1] * 1000:7.2f} ms   {len(latencies) / wall:7.1f}/s")
    return median


async def run(images: int, size: int, concurrency: int, minio: MinioServer, ferret: FerretDBServer) -> None:
    side = max(16, int((size / 1.25) ** 0.5))  # noise JPEGs at quality 95 take ~1.25 bytes a pixel
    payload = noisy_jpeg((side, side))
    print(f"{images} images of {len(payload)} bytes, concurrency {concurrency}")

    session = aioboto3.Session()
    async with session.client("s3", endpoint_url=minio.endpoint, region_name="us-east-1",
                              aws_access_key_id=minio.access_key, aws_secret_access_key=minio.secret_key) as s3:
        await s3.create_bucket(Bucket="baseline")
        mongo: AsyncMongoClient = AsyncMongoClient(ferret.url)
        records = mongo["baseline"]["images"]

        async def direct(index: int) -> None:
            ident = str(ObjectId())
            await s3.put_object(Bucket="baseline", Key=f"bench/{ident}.jpg", Body=payload, ContentType="image/jpeg")
            await records.insert_one({"_id": f"bench/{ident}", "size": len(payload), "properties": {"i": index}})

        config = load_config(environ={}, overrides={
            "storage": {"backend": "s3", "s3": {"endpoint_url": minio.endpoint, "bucket": "gateway",
                                                 "access_key_id": minio.access_key, "secret_access_key": minio.secret_key}},
            "metadata": {"backend": "mongodb", "mongodb_url": ferret.url, "mongodb_db": "gateway"},
        })
        runner = web.AppRunner(create_app(config), access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        base = f"http://127.0.0.1:{port}"
        ids: list[str] = []
        async with aiohttp.ClientSession() as http:

            async def through_gateway(index: int) -> None:
                form = aiohttp.FormData()
                form.add_field("i", str(index))
                form.add_field("image", payload, filename="bench.jpg", content_type="image/jpeg")
                async with http.post(f"{base}/collections/bench/images", data=form) as response:
                    assert response.status == 200, await response.text()
                    ids.append((await response.json())["id"])

            async def direct_read(index: int) -> None:
                key = f"bench/{ids[index % len(ids)]}"
                await records.find_one({"_id": key})
                url = await s3.generate_presigned_url("get_object", Params={"Bucket": "gateway", "Key": key + ".jpg"})
                assert url

            async def gateway_read(index: int) -> None:
                async with http.get(f"{base}/collections/bench/images/{ids[index % len(ids)]}") as response:
                    assert response.status == 200
                async with http.get(f"{base}/collections/bench/images/{ids[index % len(ids)]}/image", allow_redirects=False) as response:
                    assert response.status == 302

            # Warm both paths so connection set-up is not measured.
            await timed(10, 2, direct)
            await timed(10, 2, through_gateway)
            print("upload (write path)")
            base_ms = report("baseline: PutObject + insert_one", *await timed(images, concurrency, direct))
            gate_ms = report("gateway: multipart POST", *await timed(images, concurrency, through_gateway))
            print(f"  ratio gateway/baseline: {gate_ms / base_ms:.2f}")
            print("read (document + presigned link)")
            base_ms = report("baseline: find_one + presign", *await timed(images, concurrency, direct_read))
            gate_ms = report("gateway: GET doc + GET /image", *await timed(images, concurrency, gateway_read))
            print(f"  ratio gateway/baseline: {gate_ms / base_ms:.2f}")
        await runner.cleanup()
        await mongo.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        with MinioServer(Path(tmp) / "minio") as minio, FerretDBServer(Path(tmp) / "ferret") as ferret:
            asyncio.run(run(args.images, args.size, args.concurrency, minio, ferret))


if __name__ == "__main__":
    main()

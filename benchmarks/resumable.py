"""A 100 MB upload through the gateway: resumable (tus, in chunks) against a plain multipart POST
of the same file, on MinIO + FerretDB, in one run. Printed as MB/s and the ratio; compare
ratios, machines here are noisy.

    .venv/bin/python benchmarks/resumable.py [--megabytes 100] [--chunk-mib 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.app import create_app  # noqa: E402
from gateway.config import load_config  # noqa: E402
from tests.peers import FerretDBServer, MinioServer, free_port  # noqa: E402

MiB = 1024 * 1024


def bitmap(megabytes: int) -> bytes:
    """An uncompressed BMP of noise: a valid image of about `megabytes` MB, made quickly."""
    side = int((megabytes * 1_000_000 / 3) ** 0.5)
    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(buffer, "BMP")
    return buffer.getvalue()


async def plain(http: aiohttp.ClientSession, base: str, payload: bytes) -> None:
    form = aiohttp.FormData()
    form.add_field("image", io.BytesIO(payload), filename="big.bmp", content_type="image/bmp")
    async with http.post(f"{base}/collections/bench/images", data=form) as response:
        assert response.status == 200, await response.text()


async def resumable(http: aiohttp.ClientSession, base: str, payload: bytes, chunk: int) -> None:
    tus = {"Tus-Resumable": "1.0.0"}
    async with http.post(f"{base}/collections/bench/tus", headers={**tus, "Upload-Length": str(len(payload))}) as response:
        assert response.status == 201, await response.text()
        location = response.headers["Location"]
    for offset in range(0, len(payload), chunk):
        headers = {**tus, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"}
        async with http.patch(location, data=io.BytesIO(payload[offset : offset + chunk]), headers=headers) as response:
            assert response.status in (200, 204), await response.text()


async def run(megabytes: int, chunk_mib: int, rounds: int, minio: MinioServer, ferret: FerretDBServer) -> None:
    payload = bitmap(megabytes)
    config = load_config(environ={}, overrides={
        "storage": {"backend": "s3", "s3": {"endpoint_url": minio.endpoint, "bucket": "gateway",
                                             "access_key_id": minio.access_key, "secret_access_key": minio.secret_key}},
        "metadata": {"backend": "mongodb", "mongodb_url": ferret.url, "mongodb_db": "gateway"},
        "limits": {"max_upload_bytes": len(payload) + MiB},
    })  # fmt: skip
    runner = web.AppRunner(create_app(config), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base = f"http://127.0.0.1:{port}"
    print(f"one image of {len(payload) / 1e6:.1f} MB, tus chunks of {chunk_mib} MiB, S3 parts of {config.storage.s3.part_size // MiB} MiB, median of {rounds}")
    timings: dict[str, list[float]] = {"plain multipart POST": [], f"tus, PATCHes of {chunk_mib} MiB": [], "tus, one PATCH": []}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as http:
        for _ in range(rounds):
            for name, send in (
                ("plain multipart POST", lambda: plain(http, base, payload)),
                (f"tus, PATCHes of {chunk_mib} MiB", lambda: resumable(http, base, payload, chunk_mib * MiB)),
                ("tus, one PATCH", lambda: resumable(http, base, payload, len(payload))),
            ):
                started = time.perf_counter()
                await send()
                timings[name].append(time.perf_counter() - started)
    await runner.cleanup()
    baseline = statistics.median(timings["plain multipart POST"])
    for name, seconds in timings.items():
        median = statistics.median(seconds)
        print(f"  {name:<28} {median:6.2f} s  {len(payload) / 1e6 / median:7.1f} MB/s  ratio to plain {median / baseline:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--megabytes", type=int, default=100)
    parser.add_argument("--chunk-mib", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    # `make bench` passes the same arguments to every script; the others' are not ours.
    args, _unknown = parser.parse_known_args()
    with tempfile.TemporaryDirectory() as tmp:
        with MinioServer(Path(tmp) / "minio") as minio, FerretDBServer(Path(tmp) / "ferret") as ferret:
            asyncio.run(run(args.megabytes, args.chunk_mib, args.rounds, minio, ferret))


if __name__ == "__main__":
    main()

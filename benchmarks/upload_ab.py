"""CPU per multipart upload, this checkout against another (`--base DIR`, e.g. an unpacked
`git archive` of main), in the same run on one MinIO and one FerretDB, rounds interleaved:

    .venv/bin/python benchmarks/upload_ab.py --base /tmp/base [--backend s3|filesystem] [--uploads 200] [--rounds 3]

Per size (100 kB, 1 MB) and checkout: uploads/s at 8 in flight, and CPU ms per upload of the
gateway process and of MinIO+FerretDB (read from /proc), medians over the rounds. The gateway
runs as `python -m gateway serve` from each checkout's directory, so each imports its own code.
"""

from __future__ import annotations

import argparse
import contextlib
import asyncio
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.targets import answers, cpu_seconds, start  # noqa: E402
from tests.helpers import noisy_jpeg  # noqa: E402
from tests.peers import FerretDBServer, MinioServer, free_port  # noqa: E402


async def gateway(
    name: str, checkout: Path, backend: str, minio: MinioServer, ferret: FerretDBServer, workdir: Path, profile: str | None = None
) -> tuple[str, asyncio.subprocess.Process]:
    port = free_port()
    storage = (
        {"backend": "s3", "s3": {"endpoint_url": minio.endpoint, "bucket": f"ab-{name}", "access_key_id": minio.access_key, "secret_access_key": minio.secret_key}}
        if backend == "s3" else {"backend": "filesystem"}
    )  # fmt: skip
    config = workdir / f"{name}.yaml"
    config.write_text(yaml.safe_dump({
        "data_dir": str(workdir / f"data-{name}"), "server": {"host": "127.0.0.1", "port": port}, "log_level": "WARNING",
        "storage": storage, "metadata": {"backend": "mongodb", "mongodb_url": ferret.url, "mongodb_db": f"ab_{name}"},
    }))  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    spy = f'"{profile}" record --format raw --nonblocking --rate 250 -o "{workdir / name}.raw" -- ' if profile else ""
    command = ["bash", "-c", f'cd "{checkout}" && exec {spy}"{sys.executable}" -m gateway serve --config "{config}"']
    process = await start(command, lambda: answers(base + "/health"), workdir / f"{name}.log")
    return base, process


async def uploads(base: str, payload: bytes, count: int, tag: str) -> float:
    todo = iter(range(count))
    async with aiohttp.ClientSession() as session:

        async def worker() -> None:
            for index in todo:
                form = aiohttp.FormData()
                form.add_field("label", "cat")
                form.add_field("image", payload, filename=f"{tag}-{index}.jpg", content_type="image/jpeg")
                async with session.post(base + "/collections/ab/images", data=form) as response:
                    assert response.status == 200, await response.text()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(8)))
        return count / (time.perf_counter() - started)


async def run(args: argparse.Namespace, minio: MinioServer, ferret: FerretDBServer, workdir: Path) -> None:
    checkouts = {"base": Path(args.base).resolve(), "this": ROOT}
    servers = {name: await gateway(name, path, args.backend, minio, ferret, workdir, args.py_spy) for name, path in checkouts.items()}
    peers = [p for p in (minio.pid, ferret.pid) if p]
    sizes = {"100k": noisy_jpeg((300, 300)), "1m": noisy_jpeg((900, 900))}
    rows: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    try:
        for name, (base, _) in servers.items():
            await uploads(base, sizes["100k"], 16, f"warm-{name}")
        for round_ in range(args.rounds):
            order = list(servers) if round_ % 2 == 0 else list(reversed(servers))
            for size, payload in sizes.items():
                for name in order:
                    base, process = servers[name]
                    cpu0, peer0 = cpu_seconds(process.pid), sum(cpu_seconds(p) for p in peers)
                    rate = await uploads(base, payload, args.uploads, f"r{round_}-{size}")
                    cpu1, peer1 = cpu_seconds(process.pid), sum(cpu_seconds(p) for p in peers)
                    rows.setdefault((size, name), []).append((rate, (cpu1 - cpu0) * 1000 / args.uploads, (peer1 - peer0) * 1000 / args.uploads))
    finally:
        for _, process in servers.values():
            # py-spy writes its samples when interrupted; the gateway stops on either signal.
            process.send_signal(signal.SIGINT if args.py_spy else signal.SIGTERM)
            await process.wait()
    print(f"backend {args.backend}, {args.uploads} uploads x {args.rounds} rounds per size, 8 in flight; medians (spread of ops/s)")
    for (size, name), values in rows.items():
        rates = [v[0] for v in values]
        print(
            f"  upload {size:<5} {name:<5} {statistics.median(rates):7.1f}/s ({(max(rates) - min(rates)) / statistics.median(rates):4.0%})"
            f"  cpu svc {statistics.median(v[1] for v in values):6.2f} ms  peers {statistics.median(v[2] for v in values):6.2f} ms"
        )


@contextlib.contextmanager
def _kept(path: str) -> Iterator[str]:
    yield path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True, help="the checkout to compare against")
    parser.add_argument("--backend", choices=("s3", "filesystem"), default="filesystem")
    parser.add_argument("--uploads", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--py-spy", help="profile both gateways with this py-spy binary (the CPU figures are then py-spy's own: ignore them)")
    parser.add_argument("--keep", help="work in this directory (kept: logs, profiles) instead of a temporary one")
    args = parser.parse_args()
    if args.keep:
        Path(args.keep).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() if not args.keep else _kept(args.keep) as tmp:
        with MinioServer(Path(tmp) / "minio") as minio, FerretDBServer(Path(tmp) / "ferret") as ferret:
            asyncio.run(run(args, minio, ferret, Path(tmp)))


if __name__ == "__main__":
    main()

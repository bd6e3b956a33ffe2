"""Renditions side by side with thumbor 7.8 (PyPI, its Pillow engine) and ipx (npm; Nuxt's image
server on sharp/libvips), each its own server process fed the same source images from local disk.

Cases: a 12 MP JPEG to a 256 px WebP (cover) and to a 1280 px JPEG (contain), a 4000x3000 PNG to a
256 px WebP. Cold: the first request for a rendition (each cold request is for another copy of the
source, so nothing is cached; ours renders, stores and redirects). Warm: the same request again
(ours: the stored rendition's redirect; thumbor: its file result storage; ipx keeps no result
cache, so its warm requests render again). Latency is to the last byte of the image, following
the redirect, at concurrency 1 and 4; peak RSS is each server's VmHWM. All servers run at once
and get their requests interleaved, so a shared machine's changing load falls on each alike. Also: our warm redirect
against an original's redirect.

The competitors are installed on first use under ~/.cache/image-gateway-bench (a venv for
thumbor, an npm prefix for ipx); one that cannot be installed is reported and skipped. The
machine may be shared: compare medians and ratios, not absolute times.

    .venv/bin/python benchmarks/renditions.py [--requests 20] [--only ours]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.peers import free_port  # noqa: E402

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "image-gateway-bench"
THUMBOR_VERSION = "7.8.0"
IPX_VERSION = "3"
ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Case:
    name: str
    source: str  # file name of the source kind
    width: int
    height: int
    fit: str  # cover | contain
    format: str  # webp | jpeg


CASES = [
    Case("12MP JPEG -> 256 WebP", "photo.jpg", 256, 256, "cover", "webp"),
    Case("12MP JPEG -> 1280 JPEG", "photo.jpg", 1280, 1280, "contain", "jpeg"),
    Case("4000x3000 PNG -> 256 WebP", "plane.png", 256, 256, "cover", "webp"),
]


def photo_like(size: tuple[int, int]) -> Image.Image:
    """Smooth gradients with moderate noise: compresses like a photograph (~2-4 bytes/pixel would
    be noise; a camera JPEG at quality 90 is ~0.3-0.5)."""
    width, height = size
    gradient = Image.linear_gradient("L").resize(size)
    radial = Image.radial_gradient("L").resize(size)
    noise = Image.effect_noise(size, 24)
    return Image.merge("RGB", [gradient, radial, Image.blend(noise, gradient.transpose(Image.Transpose.ROTATE_180), 0.5)])


def make_sources(directory: Path, copies: int) -> dict[str, list[Path]]:
    image = photo_like((4000, 3000))
    encoded = {}
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    encoded["photo.jpg"] = buffer.getvalue()
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=6)
    encoded["plane.png"] = buffer.getvalue()
    files: dict[str, list[Path]] = {}
    for name, data in encoded.items():
        stem, ext = name.split(".")
        files[name] = []
        for index in range(copies):
            path = directory / f"{stem}-{index}.{ext}"
            path.write_bytes(data)
            files[name].append(path)
        print(f"  source {name}: 4000x3000, {len(data) / 1e6:.1f} MB, {copies} copies")
    return files


# --- servers ------------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    idle_rss_mb: float = 0.0
    peak_mb: float = 0.0

    def peak_rss_mb(self) -> float:
        return _status_kb(self.process.pid, "VmHWM") / 1024

    def rss_mb(self) -> float:
        return _status_kb(self.process.pid, "VmRSS") / 1024

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _status_kb(pid: int, field_name: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return float(line.split()[1])
    return 0.0


async def _wait_ready(url: str, process: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"exited with {process.returncode}")
            try:
                async with session.get(url) as response:
                    if response.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError("did not answer in time")


async def _started(server: Server, probe: str) -> Server | str:
    try:
        await _wait_ready(f"http://127.0.0.1:{server.port}{probe}", server.process)
    except RuntimeError as exc:
        server.stop()
        return f"{server.name} did not start: {exc}"
    return server


def _install(what: str, marker: Path, commands: list[list[str]]) -> str | None:
    """Run the install commands once (a marker file records success); the error text, or None."""
    if marker.exists():
        return None
    marker.parent.mkdir(parents=True, exist_ok=True)
    print(f"  installing {what} under {marker.parent} ...", flush=True)
    for command in commands:
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            return f"{' '.join(command[:3])} failed: {' | '.join(tail)}"
    marker.write_text("ok\n")
    return None


async def start_ours(work: Path) -> Server:
    port = free_port()
    env = {
        **os.environ,
        "DATA_DIR": str(work / "gateway-data"),
        "STORAGE_BACKEND": "filesystem",
        "METADATA_BACKEND": "sqlite",
        "LOG_LEVEL": "warning",
        "MAX_UPLOAD_BYTES": str(100 * 1024 * 1024),
        "RENDITION_QUEUE_SIZE": "64",
    }
    env.pop("GATEWAY_CONFIG", None)
    process = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--port", str(port)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = Server("ours (pyvips)", process, port)
    await _wait_ready(f"http://127.0.0.1:{port}/", process)
    return server


async def start_thumbor(work: Path, root: Path) -> Server | str:
    venv = CACHE / f"thumbor-{THUMBOR_VERSION}"
    python = venv / "bin" / "python"
    error = _install(
        f"thumbor {THUMBOR_VERSION}",
        venv / ".installed",
        [[sys.executable, "-m", "venv", str(venv)], [str(python), "-m", "pip", "install", "-q", f"thumbor=={THUMBOR_VERSION}"]],
    )
    if error:
        return error
    port = free_port()
    config = work / "thumbor.conf"
    config.write_text(
        "\n".join(
            [
                "LOADER = 'thumbor.loaders.file_loader'",
                f"FILE_LOADER_ROOT_PATH = {str(root)!r}",
                "ENGINE = 'thumbor.engines.pil'",
                "ALLOW_UNSAFE_URL = True",
                "STORAGE = 'thumbor.storages.no_storage'",
                "RESULT_STORAGE = 'thumbor.result_storages.file_storage'",
                f"RESULT_STORAGE_FILE_STORAGE_ROOT_PATH = {str(work / 'thumbor-results')!r}",
                "RESULT_STORAGE_STORES_UNSAFE = True",
                "RESULT_STORAGE_EXPIRATION_SECONDS = 3600",
                # The same number of render threads as ours (renditions.workers).
                "ENGINE_THREADPOOL_SIZE = 2",
                "MAX_PIXELS = 100000000",
                "QUALITY = 80",
                "WEBP_QUALITY = 80",
                "AUTO_WEBP = False",
            ]
        )
        + "\n"
    )
    thumbor = venv / "bin" / "thumbor"
    process = subprocess.Popen([str(thumbor), "--port", str(port), "--ip", "127.0.0.1", "--conf", str(config), "-l", "error"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return await _started(Server(f"thumbor {THUMBOR_VERSION} (Pillow)", process, port), "/healthcheck")


async def start_ipx(root: Path) -> Server | str:
    prefix = CACHE / f"ipx-{IPX_VERSION}"
    if shutil.which("npm") is None or shutil.which("node") is None:
        return "node/npm are not installed"
    error = _install(f"ipx@{IPX_VERSION}", prefix / ".installed", [["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(prefix), f"ipx@{IPX_VERSION}"]])
    if error:
        return error
    port = free_port()
    cli = prefix / "node_modules" / ".bin" / "ipx"
    env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1", "NODE_ENV": "production"}
    process = subprocess.Popen([str(cli), "serve", "--dir", str(root)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return await _started(Server(f"ipx {IPX_VERSION} (sharp)", process, port), "/_/" + CASES[0].source.replace(".", "-0."))


# --- requests -----------------------------------------------------------------------------------


def thumbor_path(case: Case, source: str) -> str:
    size = f"{case.width}x{case.height}"
    fit = "fit-in/" if case.fit == "contain" else ""
    return f"/unsafe/{fit}{size}/filters:format({case.format}):quality(80)/{source}"


def ipx_path(case: Case, source: str) -> str:
    fit = "fit_inside" if case.fit == "contain" else "fit_cover"
    return f"/s_{case.width}x{case.height},{fit},f_{case.format},q_80/{source}"


def ours_query(case: Case) -> str:
    resize = "contain" if case.fit == "contain" else "cover"
    return f"width={case.width}&height={case.height}&resize={resize}&format={case.format}&quality=80"


def summary(latencies: list[float]) -> tuple[float, float]:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return statistics.median(ordered) * 1000, p99 * 1000


async def fetch(session: aiohttp.ClientSession, url: str, *, expect_redirect: bool = False) -> bytes:
    async with session.get(url, allow_redirects=not expect_redirect) as response:
        if expect_redirect:
            if response.status != 302:
                raise RuntimeError(f"{url}: {response.status} {await response.text()}")
            return b""
        if response.status != 200:
            raise RuntimeError(f"{url}: {response.status} {(await response.text())[:200]}")
        return await response.read()


async def upload_all(session: aiohttp.ClientSession, base: str, files: list[Path], collection: str) -> list[str]:
    ids = []
    for path in files:
        form = aiohttp.FormData()
        form.add_field("image", path.read_bytes(), filename=path.name, content_type="application/octet-stream")
        async with session.post(f"{base}/collections/{collection}/images", data=form) as response:
            if response.status != 200:
                raise RuntimeError(f"upload: {response.status} {await response.text()}")
            ids.append((await response.json())["id"])
    return ids


Results = dict[tuple[str, str, str, int], tuple[float, float]]


@dataclass
class Target:
    """One server under test and how to name a rendition of source copy `index` on it."""

    server: Server
    ids: dict[str, list[str]]

    def url(self, case: Case, index: int) -> str:
        base = f"http://127.0.0.1:{self.server.port}"
        name = self.server.name
        if name.startswith("ours"):
            return f"{base}/collections/{_collection(case.source)}/images/{self.ids[case.source][index]}/image?{ours_query(case)}"
        source = f"{case.source.split('.')[0]}-{index}.{case.source.split('.')[1]}"
        return base + (thumbor_path(case, source) if name.startswith("thumbor") else ipx_path(case, source))


def _collection(source: str) -> str:
    return "bench-" + source.split(".")[0]


async def prepare(session: aiohttp.ClientSession, server: Server, files: dict[str, list[Path]]) -> Target:
    ids: dict[str, list[str]] = {}
    if server.name.startswith("ours"):
        for source, paths in files.items():
            ids[source] = await upload_all(session, f"http://127.0.0.1:{server.port}", paths, _collection(source))
    server.idle_rss_mb = server.rss_mb()
    return Target(server, ids)


async def measure(session: aiohttp.ClientSession, targets: list[Target], requests: int, results: Results) -> None:
    """Every server gets the same requests, interleaved in rounds of `concurrency`, so a load
    that comes and goes on a shared machine falls on all of them alike."""
    for case in CASES:
        # Copies [0, requests) are cold at concurrency 1, [requests, 2*requests) at 4.
        for concurrency, offset in ((1, 0), (4, requests)):
            for temperature in ("cold", "warm"):
                latencies: dict[str, list[float]] = {t.server.name: [] for t in targets}
                for start in range(offset, offset + requests, concurrency):
                    for target in targets:
                        async def one(index: int, target: Target = target) -> None:
                            began = time.perf_counter()
                            await fetch(session, target.url(case, index))
                            latencies[target.server.name].append(time.perf_counter() - began)

                        await asyncio.gather(*(one(i) for i in range(start, min(start + concurrency, offset + requests))))
                for name, values in latencies.items():
                    results[(name, case.name, temperature, concurrency)] = summary(values)
            print(f"  {case.name}, concurrency {concurrency}: done", flush=True)
    ours = next((t for t in targets if t.server.name.startswith("ours")), None)
    if ours is not None:
        # Warm rendition redirects against original redirects (no object fetched), alternating.
        base = f"http://127.0.0.1:{ours.server.port}/collections/{_collection('photo.jpg')}/images"
        original: list[float] = []
        rendition: list[float] = []
        for index in range(requests * 5):
            ident = ours.ids["photo.jpg"][index % requests]
            for into, query in ((original, ""), (rendition, "?" + ours_query(CASES[0]))):
                began = time.perf_counter()
                await fetch(session, f"{base}/{ident}/image{query}", expect_redirect=True)
                into.append(time.perf_counter() - began)
        results[(ours.server.name, "redirect: original", "warm", 1)] = summary(original)
        results[(ours.server.name, "redirect: 256 WebP rendition", "warm", 1)] = summary(rendition)


def print_results(results: Results, servers: list[Server], skipped: dict[str, str]) -> None:
    names = [s.name for s in servers]
    print()
    print(f"{'case':<30} {'':<5} {'c':>2}  " + "  ".join(f"{n[:22]:>22}" for n in names))
    for case in [c.name for c in CASES]:
        for temperature in ("cold", "warm"):
            for concurrency in (1, 4):
                cells = []
                for name in names:
                    value = results.get((name, case, temperature, concurrency))
                    cells.append(f"{value[0]:8.1f} /{value[1]:8.1f} ms" if value else f"{'-':>22}")
                print(f"{case:<30} {temperature:<5} {concurrency:>2}  " + "  ".join(f"{c:>22}" for c in cells))
    print("  (each cell: p50 / p99, to the last byte of the image)")
    ours = names[0]
    for other in names[1:]:
        for case in CASES:
            mine, theirs = results.get((ours, case.name, "cold", 1)), results.get((other, case.name, "cold", 1))
            if mine and theirs:
                print(f"  cold p50 {case.name}: ours / {other} = {mine[0] / theirs[0]:.2f}")
    original, rendition = results.get((ours, "redirect: original", "warm", 1)), results.get((ours, "redirect: 256 WebP rendition", "warm", 1))
    if original and rendition:
        print(f"  warm rendition redirect p50 {rendition[0]:.2f} ms vs original redirect {original[0]:.2f} ms: ratio {rendition[0] / original[0]:.2f}")
    print()
    for server in servers:
        peak = server.peak_mb
        print(f"  {server.name:<28} RSS idle {server.idle_rss_mb:7.1f} MB, peak {peak:7.1f} MB, growth per concurrent render (c=4) {(peak - server.idle_rss_mb) / 4:6.1f} MB")
    for name, reason in skipped.items():
        print(f"  {name}: not measured ({reason})")


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20, help="requests per case, temperature and concurrency")
    parser.add_argument("--only", choices=["ours", "thumbor", "ipx"], action="append", help="measure only these servers")
    # `make bench` passes its extra arguments to every script; those meant for others are ignored.
    args, _ = parser.parse_known_args(argv)
    only = set(args.only or ["ours", "thumbor", "ipx"])
    with tempfile.TemporaryDirectory(prefix="bench-renditions-") as tmp:
        work = Path(tmp)
        root = work / "sources"
        root.mkdir()
        files = make_sources(root, 2 * args.requests)
        results: Results = {}
        servers: list[Server] = []
        skipped: dict[str, str] = {}
        starters: list[tuple[str, Callable[[], Awaitable[Server | str]]]] = [
            ("ours", lambda: start_ours(work)),
            ("thumbor", lambda: start_thumbor(work, root)),
            ("ipx", lambda: start_ipx(root)),
        ]
        for name, start in starters:
            if name not in only:
                continue
            started = await start()
            if isinstance(started, str):
                skipped[name] = started
                print(f"  {name}: skipped ({started})", flush=True)
            else:
                servers.append(started)
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32), timeout=aiohttp.ClientTimeout(total=600)) as session:
                targets = []
                for server in servers:
                    try:
                        targets.append(await prepare(session, server, files))
                    except Exception as exc:  # a competitor failing must not hide the others' numbers
                        skipped[server.name] = f"failed to prepare: {exc}"
                print(f"  measuring {', '.join(t.server.name for t in targets)}, interleaved ...", flush=True)
                await measure(session, targets, args.requests, results)
        finally:
            for server in servers:
                if server.process.poll() is None:
                    server.peak_mb = server.peak_rss_mb()
                server.stop()
        servers = [s for s in servers if s.name not in skipped]
        print_results(results, servers, skipped)
    return 0 if any(s.name.startswith("ours") for s in servers) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))

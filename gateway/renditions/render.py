"""Rendering with libvips (pyvips, libvips from the pyvips-binary wheel), off the event loop.

`thumbnail_buffer` shrinks while it decodes (JPEG and WebP at 1/2, 1/4 or 1/8 scale, HEIF from
its embedded thumbnails when big enough, others streamed line by line), so the decoded original
is never whole in memory. It also applies the EXIF orientation, converts an embedded colour
profile to sRGB (asked for only when there is one: an untagged source is taken as sRGB already,
and a transform to itself would cost a pass), and a CMYK source through libvips' CMYK profile.

`Renderer` bounds the work: `workers` renders at once, `queue_size` more waiting for a worker,
and past that `Unavailable` (503) with `Retry-After`, before the source is even read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import io

import pillow_heif
import pyvips
from PIL import Image, ImageOps

from gateway.errors import Invalid, Unavailable
from gateway.renditions.spec import Spec

log = logging.getLogger(__name__)

# Loaders that can be untrusted (ImageMagick, PDFium, Matlab, FITS, ...) are refused by libvips
# itself; this list narrows further to the formats an upload may hold (images.py).
pyvips.block_untrusted_set(True)
_LOADERS = {"jpegload_buffer", "pngload_buffer", "gifload_buffer", "webpload_buffer", "tiffload_buffer", "heifload_buffer"}
# libvips' operation cache would keep recent sources and results alive between requests.
pyvips.cache_set_max(0)

pillow_heif.register_heif_opener()
# The libvips wheel decodes AV1 (AVIF) but not HEVC (HEIC) nor BMP; those are decoded by Pillow
# (pillow-heif bundles an HEVC decoder), whole but within the pixel limit, then resized by libvips.
_PILLOW_FORMATS = ["HEIF", "BMP"]

_UNBOUNDED = 10_000_000  # libvips' largest coordinate: "this side is free"
_WHITE = [255, 255, 255]


@dataclass(frozen=True)
class Rendered:
    data: bytes
    width: int
    # Of one frame, for an animation.
    height: int
    frames: int
    seconds: float


def _oriented_size(header: pyvips.Image) -> tuple[int, int]:
    """Width and height of one frame as displayed, after the EXIF orientation."""
    height = header.get("page-height") if header.get_typeof("page-height") else header.height
    orientation = header.get("orientation") if header.get_typeof("orientation") else 1
    return (height, header.width) if orientation in (5, 6, 7, 8) else (header.width, height)


def _box(spec: Spec, source: tuple[int, int]) -> tuple[int, int, str, str]:
    """The `thumbnail` arguments for `spec`: width, height, size and crop."""
    width = spec.width or _UNBOUNDED
    height = spec.height or _UNBOUNDED
    size = "both" if spec.enlarge else "down"
    if spec.resize == "fill":
        if not spec.enlarge:
            width, height = min(width, source[0]), min(height, source[1])
        return width, height, "force", "none"
    return width, height, size, "centre" if spec.resize == "cover" else "none"


def _frames(image: pyvips.Image, page_height: int) -> list[pyvips.Image]:
    return [image.crop(0, top, image.width, page_height) for top in range(0, image.height, page_height)]


def _animated(source: bytes, spec: Spec, frame: tuple[int, int], profile: dict[str, str]) -> pyvips.Image:
    """`thumbnail` keeps an animation's frames when fitting inside a box but would crop the whole
    strip of frames as one image; cover and fill are done frame by frame after it."""
    fw, fh = frame
    if spec.resize == "contain" or spec.width is None or spec.height is None:
        width, height, size, _ = _box(spec, frame)
        return pyvips.Image.thumbnail_buffer(source, width, height=height, size=size, option_string="n=-1", **profile)
    scale = max(spec.width / fw, spec.height / fh) if spec.resize == "cover" else spec.width / fw
    if not spec.enlarge:
        scale = min(scale, 1.0)
    image = pyvips.Image.thumbnail_buffer(source, max(1, round(fw * scale)), height=_UNBOUNDED, size="both", option_string="n=-1", **profile)
    page_height = image.get("page-height") if image.get_typeof("page-height") else image.height
    frames = _frames(image, page_height)
    if spec.resize == "cover":
        width, height = min(spec.width, image.width), min(spec.height, page_height)
        left, top = (image.width - width) // 2, (page_height - height) // 2
        frames = [f.crop(left, top, width, height) for f in frames]
    else:
        height = spec.height if spec.enlarge else min(spec.height, fh)
        frames = [f.resize(1, vscale=height / page_height) for f in frames]
        height = frames[0].height
    joined = pyvips.Image.arrayjoin(frames, across=1).copy()
    joined.set_type(pyvips.GValue.gint_type, "page-height", height)
    return joined


def _save(image: pyvips.Image, spec: Spec) -> bytes:
    fmt = spec.format.name
    # Metadata goes (EXIF would re-rotate an already upright image; the profile is sRGB now).
    if fmt == "jpeg":
        return image.jpegsave_buffer(Q=spec.quality, keep="none", optimize_coding=True)
    if fmt == "webp":
        return image.webpsave_buffer(Q=spec.quality, keep="none", effort=2)
    if fmt == "avif":
        # AV1 at libvips' default effort takes seconds for a preview; 2 keeps it interactive.
        return image.heifsave_buffer(Q=spec.quality, compression="av1", effort=2, keep="none")
    if fmt == "png":
        return image.pngsave_buffer(compression=6, keep="none")
    return image.gifsave_buffer(keep="none")


def _decoded_by_pillow(source: bytes, max_pixels: int) -> pyvips.Image:
    with Image.open(io.BytesIO(source), formats=_PILLOW_FORMATS) as opened:
        if opened.width * opened.height > max_pixels:
            raise Invalid("the image has too many pixels to render", code="too_many_pixels")
        upright = ImageOps.exif_transpose(opened)
        has_alpha = upright.mode in ("RGBA", "LA", "PA") or "transparency" in upright.info
        profile = opened.info.get("icc_profile")
        upright = upright.convert("RGBA" if has_alpha else "RGB")
    image = pyvips.Image.new_from_memory(upright.tobytes(), upright.width, upright.height, len(upright.getbands()), "uchar")
    if profile:
        image = image.copy()
        image.set_type(pyvips.GValue.blob_type, "icc-profile-data", profile)
    return image


def _is_hevc(source: bytes) -> bool:
    return source[4:8] == b"ftyp" and source[8:12] not in (b"avif", b"avis")


def render(source: bytes, spec: Spec, max_pixels: int) -> Rendered:
    """The rendition `spec` of the image `source`; blocking, for a worker thread."""
    started = time.perf_counter()
    decoded = None
    try:
        if _is_hevc(source) or source[:2] == b"BM":
            decoded = _decoded_by_pillow(source, max_pixels)
            header = decoded
        else:
            header = pyvips.Image.new_from_buffer(source, "", access="sequential")
    except (pyvips.Error, OSError, ValueError, SyntaxError):
        raise Invalid("the stored image cannot be decoded", code="undecodable_image") from None
    loader = header.get("vips-loader") if header.get_typeof("vips-loader") else ""
    if decoded is None and loader not in _LOADERS:
        raise Invalid("the stored image is in a format that is not rendered", code="unrenderable_image")
    pages = header.get("n-pages") if header.get_typeof("n-pages") else 1
    frame = _oriented_size(header)
    if header.width * header.height > max_pixels:
        # The record's size was checked too; this guards a source whose header says otherwise.
        raise Invalid("the image has too many pixels to render", code="too_many_pixels")
    profile = {"export_profile": "srgb"} if header.get_typeof("icc-profile-data") else {}
    try:
        if decoded is not None:
            width, height, size, crop = _box(spec, frame)
            image = decoded.thumbnail_image(width, height=height, size=size, crop=crop, **profile)
        elif spec.format.animated and pages > 1:
            image = _animated(source, spec, frame, profile)
        else:
            width, height, size, crop = _box(spec, frame)
            image = pyvips.Image.thumbnail_buffer(source, width, height=height, size=size, crop=crop, **profile)
        if image.interpretation not in ("srgb", "b-w"):
            # 16-bit, Lab or anything else a profile conversion left: 8-bit sRGB for the web.
            image = image.colourspace("srgb")
        if image.format != "uchar":
            image = image.cast("uchar")
        if image.hasalpha() and not spec.format.alpha:
            image = image.flatten(background=_WHITE if image.bands >= 3 else [255])
        page_height = image.get("page-height") if image.get_typeof("page-height") else image.height
        data = _save(image, spec)
    except pyvips.Error as exc:
        log.warning("render failed: %s", str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__)
        raise Invalid("the stored image cannot be rendered", code="undecodable_image") from None
    return Rendered(data, image.width, page_height, max(1, image.height // page_height), time.perf_counter() - started)


Observer = Callable[[int], None]


class Renderer:
    """A bounded pool of render threads. `run` waits for a worker, reads the source only then
    (so waiting requests hold no image bytes), and renders in the pool."""

    def __init__(self, workers: int, queue_size: int, max_pixels: int, on_queue: Observer | None = None):
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="render")
        self._workers = asyncio.Semaphore(workers)
        self._capacity = workers + queue_size
        self._max_pixels = max_pixels
        self._admitted = 0
        self._running = 0
        self._on_queue = on_queue or (lambda depth: None)

    @property
    def queued(self) -> int:
        """Renders admitted and waiting for a worker."""
        return self._admitted - self._running

    async def run(self, read_source: Callable[[], Awaitable[bytes]], spec: Spec) -> Rendered:
        if self._admitted >= self._capacity:
            raise Unavailable("too many renditions are being made; try again shortly", code="render_queue_full", headers={"Retry-After": "1"})
        self._admitted += 1
        self._on_queue(self.queued)
        try:
            async with self._workers:
                self._running += 1
                self._on_queue(self.queued)
                try:
                    source = await read_source()
                    loop = asyncio.get_running_loop()
                    return await loop.run_in_executor(self._executor, render, source, spec, self._max_pixels)
                finally:
                    self._running -= 1
        finally:
            self._admitted -= 1
            self._on_queue(self.queued)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


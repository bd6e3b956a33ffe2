"""Recognising images while they stream: the real format from the bytes, dimensions from the header.

Only the header is decoded (Pillow), so an upload never sits whole in memory. What the client
declared (Content-Type, file extension) is never trusted. The end of the stream is checked
against the format's own structure (end markers, declared sizes) so truncated files are refused.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass

import pillow_heif
from PIL import Image, UnidentifiedImageError

from gateway.errors import Invalid, TooLarge, Unsupported


@dataclass(frozen=True)
class ImageFormat:
    name: str  # Pillow's name
    content_type: str
    extension: str


FORMATS = {
    f.name: f
    for f in (
        ImageFormat("JPEG", "image/jpeg", "jpg"),
        ImageFormat("PNG", "image/png", "png"),
        ImageFormat("GIF", "image/gif", "gif"),
        ImageFormat("WEBP", "image/webp", "webp"),
        ImageFormat("TIFF", "image/tiff", "tiff"),
        ImageFormat("BMP", "image/bmp", "bmp"),
        ImageFormat("AVIF", "image/avif", "avif"),
        # HEIC photos (iPhones); Pillow reads them through pillow-heif.
        ImageFormat("HEIF", "image/heic", "heic"),
    )
}
CONTENT_TYPES = {f.extension: f.content_type for f in FORMATS.values()}
ACCEPTED = "JPEG, PNG, GIF, WebP, TIFF, BMP, AVIF or HEIC/HEIF"
# EXIF orientations 5-8 turn the picture a quarter: displayed width is the stored height.
EXIF_ORIENTATION = 0x0112

# Header buffering grows through these sizes until Pillow can read the dimensions; a JPEG with
# large EXIF/ICC segments can put its frame header far from the start.
_ATTEMPTS = (4 * 1024, 64 * 1024, 1024 * 1024, 16 * 1024 * 1024)
_TAIL = 4096

# The pixel limit is ours (MAX_IMAGE_PIXELS, checked on the header's dimensions); Pillow's own
# global limit would otherwise refuse configured limits above twice its default.
Image.MAX_IMAGE_PIXELS = None
pillow_heif.register_heif_opener()

# ISO base media file brands (the `ftyp` box): AV1 images, and HEVC ones.
_AVIF_BRANDS = {b"avif", b"avis"}
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}


def sniff(head: bytes) -> ImageFormat | None:
    """The format announced by the first bytes, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return FORMATS["JPEG"]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return FORMATS["PNG"]
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return FORMATS["GIF"]
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return FORMATS["WEBP"]
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return FORMATS["TIFF"]
    if head[:2] == b"BM" and len(head) >= 18:
        return FORMATS["BMP"]
    if head[4:8] == b"ftyp":
        size = int.from_bytes(head[:4], "big")
        brands = {head[8:12]} | {head[i : i + 4] for i in range(16, min(size, len(head)) - 3, 4)}
        # A `mif1` file names what it holds among its compatible brands; AVIF wins a tie
        # (libheif decodes HEVC only).
        if brands & _AVIF_BRANDS:
            return FORMATS["AVIF"]
        if brands & _HEIF_BRANDS:
            return FORMATS["HEIF"]
    return None


@dataclass(frozen=True)
class ImageInfo:
    """What the header says: the stored pixel size and the EXIF orientation (None without one)."""

    format: ImageFormat
    width: int
    height: int
    orientation: int | None = None


class ImageInspector:
    """Fed an upload's chunks in order; identifies the image early and checks its end at `finish`.

    `feed` raises `Unsupported` for bytes that are no supported image (as soon as the first bytes
    show it), `TooLarge` for too many pixels; `finish` raises `Invalid` for a truncated image.
    """

    def __init__(self, max_pixels: int):
        self._max_pixels = max_pixels
        self._head = bytearray()
        self._tail = b""
        self._attempt = 0
        self._format: ImageFormat | None = None
        self._required_size = 0
        self.info: ImageInfo | None = None
        self.size = 0

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        self._tail = (self._tail + chunk)[-_TAIL:] if len(chunk) < _TAIL else chunk[-_TAIL:]
        if self.info is not None:
            return
        self._head += chunk
        if self._format is None and len(self._head) >= 18:
            self._format = sniff(bytes(self._head[:32]))
            if self._format is None:
                raise Unsupported(f"the bytes are not a supported image ({ACCEPTED})", code="unsupported_image")
        while self._attempt < len(_ATTEMPTS) and len(self._head) >= _ATTEMPTS[self._attempt]:
            if self._identify(complete=False):
                return
            self._attempt += 1
        if self._attempt >= len(_ATTEMPTS):
            raise Invalid("the image header could not be read", code="invalid_image")

    def finish(self) -> ImageInfo:
        if self.size == 0:
            raise Invalid("the image is empty", code="empty_image")
        if self.info is None:
            if self._format is None:
                self._format = sniff(bytes(self._head[:32]))
            if self._format is None:
                raise Unsupported(f"the bytes are not a supported image ({ACCEPTED})", code="unsupported_image")
            if not self._identify(complete=True):
                raise Invalid("the image is truncated or corrupt", code="invalid_image")
        assert self.info is not None
        if not self._ends_well():
            raise Invalid("the image is truncated", code="truncated_image")
        return self.info

    def _identify(self, *, complete: bool) -> bool:
        assert self._format is not None
        data = bytes(self._head)
        orientation = None
        if self._format.name in ("WEBP", "AVIF") and not complete:
            # Pillow opens a WebP or an AVIF only whole; the size is in the first bytes.
            size = _webp_size(data) if self._format.name == "WEBP" else _avif_size(data)
            if size is None:
                return False
            width, height = size
            orientation = _avif_orientation(data) if self._format.name == "AVIF" else None
            self._required_size = _required_size(self._format, data, None)
        else:
            try:
                with warnings.catch_warnings():
                    # We apply our own pixel limit below, and corrupt data is refused below; Pillow's
                    # warnings (DecompressionBombWarning, "Corrupt EXIF data" for a cut TIFF) would
                    # only duplicate that, or escape as errors where warnings are errors.
                    warnings.simplefilter("ignore")
                    with Image.open(io.BytesIO(data), formats=[self._format.name]) as image:
                        width, height = image.size
                        orientation = _avif_orientation(data) if self._format.name == "AVIF" else _orientation(image)
                        if self._format.name in ("HEIF", "TIFF") and orientation in (5, 6, 7, 8):
                            # libheif, and Pillow for a TIFF, give the size as displayed.
                            width, height = height, width
                        self._required_size = _required_size(self._format, data, image)
            except Image.DecompressionBombError:
                raise TooLarge("the image has too many pixels", code="too_many_pixels") from None
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError, struct.error, EOFError, IndexError, KeyError, TypeError):
                if complete:
                    raise Invalid("the image is truncated or corrupt", code="invalid_image") from None
                return False
        if width <= 0 or height <= 0:
            raise Invalid("the image has no pixels", code="invalid_image")
        if width * height > self._max_pixels:
            raise TooLarge(
                f"the image has {width}x{height} pixels, more than the limit of {self._max_pixels}",
                code="too_many_pixels",
            )
        self.info = ImageInfo(self._format, width, height, orientation)
        self._head = bytearray()
        return True

    def _ends_well(self) -> bool:
        assert self.info is not None
        name = self.info.format.name
        if self.size < self._required_size:
            return False
        if name == "JPEG":
            return b"\xff\xd9" in self._tail
        if name == "PNG":
            # The IEND chunk with its (constant) CRC: a cut inside the CRC is a truncation too.
            return b"IEND\xaeB`\x82" in self._tail
        if name == "GIF":
            return self._tail.rstrip(b"\x00\r\n").endswith(b";")
        return True


def _webp_size(head: bytes) -> tuple[int, int] | None:
    """A WebP's canvas size from its first chunk (VP8X, VP8L or VP8), or None."""
    if len(head) < 30:
        return None
    kind = head[12:16]
    if kind == b"VP8X":
        return 1 + int.from_bytes(head[24:27], "little"), 1 + int.from_bytes(head[27:30], "little")
    if kind == b"VP8L" and head[20] == 0x2F:
        bits = int.from_bytes(head[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if kind == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":
        return int.from_bytes(head[26:28], "little") & 0x3FFF, int.from_bytes(head[28:30], "little") & 0x3FFF
    return None


def _orientation(image: Image.Image) -> int | None:
    if image.format == "WEBP":
        # A WebP's EXIF chunk follows its pixels, which stream past unkept: never known for a
        # large file, so not reported for a small one either.
        return None
    if image.format == "HEIF":
        # pillow-heif applies the rotation itself and keeps the file's value aside.
        value = image.info.get("original_orientation")
    elif image.format == "TIFF":
        value = getattr(image, "tag_v2", {}).get(EXIF_ORIENTATION)
    else:
        # From the EXIF block the header held: `getexif()` would read a PNG to its end.
        raw = image.info.get("exif")
        if not isinstance(raw, bytes):
            return None
        exif = Image.Exif()
        try:
            exif.load(raw)
        except Exception:  # noqa: BLE001 - a broken EXIF block says nothing; the image stands
            return None
        value = exif.get(EXIF_ORIENTATION)
    return value if isinstance(value, int) and 1 <= value <= 8 else None


def displayed_size(width: int, height: int, orientation: int | None) -> tuple[int, int]:
    """The size a viewer shows for a stored pixel size and an EXIF orientation."""
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _boxes(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """The ISO BMFF boxes (type, payload start, box end) between `start` and `end` that `data`
    holds whole."""
    found = []
    while start + 8 <= min(end, len(data)):
        size, kind = struct.unpack(">I4s", data[start : start + 8])
        header = 8
        if size == 1 and start + 16 <= len(data):
            size, header = struct.unpack(">Q", data[start + 8 : start + 16])[0], 16
        elif size == 0:
            size = end - start
        if size < header:
            break
        found.append((kind, start + header, start + size))
        start += size
    return found


def _avif_size(head: bytes) -> tuple[int, int] | None:
    """An AVIF's size from its `meta` box: the primary image's `ispe` (the largest, as a grid's
    is larger than its tiles', an alpha plane's equal). As Pillow reports it, before any `irot`
    turn, just as a JPEG's size is before its EXIF orientation."""
    for kind, payload, end in _boxes(head, 0, len(head)):
        if kind != b"meta":
            continue
        if end > len(head):
            return None
        widths: list[tuple[int, int]] = []
        # `meta` is a full box (4 bytes of version and flags); `iprp` holds `ipco`, the properties.
        for inner, start, stop in _boxes(head, payload + 4, end):
            if inner != b"iprp":
                continue
            for group, group_start, group_end in _boxes(head, start, stop):
                if group != b"ipco":
                    continue
                for prop, prop_start, prop_end in _boxes(head, group_start, group_end):
                    if prop == b"ispe" and prop_end - prop_start >= 12:
                        widths.append(struct.unpack(">II", head[prop_start + 4 : prop_start + 12]))
        return max(widths, key=lambda size: size[0] * size[1]) if widths else None
    return None


# HEIF's `irot` (quarter turns anticlockwise) and `imir` (axis 0: top to bottom, 1: left to right),
# applied in that order, as EXIF orientations (libavif's mapping; the identity is no orientation).
_AVIF_TRANSFORMS = {
    (1, None): 8, (2, None): 3, (3, None): 6,
    (0, 0): 4, (1, 0): 5, (2, 0): 2, (3, 0): 7,
    (0, 1): 2, (1, 1): 7, (2, 1): 4, (3, 1): 5,
}


def _avif_orientation(head: bytes) -> int | None:
    """An AVIF's orientation from the `irot`/`imir` properties of its `meta` box: where libavif
    keeps it (Pillow writes an EXIF orientation as these), and known from the first bytes. The
    first of each counts: the primary image's, for the files encoders write."""
    turns, axis = 0, None
    for kind, payload, end in _boxes(head, 0, len(head)):
        if kind != b"meta":
            continue
        for inner, start, stop in _boxes(head, payload + 4, min(end, len(head))):
            if inner != b"iprp":
                continue
            for group, group_start, group_end in _boxes(head, start, stop):
                if group != b"ipco":
                    continue
                found: dict[bytes, bytes] = {}
                for prop, prop_start, prop_end in _boxes(head, group_start, group_end):
                    found.setdefault(prop, head[prop_start:prop_end])
                if found.get(b"irot"):
                    turns = found[b"irot"][0] & 3
                if found.get(b"imir"):
                    axis = found[b"imir"][0] & 1
    return _AVIF_TRANSFORMS.get((turns, axis))


def _required_size(fmt: ImageFormat, head: bytes, image: Image.Image | None) -> int:
    """How many bytes the header says the whole file has, for formats that declare it."""
    if fmt.name == "WEBP":
        return struct.unpack("<I", head[4:8])[0] + 8
    if fmt.name in ("AVIF", "HEIF"):
        # The top-level boxes' sizes, as far as the head shows them (`mdat`, the data, is last).
        boxes = _boxes(head, 0, len(head))
        return boxes[-1][2] if boxes else 0
    if fmt.name == "BMP":
        declared, offset = struct.unpack("<I", head[2:6])[0], struct.unpack("<I", head[10:14])[0]
        return max(declared, offset)
    if fmt.name == "TIFF":
        tags = getattr(image, "tag_v2", {})
        offsets, counts = tags.get(273) or tags.get(324), tags.get(279) or tags.get(325)
        if offsets and counts:
            return max(o + c for o, c in zip(offsets, counts))
    return 0

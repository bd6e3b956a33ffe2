"""What a rendition is: the query parameters that ask for one, their validation, presets, and
the canonical spec that names its object.

Parsing happens in two steps. `parse` reads the request alone (and refuses bad input before
anything is looked up); `resolve` then fixes what depends on the source image and the client
(`format=origin`, `format=auto` and the `Accept` header). Two requests that resolve to the same
`Spec` share one stored object: `preset=thumb` and `width=256&height=256&format=webp` do.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

from gateway.config import FORMATS, RESIZES, PresetConfig, RenditionsConfig
from gateway.errors import Invalid
from gateway.storage.base import rendition_key

PARAMETERS = ("width", "height", "w", "h", "resize", "format", "quality", "enlarge", "preset")
DEFAULT_QUALITY = 80
MIN_QUALITY, MAX_QUALITY = 20, 100
THUMBNAIL_PRESET = "thumb"

_NUMBER = re.compile(r"[0-9]{1,6}")
_FLAGS = {"true": True, "1": True, "false": False, "0": False}


@dataclass(frozen=True)
class OutputFormat:
    name: str
    content_type: str
    extension: str
    lossy: bool
    # Holds several frames, so an animated source stays animated.
    animated: bool
    alpha: bool


OUTPUTS = {
    f.name: f
    for f in (
        OutputFormat("jpeg", "image/jpeg", "jpg", lossy=True, animated=False, alpha=False),
        OutputFormat("png", "image/png", "png", lossy=False, animated=False, alpha=True),
        OutputFormat("webp", "image/webp", "webp", lossy=True, animated=True, alpha=True),
        OutputFormat("avif", "image/avif", "avif", lossy=True, animated=False, alpha=True),
        OutputFormat("gif", "image/gif", "gif", lossy=False, animated=True, alpha=True),
    )
}
# `format=origin` for each source format (a record's `format`): browsers show these as they are;
# TIFF, BMP and HEIC are not shown by every browser and become JPEG.
_ORIGIN = {"jpeg": "jpeg", "png": "png", "gif": "gif", "webp": "webp", "avif": "avif"}


@dataclass(frozen=True)
class Wanted:
    """What the client asked for, before the source image is known. A missing side is None."""

    width: int | None
    height: int | None
    resize: str
    format: str
    quality: int
    enlarge: bool


@dataclass(frozen=True)
class Spec:
    """One rendition, fully determined: its object key follows from it and the image."""

    width: int | None
    height: int | None
    resize: str
    format: OutputFormat
    quality: int
    enlarge: bool
    # Chosen from `Accept`, so the redirect must say `Vary: Accept`.
    negotiated: bool = False

    @property
    def name(self) -> str:
        """The canonical string: `w256-h256-cover-q80`, `w1280-contain-q80`, `h300-contain-up`."""
        parts = []
        if self.width is not None:
            parts.append(f"w{self.width}")
        if self.height is not None:
            parts.append(f"h{self.height}")
        parts.append(self.resize)
        if self.format.lossy:
            parts.append(f"q{self.quality}")
        if self.enlarge:
            parts.append("up")
        return "-".join(parts)

    def key(self, collection: str, image_id: str) -> str:
        return rendition_key(collection, image_id, self.name, self.format.extension)


def requested(query: Mapping[str, str]) -> bool:
    """Whether the query asks for a rendition at all (else the original is served)."""
    return any(name in query for name in PARAMETERS)


def _one(query: Mapping[str, str], name: str) -> str | None:
    values = query.getall(name, []) if hasattr(query, "getall") else [query[name]] if name in query else []
    if len(values) > 1:
        raise Invalid(f"{name}: given more than once", code=f"invalid_{name}")
    return values[0] if values else None


def _dimension(query: Mapping[str, str], name: str, alias: str, limit: int) -> int | None:
    raw, short = _one(query, name), _one(query, alias)
    if raw is not None and short is not None:
        raise Invalid(f"{name}: given both as {name!r} and as {alias!r}", code=f"invalid_{name}")
    shown = name if raw is not None else alias
    raw = raw if raw is not None else short
    if raw is None:
        return None
    if _NUMBER.fullmatch(raw) is None or not 1 <= int(raw) <= limit:
        raise Invalid(f"{shown}: must be a whole number of pixels from 1 to {limit}", code=f"invalid_{name}")
    return int(raw)


def _choice(query: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str | None:
    raw = _one(query, name)
    if raw is not None and raw not in choices:
        raise Invalid(f"{name}: must be one of {', '.join(choices)}", code=f"invalid_{name}")
    return raw


def _preset(config: RenditionsConfig, name: str) -> PresetConfig:
    for preset in config.presets:
        if preset.name == name:
            return preset
    known = ", ".join(p.name for p in config.presets) or "none are configured"
    raise Invalid(f"preset: no preset named {name[:64]!r} ({known})", code="unknown_preset")


def parse(query: Mapping[str, str], config: RenditionsConfig) -> Wanted:
    """The rendition the query asks for; `Invalid` naming the first bad parameter."""
    for name in query:
        if name not in PARAMETERS:
            raise Invalid(f"unknown query parameter {name[:64]!r}", code="unknown_parameter")
    preset_name = _one(query, "preset")
    if not config.free_sizes:
        for name in query:
            if name != "preset":
                raise Invalid(f"{name}: only presets are served here (preset=NAME)", code="presets_only")
        if preset_name is None:
            raise Invalid("preset: required (only presets are served here)", code="presets_only")
    base = Wanted(None, None, "", "origin", DEFAULT_QUALITY, False)
    if preset_name is not None:
        preset = _preset(config, preset_name)
        base = Wanted(preset.width or None, preset.height or None, preset.resize, preset.format, preset.quality, False)
    width = _dimension(query, "width", "w", config.max_dimension)
    height = _dimension(query, "height", "h", config.max_dimension)
    resize = _choice(query, "resize", RESIZES)
    fmt = _choice(query, "format", FORMATS)
    quality = _one(query, "quality")
    if quality is not None and (_NUMBER.fullmatch(quality) is None or not MIN_QUALITY <= int(quality) <= MAX_QUALITY):
        raise Invalid(f"quality: must be a whole number from {MIN_QUALITY} to {MAX_QUALITY}", code="invalid_quality")
    enlarge = _one(query, "enlarge")
    if enlarge is not None and enlarge.lower() not in _FLAGS:
        raise Invalid("enlarge: must be true or false", code="invalid_enlarge")
    if width is not None or height is not None:
        # Sizes given in the query replace the preset's both, not one side of it.
        base = replace(base, width=width, height=height)
    return replace(
        base,
        resize=resize or base.resize,
        format=fmt or base.format,
        quality=int(quality) if quality is not None else base.quality,
        enlarge=_FLAGS[enlarge.lower()] if enlarge is not None else base.enlarge,
    )


def _accepts(accept: str) -> set[str]:
    """The media types an `Accept` header allows (q > 0)."""
    allowed = set()
    for item in accept.split(",")[:64]:
        media, *params = (part.strip() for part in item.split(";"))
        q = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        if q > 0:
            allowed.add(media.lower())
    return allowed


def resolve(wanted: Wanted, source_format: str, accept: str, max_dimension: int) -> Spec:
    """The exact rendition for a source of `source_format` (a record's `format`) and a client
    sending `accept`."""
    negotiated = wanted.format == "auto"
    if negotiated:
        allowed = _accepts(accept)
        name = "avif" if "image/avif" in allowed else "webp" if "image/webp" in allowed else _ORIGIN.get(source_format, "jpeg")
    elif wanted.format == "origin":
        name = _ORIGIN.get(source_format, "jpeg")
    else:
        name = wanted.format
    fmt = OUTPUTS[name]
    width, height = wanted.width, wanted.height
    if width is None and height is None:
        # A conversion alone is still bounded, so no request stores an unbounded rendition.
        width = height = max_dimension
        resize = "contain"
    elif width is None or height is None:
        # With one side given the other follows from the ratio: nothing to crop or stretch.
        resize = "contain"
    else:
        resize = wanted.resize or "cover"
    return Spec(width, height, resize, fmt, wanted.quality if fmt.lossy else 0, wanted.enlarge, negotiated)

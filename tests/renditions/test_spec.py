"""The rendition spec alone: parsing, presets, format negotiation, canonical names and keys, and
the `renditions` configuration's validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from multidict import MultiDict

from gateway.config import PresetConfig, RenditionsConfig, load_config
from gateway.errors import ConfigError, Invalid
from gateway.renditions.spec import Wanted, parse, requested, resolve

CONFIG = RenditionsConfig()


def query(text: str) -> MultiDict[str]:
    from urllib.parse import parse_qsl

    return MultiDict(parse_qsl(text, keep_blank_values=True))


def spec_name(text: str, source: str = "jpeg", accept: str = "") -> str:
    spec = resolve(parse(query(text), CONFIG), source, accept, CONFIG.max_dimension)
    return f"{spec.name}.{spec.format.extension}"


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("width=256&height=256", "w256-h256-cover-q80.jpg"),
        ("w=256&h=256&format=webp", "w256-h256-cover-q80.webp"),
        ("preset=thumb", "w256-h256-cover-q80.webp"),
        ("preset=preview", "w1280-h1280-contain-q80.webp"),
        ("width=300", "w300-contain-q80.jpg"),
        ("width=300&resize=cover", "w300-contain-q80.jpg"),  # one side: nothing to crop
        ("height=300&format=png&quality=50", "h300-contain.png"),  # lossless: quality is moot
        ("width=10&height=20&resize=fill&enlarge=true", "w10-h20-fill-q80-up.jpg"),
        ("width=10&enlarge=false", "w10-contain-q80.jpg"),
        ("format=webp", "w2500-h2500-contain-q80.webp"),
    ],
)
def test_canonical_names(text: str, name: str) -> None:
    assert spec_name(text) == name


@pytest.mark.parametrize(("source", "extension"), [("jpeg", "jpg"), ("png", "png"), ("gif", "gif"), ("webp", "webp"), ("avif", "avif"), ("tiff", "jpg"), ("bmp", "jpg"), ("heif", "jpg")])
def test_origin_format_by_source(source: str, extension: str) -> None:
    assert spec_name("width=10&format=origin", source).endswith("." + extension)
    assert spec_name("width=10", source).endswith("." + extension)


def test_auto_is_negotiated() -> None:
    wanted = parse(query("width=10&format=auto"), CONFIG)
    assert resolve(wanted, "png", "image/avif,image/webp", 2500).format.name == "avif"
    assert resolve(wanted, "png", "image/webp;q=0.9, image/avif;q=0", 2500).format.name == "webp"
    assert resolve(wanted, "png", "text/html", 2500).format.name == "png"
    assert resolve(wanted, "png", "", 2500).negotiated
    assert not resolve(parse(query("width=10&format=webp"), CONFIG), "png", "image/avif", 2500).negotiated


def test_key_layout() -> None:
    spec = resolve(parse(query("preset=thumb"), CONFIG), "jpeg", "", 2500)
    assert spec.key("pics", "a" * 24) == f"pics/_renditions/{'a' * 24}/w256-h256-cover-q80.webp"


def test_requested_only_by_rendition_parameters() -> None:
    assert not requested(query(""))
    assert not requested(query("download=1"))
    assert requested(query("w=1"))


def test_presets_only_and_overrides() -> None:
    only = RenditionsConfig(free_sizes=False)
    assert parse(query("preset=thumb"), only) == Wanted(256, 256, "cover", "webp", 80, False)
    for text in ("width=10", "preset=thumb&quality=90", ""):
        with pytest.raises(Invalid) as refused:
            parse(query(text), only)
        assert refused.value.code == "presets_only"
    assert parse(query("preset=thumb&quality=90&format=avif"), CONFIG) == Wanted(256, 256, "cover", "avif", 90, False)
    assert parse(query("preset=thumb&width=64"), CONFIG) == Wanted(64, None, "cover", "webp", 80, False)


def test_blank_and_repeated_values_refused() -> None:
    for text, code in (("width=", "invalid_width"), ("format=", "invalid_format"), ("quality=", "invalid_quality"), ("preset=", "unknown_preset"), ("resize=fill&resize=cover", "invalid_resize")):
        with pytest.raises(Invalid) as refused:
            parse(query(text), CONFIG)
        assert refused.value.code == code


@pytest.mark.parametrize(
    ("renditions", "key"),
    [
        ({"max_dimension": 0}, "renditions.max_dimension"),
        ({"workers": 0}, "renditions.workers"),
        ({"queue_size": -1}, "renditions.queue_size"),
        ({"presets": [{"name": "Bad Name", "width": 10}]}, "renditions.presets[0].name"),
        ({"presets": [{"name": "a", "width": 10}, {"name": "a", "width": 20}]}, "renditions.presets[0].name"),
        ({"presets": [{"name": "a"}]}, "renditions.presets[0].width"),
        ({"presets": [{"name": "a", "width": 10, "resize": "crop"}]}, "renditions.presets[0].resize"),
        ({"presets": [{"name": "a", "width": 10, "format": "bmp"}]}, "renditions.presets[0].format"),
        ({"presets": [{"name": "a", "width": 10, "quality": 5}]}, "renditions.presets[0].quality"),
        ({"presets": [{"name": "a", "width": 10, "colour": "red"}]}, "renditions.presets[0].colour"),
    ],
)
def test_bad_configuration_names_its_key(tmp_path: Path, renditions: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_config(environ={}, overrides={"data_dir": str(tmp_path), "renditions": renditions})
    assert str(refused.value).startswith(key)


def test_presets_from_yaml_and_environment(tmp_path: Path) -> None:
    config = load_config(
        environ={"RENDITION_FREE_SIZES": "false", "RENDITION_WORKERS": "3"},
        overrides={"data_dir": str(tmp_path), "renditions": {"presets": [{"name": "square", "width": 100, "height": 100}]}},
    )
    assert config.renditions.presets == (PresetConfig("square", 100, 100, "cover", "webp", 80),)
    assert (config.renditions.free_sizes, config.renditions.workers) == (False, 3)

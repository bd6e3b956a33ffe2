"""Configuration: a frozen dataclass tree, loaded from YAML, then overridden by the environment.

Precedence, lowest first: the dataclass defaults (kept equal to `config/gateway.yaml`, which a
test checks), the YAML file, then environment variables. A bad value stops start-up with one
line that names the key; secrets are wrapped in `Secret` so they never print.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from gateway.errors import ConfigError
from gateway.names import COLLECTION_PATTERN, COLLECTION_RE

MiB = 1024 * 1024

# The backends `storage.backend` and `metadata.backend` may name.
StorageBackend = Literal["filesystem", "s3"]
MetadataBackend = Literal["sqlite", "mongodb"]


class Secret(str):
    """A string that masks itself when printed, logged or repr'd; `.reveal()` gives the value."""

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        # str.__format__ would format the value itself for any non-empty spec (f"{s:>20}").
        return format(repr(self), spec)

    def reveal(self) -> str:
        return str.__str__(self)


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    # Behind a reverse proxy, honour X-Forwarded-Proto/Host when building absolute URLs.
    trust_forwarded_headers: bool = False


@dataclass(frozen=True)
class S3Config:
    endpoint_url: str | None = None
    # The endpoint browsers reach; presigned URLs are signed for it (compose: gateway talks to
    # minio:9000, browsers to localhost:9000).
    public_endpoint_url: str | None = None
    bucket: str = "images"
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: Secret | None = None
    addressing_style: str = "path"
    # Bodies up to this size go up in one PutObject; larger ones as a multipart upload of parts
    # of this size (S3's minimum part size is 5 MiB).
    part_size: int = 8 * MiB


@dataclass(frozen=True)
class StorageConfig:
    backend: StorageBackend = "filesystem"
    presign_ttl_seconds: int = 3600
    # HMAC key for the filesystem backend's signed download links; generated once and kept in
    # the data directory when not configured.
    signing_secret: Secret | None = None
    s3: S3Config = field(default_factory=S3Config)


@dataclass(frozen=True)
class MetadataConfig:
    backend: MetadataBackend = "sqlite"
    mongodb_url: Secret | None = None
    mongodb_db: str = "image_gateway"


@dataclass(frozen=True)
class LimitsConfig:
    max_upload_bytes: int = 50 * MiB
    # Pillow's own decompression-bomb threshold.
    max_image_pixels: int = 89_478_485
    max_properties_bytes: int = 64 * 1024
    max_form_fields: int = 200
    # A client that stops sending a body for this long gets 408, so stalled uploads cannot hold
    # connections (and half-written objects) forever.
    body_idle_timeout_seconds: float = 60.0
    # A dataset import's zip, and separately everything in it once uncompressed.
    max_archive_bytes: int = 2048 * MiB


@dataclass(frozen=True)
class ApiKeyConfig:
    name: str = ""
    # Hex SHA-256 of the key; the key itself is never configured.
    sha256: str = ""
    scopes: tuple[str, ...] = ("read",)
    # fnmatch patterns of the collections the key may use.
    collections: tuple[str, ...] = ("*",)


@dataclass(frozen=True)
class AuthConfig:
    enabled: bool = False
    identification_url: str | None = None
    identification_timeout_seconds: float = 5.0
    identification_cache_seconds: float = 60.0
    identification_cache_size: int = 10_000
    oidc_jwks_uri: str | None = None
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_algorithms: tuple[str, ...] = ("RS256",)
    oidc_user_claim: str = "sub"
    # An unknown `kid` refetches the key set at most this often.
    oidc_jwks_refresh_seconds: float = 30.0
    api_keys: tuple[ApiKeyConfig, ...] = ()
    # fnmatch patterns of collections readable without credentials.
    public_collections: tuple[str, ...] = ()
    # all: any authenticated user reaches every image; user: only the ones they uploaded.
    scope: str = "all"


@dataclass(frozen=True)
class CorsConfig:
    # "*" (the default, as the original service's Express `cors()`): any origin may call, never
    # with credentials. A list: only those origins. Empty: no CORS headers at all.
    allowed_origins: tuple[str, ...] = ("*",)
    max_age_seconds: int = 600


@dataclass(frozen=True)
class EventsConfig:
    # Replicas follow the shared event log by polling where the database has no change streams.
    poll_interval_seconds: float = 0.25
    retention_seconds: int = 3600


@dataclass(frozen=True)
class PresetConfig:
    name: str = ""
    # 0: that side is free (the other one bounds the size).
    width: int = 0
    height: int = 0
    resize: str = "cover"
    format: str = "webp"
    quality: int = 80


@dataclass(frozen=True)
class RenditionsConfig:
    presets: tuple[PresetConfig, ...] = (
        PresetConfig("thumb", 256, 256, "cover", "webp", 80),
        PresetConfig("preview", 1280, 1280, "contain", "webp", 80),
    )
    # false: only presets are served (imgproxy's ONLY_PRESETS), so clients cannot make the
    # service store a rendition of every size.
    free_sizes: bool = True
    max_dimension: int = 2500
    # Renders at once (libvips threads inside each), and how many more may wait before 503.
    workers: int = 2
    queue_size: int = 16


@dataclass(frozen=True)
class UploadsConfig:
    # A resumable (tus) upload not finished this long after its last byte expires and is swept.
    tus_expiry_seconds: int = 24 * 3600
    # How long a direct-upload form is valid; its pending upload expires with it.
    direct_expiry_seconds: int = 15 * 60
    # How often each replica looks for expired uploads and idempotency keys.
    sweep_interval_seconds: float = 60.0
    # A repeated Idempotency-Key is answered like the first request for this long.
    idempotency_ttl_seconds: int = 24 * 3600


@dataclass(frozen=True)
class Config:
    data_dir: Path = Path("./data")
    default_collection: str = "images"
    log_level: str = "info"
    # json, text, or auto: text on a terminal, JSON lines otherwise (containers, files).
    log_format: str = "auto"
    server: ServerConfig = field(default_factory=ServerConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    metadata: MetadataConfig = field(default_factory=MetadataConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    cors: CorsConfig = field(default_factory=CorsConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    renditions: RenditionsConfig = field(default_factory=RenditionsConfig)
    uploads: UploadsConfig = field(default_factory=UploadsConfig)


_BOOLEANS = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}


def _boolean(value: Any, key: str) -> bool:
    """Strict, as Starlette's config: a typo stops start-up instead of turning a switch on."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _BOOLEANS:
        return _BOOLEANS[value.strip().lower()]
    raise ConfigError(f"{key}: expected true or false (or 1/0, yes/no, on/off), got {_shown(key, value)}")


def _use_authentication(raw: str) -> bool:
    # Seed 001: "set this variable to any value to enforce authentication"; empty, 0, false, no
    # and off are the ways its deployments say they mean it off. The one lenient boolean.
    return raw.strip().lower() not in ("", "0", "false", "no", "off")


# Environment variable -> dotted config path. Seed 001's own names are kept. When several name
# one key, the later one wins: the service's own S3_REGION over the SDKs' AWS_REGION (which AWS
# sets on its compute services) over AWS_DEFAULT_REGION.
ENVIRONMENT: dict[str, str] = {
    "APP_HOST": "server.host",
    "APP_PORT": "server.port",
    "TRUST_FORWARDED_HEADERS": "server.trust_forwarded_headers",
    "DATA_DIR": "data_dir",
    "DEFAULT_COLLECTION": "default_collection",
    "LOG_LEVEL": "log_level",
    "LOG_FORMAT": "log_format",
    "STORAGE_BACKEND": "storage.backend",
    "PRESIGN_TTL_SECONDS": "storage.presign_ttl_seconds",
    "SIGNING_SECRET": "storage.signing_secret",
    "S3_ENDPOINT_URL": "storage.s3.endpoint_url",
    "S3_PUBLIC_ENDPOINT_URL": "storage.s3.public_endpoint_url",
    "S3_BUCKET": "storage.s3.bucket",
    "AWS_DEFAULT_REGION": "storage.s3.region",
    "AWS_REGION": "storage.s3.region",
    "S3_REGION": "storage.s3.region",
    "AWS_ACCESS_KEY_ID": "storage.s3.access_key_id",
    "AWS_SECRET_ACCESS_KEY": "storage.s3.secret_access_key",
    "METADATA_BACKEND": "metadata.backend",
    "MONGODB_URL": "metadata.mongodb_url",
    "MONGODB_DB": "metadata.mongodb_db",
    "MAX_UPLOAD_BYTES": "limits.max_upload_bytes",
    "MAX_ARCHIVE_BYTES": "limits.max_archive_bytes",
    "MAX_IMAGE_PIXELS": "limits.max_image_pixels",
    "USE_AUTHENTICATION": "auth.enabled",
    "IDENTIFICATION_URL": "auth.identification_url",
    "OIDC_JWKS_URI": "auth.oidc_jwks_uri",
    "OIDC_ISSUER": "auth.oidc_issuer",
    "OIDC_AUDIENCE": "auth.oidc_audience",
    "PUBLIC_COLLECTIONS": "auth.public_collections",
    "AUTH_SCOPE": "auth.scope",
    "CORS_ALLOWED_ORIGINS": "cors.allowed_origins",
    "RENDITION_FREE_SIZES": "renditions.free_sizes",
    "RENDITION_MAX_DIMENSION": "renditions.max_dimension",
    "RENDITION_WORKERS": "renditions.workers",
    "RENDITION_QUEUE_SIZE": "renditions.queue_size",
}


def _cast(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None or value == "":
            return None
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return _cast(value, inner, key)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ConfigError(f"{key}: must be {' or '.join(repr(choice) for choice in choices)}")
        return value
    if origin is tuple:
        # A comma-separated string from the environment, or a YAML list.
        items = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise ConfigError(f"{key}: expected a list")
        return tuple(_cast(item, typing.get_args(hint)[0], f"{key}[{i}]") for i, item in enumerate(items))
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping")
        return _build(hint, value, key + ".")
    try:
        if hint is bool:
            return _boolean(value, key)
        if hint is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if hint is float:
            return float(value)
        if hint is Path:
            return Path(str(value))
        if hint is Secret:
            # str() of a Secret is its mask, so an already wrapped value is kept as it is.
            return value if isinstance(value, Secret) else Secret(str(value))
        if hint is str:
            if isinstance(value, (dict, list)):
                raise ValueError
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: expected {getattr(hint, '__name__', hint)}, got {_shown(key, value)}") from None
    raise ConfigError(f"{key}: unsupported type")  # pragma: no cover - guards the dataclass tree itself


def _shown(key: str, value: Any) -> str:
    return "a value that is not shown" if _is_secret_key(key) else repr(value)


def _is_secret_key(key: str) -> bool:
    return any(word in key for word in ("secret", "mongodb_url", "password"))


def _build(cls: type, values: Mapping[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for name in values:
        if name not in names:
            raise ConfigError(f"{prefix}{name}: unknown configuration key")
    kwargs = {name: _cast(values[name], hints[name], prefix + name) for name in values}
    return cls(**kwargs)


def _as_tree(config: Config) -> dict[str, Any]:
    return dataclasses.asdict(config)


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    *parents, last = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`override` laid over `base`, mapping by mapping; neither is changed."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def default_config_path() -> Path | None:
    candidate = Path("config/gateway.yaml")
    return candidate if candidate.is_file() else None


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path}: not valid YAML ({exc.__class__.__name__})") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path}: expected a mapping at the top level")
    return loaded


def load_config(
    path: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the configuration: defaults, then the YAML file, then `overrides`, then the environment.

    `path` None means `GATEWAY_CONFIG` or `config/gateway.yaml` when present. Tests pass
    `environ={}` and a dict of `overrides` to build an app from data alone.
    """
    environ = os.environ if environ is None else environ
    if path is None and environ.get("GATEWAY_CONFIG"):
        path = Path(environ["GATEWAY_CONFIG"])
    elif path is None:
        path = default_config_path()
    tree: dict[str, Any] = {}
    if path is not None:
        tree = merge(tree, read_yaml(path))
    if overrides:
        tree = merge(tree, overrides)
    for variable, dotted in ENVIRONMENT.items():
        if variable in environ:
            raw = environ[variable]
            _set_dotted(tree, dotted, _use_authentication(raw) if variable == "USE_AUTHENTICATION" else raw)
    if environ.get("MONGODB_URL") and "METADATA_BACKEND" not in environ:
        # Seed 001 configured MongoDB by its URL alone.
        _set_dotted(tree, "metadata.backend", "mongodb")
    config = _build(Config, tree)
    validate(config)
    return config


def validate(config: Config) -> None:
    def require(condition: bool, key: str, message: str) -> None:
        if not condition:
            raise ConfigError(f"{key}: {message}")

    require(0 <= config.server.port <= 65535, "server.port", "must be between 0 and 65535")
    require(
        1 <= config.storage.presign_ttl_seconds <= 7 * 24 * 3600,
        "storage.presign_ttl_seconds",
        "must be between 1 and 604800 (S3's limit of 7 days)",
    )
    require(config.limits.max_upload_bytes > 0, "limits.max_upload_bytes", "must be positive")
    require(config.limits.max_image_pixels > 0, "limits.max_image_pixels", "must be positive")
    require(config.limits.max_properties_bytes > 0, "limits.max_properties_bytes", "must be positive")
    require(config.limits.max_form_fields > 0, "limits.max_form_fields", "must be positive")
    require(config.limits.body_idle_timeout_seconds > 0, "limits.body_idle_timeout_seconds", "must be positive")
    require(
        COLLECTION_RE.fullmatch(config.default_collection) is not None and ".." not in config.default_collection,
        "default_collection",
        f"must match ^{COLLECTION_PATTERN}$",
    )
    require(
        config.log_level.lower() in ("debug", "info", "warning", "error"),
        "log_level",
        "must be debug, info, warning or error",
    )
    require(
        config.storage.signing_secret is None or len(config.storage.signing_secret) >= 16,
        "storage.signing_secret",
        "must be at least 16 characters",
    )
    s3 = config.storage.s3
    require(s3.part_size >= 5 * MiB, "storage.s3.part_size", "must be at least 5 MiB (S3's minimum part size)")
    require(s3.addressing_style in ("path", "virtual", "auto"), "storage.s3.addressing_style", "must be path, virtual or auto")
    for key, url in (("storage.s3.endpoint_url", s3.endpoint_url), ("storage.s3.public_endpoint_url", s3.public_endpoint_url)):
        require(url is None or url.startswith(("http://", "https://")), key, "must be an http(s) URL")
    if config.storage.backend == "s3":
        require(bool(s3.bucket), "storage.s3.bucket", "is required for the s3 backend")
    if config.metadata.backend == "mongodb":
        require(config.metadata.mongodb_url is not None, "metadata.mongodb_url", "is required for the mongodb backend (MONGODB_URL)")
        require(
            config.metadata.mongodb_url is None or config.metadata.mongodb_url.reveal().startswith(("mongodb://", "mongodb+srv://")),
            "metadata.mongodb_url",
            "must start with mongodb:// or mongodb+srv://",
        )
        require(bool(config.metadata.mongodb_db), "metadata.mongodb_db", "must not be empty")
    if config.auth.enabled:
        require(
            bool(config.auth.identification_url or config.auth.oidc_jwks_uri or config.auth.api_keys),
            "auth.identification_url",
            "authentication is on but no credential is accepted: set IDENTIFICATION_URL, OIDC_JWKS_URI or auth.api_keys",
        )
    validate_auth(config.auth, require)
    require(config.log_format in ("auto", "json", "text"), "log_format", "must be auto, json or text")
    require(config.events.poll_interval_seconds > 0, "events.poll_interval_seconds", "must be positive")
    require(config.events.retention_seconds > 0, "events.retention_seconds", "must be positive")
    require(config.auth.identification_timeout_seconds > 0, "auth.identification_timeout_seconds", "must be positive")
    uploads = config.uploads
    require(uploads.tus_expiry_seconds > 0, "uploads.tus_expiry_seconds", "must be positive")
    require(
        1 <= uploads.direct_expiry_seconds <= 7 * 24 * 3600, "uploads.direct_expiry_seconds", "must be between 1 and 604800 (S3's limit of 7 days)"
    )
    require(uploads.sweep_interval_seconds > 0, "uploads.sweep_interval_seconds", "must be positive")
    require(uploads.idempotency_ttl_seconds > 0, "uploads.idempotency_ttl_seconds", "must be positive")
    validate_renditions(config.renditions, require)


# The rendition vocabulary, here because config validates presets with it (renditions.spec reads it).
RESIZES = ("cover", "contain", "fill")
FORMATS = ("origin", "jpeg", "png", "webp", "avif", "auto")


def validate_renditions(renditions: RenditionsConfig, require: Any) -> None:
    require(1 <= renditions.max_dimension <= 16384, "renditions.max_dimension", "must be between 1 and 16384")
    require(renditions.workers >= 1, "renditions.workers", "must be at least 1")
    require(renditions.queue_size >= 0, "renditions.queue_size", "must not be negative")
    names = [preset.name for preset in renditions.presets]
    for i, preset in enumerate(renditions.presets):
        where = f"renditions.presets[{i}]"
        require(re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,31}", preset.name) is not None, f"{where}.name", "must match ^[a-z0-9][a-z0-9_-]{0,31}$")
        require(names.count(preset.name) == 1, f"{where}.name", "is used by another preset")
        require(preset.width > 0 or preset.height > 0, f"{where}.width", "a preset needs a width or a height")
        for side in ("width", "height"):
            require(0 <= getattr(preset, side) <= 16384, f"{where}.{side}", "must be between 0 and 16384")
        require(preset.resize in RESIZES, f"{where}.resize", f"must be one of {', '.join(RESIZES)}")
        require(preset.format in FORMATS, f"{where}.format", f"must be one of {', '.join(FORMATS)}")
        require(20 <= preset.quality <= 100, f"{where}.quality", "must be between 20 and 100")


def validate_auth(auth: AuthConfig, require: Any) -> None:
    require(not (auth.identification_url and auth.oidc_jwks_uri), "auth.oidc_jwks_uri", "use IDENTIFICATION_URL or OIDC_JWKS_URI, not both")
    for key, url in (("auth.identification_url", auth.identification_url), ("auth.oidc_jwks_uri", auth.oidc_jwks_uri)):
        require(url is None or url.startswith(("http://", "https://")), key, "must be an http(s) URL")
    # Only asymmetric algorithms: a public key must never verify an HMAC, and `none` nothing.
    require(
        bool(auth.oidc_algorithms) and all(a in ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA") for a in auth.oidc_algorithms),
        "auth.oidc_algorithms",
        "must list asymmetric algorithms only (RS*, PS*, ES*, EdDSA)",
    )
    require(auth.oidc_jwks_uri is None or bool(auth.oidc_issuer and auth.oidc_audience), "auth.oidc_issuer", "OIDC needs both an issuer and an audience")
    require(auth.identification_cache_seconds >= 0, "auth.identification_cache_seconds", "must not be negative")
    require(auth.identification_cache_size > 0, "auth.identification_cache_size", "must be positive")
    require(auth.oidc_jwks_refresh_seconds >= 0, "auth.oidc_jwks_refresh_seconds", "must not be negative")
    require(auth.scope in ("all", "user"), "auth.scope", "must be all or user")
    for i, api_key in enumerate(auth.api_keys):
        where = f"auth.api_keys[{i}]"
        require(re.fullmatch(r"[0-9a-f]{64}", api_key.sha256) is not None, f"{where}.sha256", "must be the key's SHA-256 as 64 lowercase hex digits")
        require(bool(api_key.name), f"{where}.name", "must not be empty")
        require(bool(api_key.scopes) and set(api_key.scopes) <= {"read", "write"}, f"{where}.scopes", "must list read and/or write")


def defaults_as_tree() -> dict[str, Any]:
    """The dataclass defaults as plain data, for the test that keeps config/gateway.yaml in step."""
    tree = _as_tree(Config())
    # YAML has lists where the dataclasses keep tuples.
    tree["auth"]["oidc_algorithms"] = list(tree["auth"]["oidc_algorithms"])
    tree["auth"]["api_keys"] = list(tree["auth"]["api_keys"])
    tree["auth"]["public_collections"] = list(tree["auth"]["public_collections"])
    tree["cors"]["allowed_origins"] = list(tree["cors"]["allowed_origins"])
    tree["renditions"]["presets"] = list(tree["renditions"]["presets"])
    tree["data_dir"] = str(tree["data_dir"])
    return tree

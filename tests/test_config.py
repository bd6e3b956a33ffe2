"""Configuration: the YAML file and the dataclass defaults agree, the environment overrides every
key it names, bad values stop start-up with one line naming the key, and secrets never print."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from gateway import cli
from gateway.config import ENVIRONMENT, Config, Secret, defaults_as_tree, load_config, read_yaml
from gateway.errors import ConfigError

YAML = Path(__file__).resolve().parent.parent / "config" / "gateway.yaml"

MONGO = {"MONGODB_URL": "mongodb://db:27017"}
IDENTIFY = {"IDENTIFICATION_URL": "http://auth.internal/identify"}


def attribute(config: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        config = getattr(config, part)
    return config


def write(tmp_path: Path, text: str, name: str = "gateway.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def config_error(environ: dict[str, str] | None = None, path: Path | None = None, **kwargs: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=environ or {}, **kwargs)
    message = str(caught.value)
    assert "\n" not in message, "a configuration error is one line"
    return message


# --- the YAML file is the defaults -------------------------------------------------------------


def _leaves(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def test_yaml_file_is_exactly_the_dataclass_defaults() -> None:
    from_yaml = _leaves(read_yaml(YAML))
    defaults = _leaves(defaults_as_tree())
    # `./data` and `data` are one path; str(Path("./data")) is "data".
    assert Path(from_yaml.pop("data_dir")) == Path(defaults.pop("data_dir"))
    assert from_yaml == defaults
    # Same types too: `5` where the default is `5.0` would be a drift.
    assert {k: type(v) for k, v in from_yaml.items()} == {k: type(v) for k, v in defaults.items()}
    assert load_config(YAML, environ={}) == Config()


def test_yaml_comments_name_every_environment_variable_on_its_key() -> None:
    documented: dict[str, str] = {}
    for line in YAML.read_text(encoding="utf-8").splitlines():
        match = re.match(r"\s*(\w+):.*?#\s*\[([A-Z0-9_, ]+)\]", line)
        if match:
            for variable in match.group(2).split(","):
                documented[variable.strip()] = match.group(1)
    assert documented == {variable: dotted.rsplit(".", 1)[-1] for variable, dotted in ENVIRONMENT.items()}


# --- the environment -----------------------------------------------------------------------------

# Variable -> (value, the attribute it must produce, other variables the value needs to be valid).
SAMPLES: dict[str, tuple[str, Any, dict[str, str]]] = {
    "APP_HOST": ("0.0.0.0", "0.0.0.0", {}),
    "APP_PORT": ("9090", 9090, {}),
    "TRUST_FORWARDED_HEADERS": ("true", True, {}),
    "DATA_DIR": ("/srv/images", Path("/srv/images"), {}),
    "DEFAULT_COLLECTION": ("photos", "photos", {}),
    "LOG_LEVEL": ("debug", "debug", {}),
    "LOG_FORMAT": ("json", "json", {}),
    "STORAGE_BACKEND": ("s3", "s3", {}),
    "PRESIGN_TTL_SECONDS": ("600", 600, {}),
    "SIGNING_SECRET": ("0123456789abcdef-signing", "0123456789abcdef-signing", {}),
    "S3_ENDPOINT_URL": ("http://minio:9000", "http://minio:9000", {}),
    "S3_PUBLIC_ENDPOINT_URL": ("http://localhost:9000", "http://localhost:9000", {}),
    "S3_BUCKET": ("gallery", "gallery", {}),
    "AWS_DEFAULT_REGION": ("eu-west-1", "eu-west-1", {}),
    "AWS_REGION": ("eu-west-2", "eu-west-2", {}),
    "S3_REGION": ("eu-west-3", "eu-west-3", {}),
    "AWS_ACCESS_KEY_ID": ("AKIAEXAMPLE", "AKIAEXAMPLE", {}),
    "AWS_SECRET_ACCESS_KEY": ("wJalrXUtnFEMI/K7MDENG", "wJalrXUtnFEMI/K7MDENG", {}),
    "METADATA_BACKEND": ("mongodb", "mongodb", MONGO),
    "MONGODB_URL": ("mongodb://user:pw@db:27017/?authSource=admin", "mongodb://user:pw@db:27017/?authSource=admin", {}),
    "MONGODB_DB": ("gallery", "gallery", {}),
    "MAX_UPLOAD_BYTES": ("1048576", 1048576, {}),
    "MAX_IMAGE_PIXELS": ("1000000", 1_000_000, {}),
    "MAX_ARCHIVE_BYTES": ("1073741824", 1073741824, {}),
    "USE_AUTHENTICATION": ("1", True, IDENTIFY),
    "IDENTIFICATION_URL": ("http://auth.internal/identify", "http://auth.internal/identify", {}),
    "OIDC_JWKS_URI": ("https://idp.example/jwks", "https://idp.example/jwks", {"OIDC_ISSUER": "https://idp.example", "OIDC_AUDIENCE": "gateway"}),
    "OIDC_ISSUER": ("https://idp.example", "https://idp.example", {}),
    "OIDC_AUDIENCE": ("gateway", "gateway", {}),
    "PUBLIC_COLLECTIONS": ("public, demo-*", ("public", "demo-*"), {}),
    "AUTH_SCOPE": ("user", "user", {}),
    "CORS_ALLOWED_ORIGINS": ("https://app.example", ("https://app.example",), {}),
    "RENDITION_FREE_SIZES": ("false", False, {}),
    "RENDITION_MAX_DIMENSION": ("1024", 1024, {}),
    "RENDITION_WORKERS": ("4", 4, {}),
    "RENDITION_QUEUE_SIZE": ("64", 64, {}),
}


def test_samples_cover_the_environment_table() -> None:
    # A variable added to ENVIRONMENT needs a sample here.
    assert ENVIRONMENT.keys() <= SAMPLES.keys()


@pytest.mark.parametrize("variable", list(ENVIRONMENT))
def test_every_environment_variable_overrides_its_key(variable: str) -> None:
    raw, expected, needs = SAMPLES[variable]
    dotted = ENVIRONMENT[variable]
    assert attribute(Config(), dotted) != expected, "the sample must differ from the default"
    value = attribute(load_config(YAML, environ={**needs, variable: raw}), dotted)
    if isinstance(value, Secret):
        value = value.reveal()
    assert value == expected
    assert type(value) is type(expected)


def test_environment_beats_the_yaml_file(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  port: 9999\n  host: 0.0.0.0\n")
    config = load_config(path, environ={"APP_PORT": "7000"})
    assert (config.server.host, config.server.port) == ("0.0.0.0", 7000)


def test_the_services_own_region_variable_wins_over_the_sdks() -> None:
    # AWS sets AWS_REGION on its compute services; S3_REGION is what the operator set for the bucket.
    environ = {"S3_REGION": "eu-central-1", "AWS_REGION": "us-west-2", "AWS_DEFAULT_REGION": "ap-south-1"}
    assert load_config(YAML, environ=environ).storage.s3.region == "eu-central-1"
    environ.pop("S3_REGION")
    assert load_config(YAML, environ=environ).storage.s3.region == "us-west-2"


def test_empty_variable_clears_an_optional_key(tmp_path: Path) -> None:
    path = write(tmp_path, "storage:\n  s3:\n    endpoint_url: http://minio:9000\n")
    assert load_config(path, environ={}).storage.s3.endpoint_url == "http://minio:9000"
    assert load_config(path, environ={"S3_ENDPOINT_URL": ""}).storage.s3.endpoint_url is None


def test_mongodb_url_alone_selects_mongodb() -> None:
    config = load_config(YAML, environ=MONGO)
    assert config.metadata.backend == "mongodb"
    assert config.metadata.mongodb_url is not None
    assert config.metadata.mongodb_url.reveal() == MONGO["MONGODB_URL"]


def test_mongodb_url_with_metadata_backend_sqlite_stays_on_sqlite() -> None:
    assert load_config(YAML, environ={**MONGO, "METADATA_BACKEND": "sqlite"}).metadata.backend == "sqlite"


def test_empty_mongodb_url_selects_nothing() -> None:
    config = load_config(YAML, environ={"MONGODB_URL": ""})
    assert (config.metadata.backend, config.metadata.mongodb_url) == ("sqlite", None)


@pytest.mark.parametrize("raw", ["", "0", "false", "FALSE", " 0 "])
def test_use_authentication_off(raw: str) -> None:
    assert load_config(YAML, environ={"USE_AUTHENTICATION": raw}).auth.enabled is False


@pytest.mark.parametrize("raw", ["1", "yes", "anything", "true", "TRUE"])
def test_use_authentication_on(raw: str) -> None:
    assert load_config(YAML, environ={"USE_AUTHENTICATION": raw, **IDENTIFY}).auth.enabled is True


def test_authentication_on_requires_an_identification_url() -> None:
    assert config_error({"USE_AUTHENTICATION": "1"}, YAML).startswith("auth.identification_url:")


# Every boolean but USE_AUTHENTICATION is strict: a typo must not land on the unsafe side.
TRUE_WORDS = ["true", "1", "yes", "on", "TRUE", "Yes", "ON", " true "]
FALSE_WORDS = ["false", "0", "no", "off", "FALSE", "No", "Off", " 0 "]
NOT_BOOLEANS = ["nope", "", "2", "enabled", "y", "t", "truee", "-1", "1.0"]


@pytest.mark.parametrize(("raw", "expected"), [(w, True) for w in TRUE_WORDS] + [(w, False) for w in FALSE_WORDS])
def test_trust_forwarded_headers_reads_the_usual_words(raw: str, expected: bool) -> None:
    assert load_config(YAML, environ={"TRUST_FORWARDED_HEADERS": raw}).server.trust_forwarded_headers is expected


@pytest.mark.parametrize("raw", NOT_BOOLEANS)
def test_trust_forwarded_headers_refuses_anything_else(raw: str) -> None:
    message = config_error({"TRUST_FORWARDED_HEADERS": raw}, YAML)
    assert message.startswith("server.trust_forwarded_headers:") and repr(raw) in message


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("false", False), ("1", True), ("0", False), ('"yes"', True), ('"off"', False), ('"0"', False)])
def test_yaml_booleans_given_as_booleans_numbers_or_strings(tmp_path: Path, value: str, expected: bool) -> None:
    path = write(tmp_path, f"server:\n  trust_forwarded_headers: {value}\n")
    assert load_config(path, environ={}).server.trust_forwarded_headers is expected


@pytest.mark.parametrize("value", ['"nope"', "2", "[true]", "{a: 1}", '""', "1.5"])
def test_yaml_booleans_refuse_anything_else(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, f"server:\n  trust_forwarded_headers: {value}\n")
    assert config_error(path=path).startswith("server.trust_forwarded_headers:")


@pytest.mark.parametrize("value", ['"anything"', '"nope"'])
def test_auth_enabled_in_yaml_is_strict_too(tmp_path: Path, value: str) -> None:
    # Seed 001's "any value" is about its environment variable, not the YAML key.
    path = write(tmp_path, f"auth:\n  enabled: {value}\n")
    assert config_error(path=path).startswith("auth.enabled:")


# --- bad values ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "key"),
    [
        ({"APP_PORT": "abc"}, "server.port"),
        ({"APP_PORT": "70000"}, "server.port"),
        ({"APP_PORT": "-1"}, "server.port"),
        ({"APP_PORT": "80.5"}, "server.port"),
        ({"STORAGE_BACKEND": "ftp"}, "storage.backend"),
        ({"METADATA_BACKEND": "postgres"}, "metadata.backend"),
        ({"PRESIGN_TTL_SECONDS": "0"}, "storage.presign_ttl_seconds"),
        ({"PRESIGN_TTL_SECONDS": "604801"}, "storage.presign_ttl_seconds"),
        ({"MONGODB_URL": "http://x"}, "metadata.mongodb_url"),
        ({"METADATA_BACKEND": "mongodb"}, "metadata.mongodb_url"),
        ({"MAX_UPLOAD_BYTES": "0"}, "limits.max_upload_bytes"),
        ({"MAX_IMAGE_PIXELS": "lots"}, "limits.max_image_pixels"),
        ({"DEFAULT_COLLECTION": "Bad/Name"}, "default_collection"),
        ({"LOG_LEVEL": "chatty"}, "log_level"),
        ({"S3_ENDPOINT_URL": "minio:9000"}, "storage.s3.endpoint_url"),
        ({"SIGNING_SECRET": "short"}, "storage.signing_secret"),
    ],
)
def test_bad_environment_value_names_its_key(environ: dict[str, str], key: str) -> None:
    assert config_error(environ, YAML).startswith(key + ":")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("colour: red\n", "colour"),
        ("server:\n  hots: 0.0.0.0\n", "server.hots"),
        ("storage:\n  s3:\n    bukket: x\n", "storage.s3.bukket"),
        ("server: 8080\n", "server"),
        ("server:\n  port: [1, 2]\n", "server.port"),
        ("server:\n  port: true\n", "server.port"),
        ("server:\n  host: {a: 1}\n", "server.host"),
        ("storage:\n  s3:\n    part_size: 1024\n", "storage.s3.part_size"),
    ],
)
def test_bad_yaml_value_names_its_key(tmp_path: Path, text: str, key: str) -> None:
    assert config_error(path=write(tmp_path, text)).startswith(key + ":")


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n", "server: [\n", "a: b: c\n", "\tserver: {}\n"])
def test_yaml_that_is_no_mapping_or_no_yaml_names_the_file(tmp_path: Path, text: str) -> None:
    # No key to name: the file is the "key".
    path = write(tmp_path, text)
    assert config_error(path=path).startswith(f"config file {path}:")


def test_missing_config_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    assert config_error(path=path).startswith(f"config file {path}:")


def test_empty_yaml_file_is_the_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "# nothing set\n"), environ={}) == Config()


# --- secrets never print -------------------------------------------------------------------------

SECRETS = {
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI-aws-secret-value",
    "MONGODB_URL": "mongodb://gallery:Hunter2Password@db:27017/gallery",
    "SIGNING_SECRET": "signing-secret-value-0123456789",
}
LEAKS = ("wJalrXUtnFEMI", "Hunter2Password", "signing-secret-value")


def assert_no_secret(text: str, environ: dict[str, str] | None = None) -> None:
    for leak in (*LEAKS, *(value for name, value in (environ or {}).items() if name in SECRETS)):
        assert leak not in text


def test_secrets_never_appear_when_the_config_is_printed() -> None:
    config = load_config(YAML, environ=SECRETS)
    assert config.storage.s3.secret_access_key is not None and config.storage.signing_secret is not None
    assert config.metadata.mongodb_url is not None
    # They are there, and usable ...
    assert config.storage.s3.secret_access_key.reveal() == SECRETS["AWS_SECRET_ACCESS_KEY"]
    assert config.metadata.mongodb_url.reveal() == SECRETS["MONGODB_URL"]
    assert config.storage.signing_secret.reveal() == SECRETS["SIGNING_SECRET"]
    # ... but never printed, however the config or a part of it is shown.
    for shown in (repr(config), str(config), f"{config}", "%s" % (config,), repr(config.storage), str(config.metadata)):
        assert_no_secret(shown)
    for secret in (config.storage.s3.secret_access_key, config.metadata.mongodb_url, config.storage.signing_secret):
        assert_no_secret(f"{secret!r} {secret!s} {secret} {secret:>40}" + "%s %r" % (secret, secret))


@pytest.mark.parametrize(
    "environ",
    [
        {**SECRETS, "APP_PORT": "abc"},
        {**SECRETS, "MONGODB_URL": "http://gallery:Hunter2Password@db"},
        {**SECRETS, "MONGODB_URL": "Hunter2Password"},
        {**SECRETS, "SIGNING_SECRET": "sekrit-Hunter2"},
        {**SECRETS, "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI", "STORAGE_BACKEND": "ftp"},
    ],
)
def test_secrets_never_appear_in_a_config_error(environ: dict[str, str]) -> None:
    assert_no_secret(config_error(environ, YAML), environ)


@pytest.mark.parametrize(
    "text",
    [
        "storage:\n  signing_secret: signing-secret-value-0123456789\n  sekret: x\n",
        'storage:\n  signing_secret: "signing-secret-value-0123456789\n',  # unterminated quote
        "metadata:\n  mongodb_url: mongodb://u:Hunter2Password@db\n  backend: [\n",
        "storage:\n  s3:\n    secret_access_key: wJalrXUtnFEMI\n    part_size: 1024\n",
        "storage:\n  signing_secret: Hunter2Password\n",  # too short
    ],
)
def test_secrets_in_the_yaml_file_never_appear_in_a_config_error(tmp_path: Path, text: str) -> None:
    assert_no_secret(config_error(path=write(tmp_path, text)))


def test_a_secret_passed_as_a_secret_keeps_its_value() -> None:
    # str() of a Secret is its mask; rebuilding a config from one must not store the mask.
    config = load_config(YAML, environ=SECRETS)
    again = load_config(None, environ={}, overrides=dataclasses.asdict(config))
    assert again == config
    assert again.storage.signing_secret is not None
    assert again.storage.signing_secret.reveal() == SECRETS["SIGNING_SECRET"]


# --- which file ----------------------------------------------------------------------------------


def test_explicit_config_file(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  port: 9999\n")
    assert load_config(path, environ={}).server.port == 9999


def test_gateway_config_variable_picks_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  port: 9998\n")
    assert load_config(environ={"GATEWAY_CONFIG": str(path)}).server.port == 9998


def test_explicit_file_wins_over_gateway_config(tmp_path: Path) -> None:
    chosen = write(tmp_path, "server:\n  port: 9997\n", "chosen.yaml")
    other = write(tmp_path, "server:\n  port: 1111\n", "other.yaml")
    assert load_config(chosen, environ={"GATEWAY_CONFIG": str(other)}).server.port == 9997


def test_gateway_config_naming_a_missing_file_is_an_error(tmp_path: Path) -> None:
    assert config_error({"GATEWAY_CONFIG": str(tmp_path / "absent.yaml")}).startswith("config file ")


def test_default_file_is_config_gateway_yaml_in_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "config").mkdir()
    write(tmp_path / "config", "server:\n  port: 9996\n")
    monkeypatch.chdir(tmp_path)
    assert load_config(environ={}).server.port == 9996
    monkeypatch.chdir(tmp_path / "config")  # no config/gateway.yaml here: the defaults
    assert load_config(environ={}) == Config()


# --- the command line ----------------------------------------------------------------------------


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in (*ENVIRONMENT, "GATEWAY_CONFIG"):
        monkeypatch.delenv(variable, raising=False)


def assert_one_line_naming(err: str, key: str) -> None:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert key in lines[0]


@pytest.mark.usefixtures("clean_environment")
def test_cli_refuses_a_bad_config_file_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write(tmp_path, "server:\n  port: abc\n")
    assert cli.main(["serve", "--config", str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert_one_line_naming(err, "server.port")


@pytest.mark.usefixtures("clean_environment")
def test_cli_config_option_wins_over_gateway_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GATEWAY_CONFIG", str(write(tmp_path, "log_level: info\n", "good.yaml")))
    bad = write(tmp_path, "storage:\n  backend: ftp\n", "bad.yaml")
    assert cli.main(["serve", "--config", str(bad)]) == 2
    assert_one_line_naming(capsys.readouterr().err, "storage.backend")


@pytest.mark.usefixtures("clean_environment")
def test_cli_reads_gateway_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GATEWAY_CONFIG", str(write(tmp_path, "limits:\n  max_upload_bytes: -5\n")))
    assert cli.main(["serve"]) == 2
    assert_one_line_naming(capsys.readouterr().err, "limits.max_upload_bytes")


@pytest.mark.usefixtures("clean_environment")
def test_cli_error_does_not_print_a_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MONGODB_URL", "http://gallery:Hunter2Password@db")
    assert cli.main(["serve", "--config", str(YAML)]) == 2
    err = capsys.readouterr().err
    assert_one_line_naming(err, "metadata.mongodb_url")
    assert_no_secret(err)

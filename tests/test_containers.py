"""The Dockerfile, compose files and nginx config, read as data (no Docker engine runs here) and
checked against the configuration code: every variable they set is one the gateway reads, ports
and healthchecks line up, dependencies wait for health, the image runs as a non-root user."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import ENVIRONMENT, load_config

pytestmark = pytest.mark.embedded
REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILES = ["docker-compose.yml", "docker-compose.scale.yml"]
# Read by the container itself (Dockerfile ENV) or by load_config directly.
GATEWAY_VARIABLES = set(ENVIRONMENT) | {"GATEWAY_CONFIG"}


def compose(name: str) -> dict[str, Any]:
    return yaml.safe_load((REPO / name).read_text())


def dockerfile() -> list[tuple[str, str]]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def resolved(value: str) -> str:
    """`${VAR:-default}` as compose resolves it with VAR unset."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def gateway_services(name: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in compose(name)["services"].items() if v.get("build") == "."}


def docker_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, rest in dockerfile():
        if keyword == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def test_dockerfile_runs_gateway_serve_as_non_root_with_a_healthcheck() -> None:
    instructions = dockerfile()
    keywords = [k for k, _ in instructions]
    base = dict(instructions)["FROM"]
    assert re.fullmatch(r"python:3\.\d+\.\d+-slim-\w+", base), "a slim Python base with a pinned tag"
    users = [rest for k, rest in instructions if k == "USER"]
    assert users and users[-1] not in ("root", "0"), "runs as a non-root user"
    assert keywords.index("USER") < keywords.index("CMD")
    assert dict(instructions)["CMD"] == '["gateway", "serve"]'
    healthcheck = dict(instructions)["HEALTHCHECK"]
    assert "/health" in healthcheck and "APP_PORT" in healthcheck
    # Dependencies are installed before the code is copied, so code edits reuse that layer.
    copies = [rest for k, rest in instructions if k in ("COPY", "RUN")]
    install_deps = next(i for i, r in enumerate(copies) if "requirements" in r)
    assert install_deps < next(i for i, r in enumerate(copies) if r.startswith("gateway "))
    env = docker_env()
    assert env["APP_PORT"] == "80" and env["GATEWAY_CONFIG"] == "/app/config/docker.yaml"
    assert set(env) - {"PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PIP_NO_CACHE_DIR", "PIP_DISABLE_PIP_VERSION_CHECK"} <= GATEWAY_VARIABLES
    assert "EXPOSE" in keywords and dict(instructions)["EXPOSE"] == env["APP_PORT"]


def test_docker_config_is_valid_and_serves_on_the_exposed_port() -> None:
    config = load_config(REPO / "config" / "docker.yaml", environ={})
    assert config.server.port == 80 and config.server.host == "0.0.0.0"
    assert config.storage.backend == "s3" and config.metadata.backend == "mongodb"
    assert str(config.data_dir) == docker_env()["DATA_DIR"]
    assert config.log_format == "json"


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_every_variable_compose_gives_the_gateway_is_one_it_reads(name: str) -> None:
    services = gateway_services(name)
    assert services, "a service built from this repository"
    for service in services.values():
        env = environment(service)
        unknown = set(env) - GATEWAY_VARIABLES
        assert not unknown, f"{name}: variables the gateway does not read: {unknown}"
        # With the image's own configuration plus this environment, the gateway starts.
        config = load_config(REPO / "config" / "docker.yaml", environ={k: resolved(v) for k, v in env.items()})
        assert config.server.port == int(env.get("APP_PORT", "80"))
        assert config.storage.backend == "s3" and config.metadata.backend == "mongodb"
        assert config.storage.s3.public_endpoint_url == "http://localhost:9000"


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_services_have_pinned_images_healthchecks_and_wait_for_health(name: str) -> None:
    services = compose(name)["services"]
    for service_name, service in services.items():
        if "image" in service and "build" not in service:
            assert re.search(r":[\w.-]*\d[\w.-]*$", service["image"]) and not service["image"].endswith(":latest"), f"{service_name}: pin the tag"
        one_shot = service.get("restart") == "no"
        if not one_shot:
            assert "healthcheck" in service, f"{service_name} has no healthcheck"
            test = service["healthcheck"]["test"]
            assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL")
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{service_name}: depends_on needs conditions"
        for dependency, condition in depends.items():
            assert dependency in services
            expected = "service_completed_successfully" if services[dependency].get("restart") == "no" else "service_healthy"
            assert condition == {"condition": expected}, f"{service_name} -> {dependency}"


def test_single_host_compose_matches_the_issue() -> None:
    services = compose("docker-compose.yml")["services"]
    minio, mongo, gateway = services["minio"], services["mongo"], services["gateway"]
    assert {"9000:9000", "9001:9001"} <= set(minio["ports"])
    assert "--console-address" in minio["command"] and ":9001" in minio["command"]
    minio_env = environment(minio)
    assert resolved(minio_env["MINIO_ROOT_USER"]) == resolved(minio_env["MINIO_ROOT_PASSWORD"]) == "minioadmin"
    assert minio.get("volumes") and mongo.get("volumes")
    env = environment(gateway)
    assert env["S3_ENDPOINT_URL"] == "http://minio:9000"
    assert env["S3_PUBLIC_ENDPOINT_URL"] == "http://localhost:9000"
    assert env["MONGODB_URL"] == "mongodb://mongo:27017"
    # The gateway's credentials are MinIO's, with the same defaults.
    assert env["AWS_ACCESS_KEY_ID"] == minio_env["MINIO_ROOT_USER"] and env["AWS_SECRET_ACCESS_KEY"] == minio_env["MINIO_ROOT_PASSWORD"]
    host_port, container_port = gateway["ports"][0].split(":")
    assert container_port == env["APP_PORT"] == "80"
    assert f"127.0.0.1:{env['APP_PORT']}/health" in " ".join(gateway["healthcheck"]["test"])
    assert "community edition is now distributed as source" in (REPO / "docker-compose.yml").read_text()


def test_scale_compose_has_replicas_a_proxy_distributed_minio_and_a_replica_set() -> None:
    services = compose("docker-compose.scale.yml")["services"]
    gateway = services["gateway"]
    assert gateway["deploy"]["replicas"] >= 2 and "ports" not in gateway
    minio_nodes = [s for s in services if re.fullmatch(r"minio\d", s)]
    assert len(minio_nodes) == 4
    for node in minio_nodes:
        assert "http://minio{1...4}/data" in services[node]["command"]
    mongo_nodes = [s for s in services if re.fullmatch(r"mongo\d", s)]
    assert len(mongo_nodes) == 3 and all("--replSet" in services[m]["command"] for m in mongo_nodes)
    init = " ".join(services["mongo-init"]["command"])
    assert "rs.initiate" in init and all(f"{m}:27017" in init for m in mongo_nodes)
    env = environment(gateway)
    assert env["MONGODB_URL"] == "mongodb://" + ",".join(f"{m}:27017" for m in mongo_nodes) + "/?replicaSet=rs0"
    assert env["S3_ENDPOINT_URL"] == "http://proxy:9000" and env["TRUST_FORWARDED_HEADERS"] == "true"
    assert "/ready" in " ".join(gateway["healthcheck"]["test"])
    proxy = services["proxy"]
    assert {"8080:80", "9000:9000", "9001:9001"} <= set(proxy["ports"])
    mount = next(v for v in proxy["volumes"] if v.endswith("/etc/nginx/nginx.conf:ro"))
    assert (REPO / mount.split(":")[0]).is_file()


def test_nginx_balances_every_replica_and_node_and_passes_websockets() -> None:
    conf = (REPO / "deploy" / "nginx.conf").read_text()
    services = compose("docker-compose.scale.yml")["services"]
    assert "server gateway:80 resolve;" in conf
    for node in (s for s in services if re.fullmatch(r"minio\d", s)):
        assert f"server {node}:9000;" in conf and f"server {node}:9001;" in conf
    for port in (80, 9000, 9001):
        assert f"listen {port};" in conf
    assert "proxy_set_header Upgrade $http_upgrade;" in conf
    assert conf.count("proxy_set_header Host $http_host;") == 3


def readme_section(title: str) -> str:
    text = (REPO / "README.md").read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


@pytest.mark.parametrize(("title", "name"), [("Run with MinIO and MongoDB", "docker-compose.yml"), ("Scale out", "docker-compose.scale.yml")])
def test_readme_walkthrough_matches_the_files(title: str, name: str) -> None:
    section = readme_section(title)
    data = compose(name)
    services = data["services"]
    assert f"`{name}`" in section
    # Every compose command names files that exist and services they define.
    commands = re.findall(r"^docker compose .*$", section, re.M)
    assert commands
    for command in commands:
        words = shlex.split(command.split("#")[0])
        files = [words[i + 1] for i, w in enumerate(words) if w == "-f"] or ["docker-compose.yml"]
        assert files == [name] and all((REPO / f).is_file() for f in files)
        for scaled in re.findall(r"--scale (\w[\w-]*)=\d+", command):
            assert scaled in services
    # Every published localhost port is published by the file.
    published = {p.split(":")[0] for s in services.values() for p in s.get("ports", [])}
    for port in re.findall(r"localhost:(\d+)", section):
        assert port in published, f"README names localhost:{port}, which {name} does not publish"
    # Every VARIABLE=value the section names is set exactly so on a gateway service (or, for
    # MinIO's own credentials, on MinIO).
    env: dict[str, str] = {}
    for service in services.values():
        env.update(environment(service))
    for variable, value in re.findall(r"`([A-Z][A-Z0-9_]+)=([^`\s]+)`", section):
        assert resolved(env.get(variable, "")) == value or docker_env().get(variable) == value, f"{variable}={value}"
    # Files and volumes it mentions exist.
    for path in re.findall(r"`((?:deploy|config)/[\w./-]+|Dockerfile)`", section):
        assert (REPO / path).is_file(), path
    for volume in re.findall(r"`([\w-]+-data)`", section):
        assert volume in data["volumes"], volume


def test_readme_documents_every_operations_route_and_metric() -> None:
    section = readme_section("Health, metrics, logs, events")
    for route in ("/health", "/ready", "/metrics", "/collections/{c}/events", "/events"):
        assert f"`GET {route}`" in section
    from gateway.metrics import Metrics

    for family in Metrics().registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        assert f"`{name}" in section, f"{name} is not documented"

# image-gateway: `docker build -t image-gateway .` (docker-compose.yml builds it for you).
FROM python:3.12.8-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies in their own layer: rebuilt only when setup.cfg changes, not on every code edit.
COPY setup.cfg pyproject.toml ./
RUN python -c "import configparser; c = configparser.ConfigParser(); c.read('setup.cfg'); print(c['options']['install_requires'])" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY README.md ./
COPY gateway ./gateway
COPY config ./config
RUN pip install --no-deps . \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin gateway \
    && mkdir -p /data \
    && chown gateway /data

# Configuration: config/docker.yaml, then the environment (compose sets the endpoints).
# Port 80 as the seed service used; Docker lets unprivileged users bind low ports in a container
# (net.ipv4.ip_unprivileged_port_start=0 since Docker 20.10).
ENV GATEWAY_CONFIG=/app/config/docker.yaml \
    APP_PORT=80 \
    DATA_DIR=/data

USER gateway
EXPOSE 80

HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('APP_PORT', '80'), timeout=2)"]

CMD ["gateway", "serve"]

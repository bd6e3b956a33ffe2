# image-gateway: `make run` serves the embedded default, `make test` runs every test tier.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Empty: the configuration decides (APP_PORT, else config/gateway.yaml's 8080). `make run PORT=N`
# overrides both, as `gateway serve --port N` does.
PORT ?=
PYTEST_ARGS ?=

.PHONY: run test peers browser bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/gateway serve $(if $(PORT),--port $(PORT))

# The real-peer tier needs MinIO and FerretDB: built first where Go is installed (kept while the
# pins hold, as `make peers`). Without them the tier skips, and the run ends by counting the skips.
test: $(VENV)/.installed-test
	@if command -v go >/dev/null 2>&1; then \
	  scripts/build-peers.sh || echo "make test: building the peers failed (see above); the real-peer tier will skip" >&2; \
	elif [ ! -x .peers/bin/minio ] || [ ! -x .peers/bin/ferretdb ]; then \
	  echo "make test: Go is not installed, so the real-peer tier (MinIO, FerretDB) will skip; \`make peers\` needs Go" >&2; \
	fi
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Real MinIO and FerretDB for the peer tier, built with Go from the Go module proxy.
peers:
	scripts/build-peers.sh

# Headless Chromium for the browser test (tests/test_browser.py), from Debian's archive: Playwright
# drives it by path, so nothing is downloaded at test time. Idempotent.
browser:
	@if [ -x /usr/bin/chromium ]; then echo "chromium present: $$(/usr/bin/chromium --version 2>/dev/null)"; \
	else SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; fi

# Unused imports and names, undefined names, and types (mypy over gateway/): the checks that find
# real mistakes, not style.
lint: $(VENV)/.installed-test
	$(BIN)/python -m pyflakes gateway tests benchmarks
	$(BIN)/python -m mypy gateway

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .peers .pytest_cache data

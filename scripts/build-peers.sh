#!/usr/bin/env bash
# Build the real peer servers used by the integration tests into .peers/bin.
#
#   scripts/build-peers.sh            build whatever is missing or outdated
#   scripts/build-peers.sh --force    rebuild everything
#
# Needs only Go and the Go module proxy. Each binary gets a stamp file
# .peers/bin/<name>.version holding the pinned version; a binary is rebuilt
# when it is missing or its stamp differs from the pin below.
set -euo pipefail

MINIO_MODULE="github.com/minio/minio"
MINIO_VERSION="v0.0.0-20260212201848-7aac2a2c5b7c"
FERRETDB_MODULE="github.com/FerretDB/FerretDB"
FERRETDB_VERSION="v1.24.2"

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEERS_BIN="$REPO_ROOT/.peers/bin"

FORCE=0
case "${1:-}" in
  --force | -f) FORCE=1 ;;
  "") ;;
  *) echo "usage: $0 [--force]" >&2; exit 2 ;;
esac

command -v go >/dev/null 2>&1 || { echo "error: 'go' not found in PATH" >&2; exit 1; }
mkdir -p "$PEERS_BIN"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/build-peers.XXXXXX")"
cleanup() {
  rm -f "$PEERS_BIN/.minio.tmp.$$" "$PEERS_BIN/.ferretdb.tmp.$$"
  chmod -R u+w "$WORK" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# up_to_date NAME VERSION: binary present and stamp matches the pin
up_to_date() {
  local name="$1" version="$2"
  [[ $FORCE -eq 0 && -x "$PEERS_BIN/$name" && -f "$PEERS_BIN/$name.version" ]] &&
    [[ "$(cat "$PEERS_BIN/$name.version")" == "$version" ]]
}

# install_binary NAME VERSION BUILT: atomically move BUILT into place, then stamp
install_binary() {
  local name="$1" version="$2" built="$3"
  chmod 0755 "$built"
  mv -f "$built" "$PEERS_BIN/$name"
  printf '%s\n' "$version" >"$PEERS_BIN/$name.version"
}

build_minio() {
  local start=$SECONDS gobin="$WORK/minio-bin"
  mkdir -p "$gobin"
  echo "==> building minio $MINIO_VERSION"
  # go install pkg@version ignores any go.mod in the current directory; run it
  # from the scratch dir anyway.
  (cd "$WORK" && GOFLAGS=-mod=mod GOBIN="$gobin" go install "$MINIO_MODULE@$MINIO_VERSION")
  # copy next to the target first so the final mv is an atomic rename (a
  # running minio keeps its old inode).
  cp "$gobin/minio" "$PEERS_BIN/.minio.tmp.$$"
  install_binary minio "$MINIO_VERSION" "$PEERS_BIN/.minio.tmp.$$"
  echo "==> minio built in $((SECONDS - start))s -> $PEERS_BIN/minio"
}

build_ferretdb() {
  local start=$SECONDS json dir src
  echo "==> building ferretdb $FERRETDB_VERSION"
  # `go install github.com/FerretDB/FerretDB/cmd/ferretdb@...` does not work
  # (the proxy answers 403 on the module's version list), and the build needs
  # build/version/version.txt, so build from a writable copy of the module.
  json="$(cd "$WORK" && go mod download -json "$FERRETDB_MODULE@$FERRETDB_VERSION")" || {
    echo "$json" >&2
    echo "error: go mod download $FERRETDB_MODULE@$FERRETDB_VERSION failed" >&2
    exit 1
  }
  dir="$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
  if [[ -z "$dir" || ! -d "$dir" ]]; then
    echo "$json" >&2
    echo "error: could not find module directory in 'go mod download -json' output" >&2
    exit 1
  fi
  src="$WORK/ferretdb-src"
  cp -R "$dir" "$src"
  chmod -R u+w "$src"
  printf '%s\n' "$FERRETDB_VERSION" >"$src/build/version/version.txt"
  (cd "$src" && GOFLAGS="-mod=mod -buildvcs=false" go build -o "$PEERS_BIN/.ferretdb.tmp.$$" ./cmd/ferretdb)
  install_binary ferretdb "$FERRETDB_VERSION" "$PEERS_BIN/.ferretdb.tmp.$$"
  echo "==> ferretdb built in $((SECONDS - start))s -> $PEERS_BIN/ferretdb"
}

TOTAL_START=$SECONDS

if up_to_date minio "$MINIO_VERSION"; then
  echo "==> minio $MINIO_VERSION already built, skipping"
else
  build_minio
fi

if up_to_date ferretdb "$FERRETDB_VERSION"; then
  echo "==> ferretdb $FERRETDB_VERSION already built, skipping"
else
  build_ferretdb
fi

echo "==> peers ready in $PEERS_BIN (total $((SECONDS - TOTAL_START))s)"

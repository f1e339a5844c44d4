# Sourced by the generate and test scripts: installs the pinned code
# generators into .tools/ (never globally) and puts them on PATH.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
mkdir -p "$TOOLS/bin"
export PATH="$TOOLS/bin:$ROOT/node_modules/.bin:$PATH"

PROTOC_GEN_GO_VERSION=v1.36.11
PROTOC_GEN_GO_GRPC_VERSION=v1.6.1
# grpcurl: the tests call the gRPC port through reflection as an operator would.
GRPCURL_VERSION=v1.9.3
# 1.80.1: the newest whose stubs still run on Python 3.9 (grpcio 1.80, protobuf 6).
GRPCIO_TOOLS_VERSION=1.80.1

ensure_node_modules() {
  [ -x "$ROOT/node_modules/.bin/buf" ] || (cd "$ROOT" && npm ci --no-audit --no-fund)
}

ensure_go_plugins() {
  [ -x "$TOOLS/bin/protoc-gen-go" ] || GOBIN="$TOOLS/bin" go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION"
  [ -x "$TOOLS/bin/protoc-gen-go-grpc" ] || GOBIN="$TOOLS/bin" go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC_VERSION"
}

ensure_grpcurl() {
  [ -x "$TOOLS/bin/grpcurl" ] || GOBIN="$TOOLS/bin" go install "github.com/fullstorydev/grpcurl/cmd/grpcurl@$GRPCURL_VERSION"
}

# One virtualenv for generation and the Python tests, made here, never global.
ensure_venv() {
  if [ ! -x "$TOOLS/venv/bin/python" ]; then
    python3 -m venv "$TOOLS/venv"
    "$TOOLS/venv/bin/pip" install --quiet --upgrade pip
  fi
  [ "$("$TOOLS/venv/bin/python" -c 'import importlib.metadata as m; print(m.version("grpcio-tools"))' 2>/dev/null)" = "$GRPCIO_TOOLS_VERSION" ] ||
    "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check "grpcio-tools==$GRPCIO_TOOLS_VERSION"
}

# gubernator: the peer rate limiter bench/gubernator.js compares with, built
# once into .tools/ (again only if the binary there is another version).
GUBERNATOR_VERSION=v2.13.0
ensure_gubernator() {
  go version -m "$TOOLS/bin/gubernator" 2>/dev/null | grep -q "github.com/gubernator-io/gubernator/v2[[:space:]]*$GUBERNATOR_VERSION" ||
    GOBIN="$TOOLS/bin" go install "github.com/gubernator-io/gubernator/v2/cmd/gubernator@$GUBERNATOR_VERSION"
}

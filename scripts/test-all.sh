#!/usr/bin/env bash
# Installs everything the tests need (npm packages, a Python virtualenv, Go
# modules, code generators, redis-server and chromium from Debian) and runs
# every test in every language. This is the README's test command (`npm test`)
# and CI's.
#
#   bash scripts/test-all.sh            every suite
#   bash scripts/test-all.sh ts|python|go   the installs and checks, then that suite alone
source "$(dirname "${BASH_SOURCE[0]}")/tools.sh"
cd "$ROOT"
SUITE="${1:-all}"
case "$SUITE" in all | ts | python | go) ;; *) echo "usage: $0 [ts|python|go]" >&2; exit 2 ;; esac
runs() { [ "$SUITE" = all ] || [ "$SUITE" = "$1" ]; }
ensure_node_modules

step() { printf '\n=== %s\n' "$*"; }

step "redis-server, curl, promtool, chromium, grpcurl"
missing=""
command -v redis-server >/dev/null || missing="$missing redis-server"
command -v curl >/dev/null || missing="$missing curl"
command -v promtool >/dev/null || missing="$missing prometheus"
# The dashboard's browser test drives Debian's chromium at /usr/bin/chromium.
[ -x /usr/bin/chromium ] || missing="$missing chromium"
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
ensure_grpcurl
export REDIS_SERVER="$(command -v redis-server)"
echo "$REDIS_SERVER ($("$REDIS_SERVER" --version | cut -d' ' -f3))"

step "contract: buf lint, and regeneration changes nothing"
bash scripts/generate.sh
if [ -d .git ] && [ -n "$(git status --porcelain -- proto/ts/src/gen clients/go/gen clients/python/src/ratequeue/_proto)" ]; then
  git status --porcelain -- proto/ts/src/gen clients/go/gen clients/python/src/ratequeue/_proto
  echo "generated code is stale: run 'npm run generate' and commit the result" >&2
  exit 1
fi

step "build"
npm run build
# The Python client goes into the venv now: the mixed-fleet test (vitest) runs Python workers.
"$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check -e "clients/python[test,celery,langchain,fastapi]"

if runs ts; then
  step "TypeScript: engine, server, client, integration, conformance of every client"
  npx vitest run
fi

if runs python; then
  step "Python client"
  bash clients/python/scripts/test.sh
fi

if runs go; then
  step "Go client"
  (cd clients/go && go vet ./... && go test -race -count=1 ./...)
fi

printf '\n%s tests passed\n' "$SUITE"

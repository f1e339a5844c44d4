#!/usr/bin/env bash
# Installs the Python client (editable, with every extra) into the project's
# virtualenv and runs its test suite against a real server.
#
# Assumes `npm run build` already ran (server/dist/main.js) and redis-server
# is installed: set REDIS_SERVER to its path if it is not on PATH.
# Extra arguments go to pytest.
set -euo pipefail
PY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROOT="$(cd "$PY_DIR/../.." && pwd)"
VENV="$ROOT/.tools/venv"
if [ ! -x "$VENV/bin/python" ]; then
  (cd "$ROOT" && source scripts/tools.sh && ensure_venv)
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check -e "$PY_DIR[test,celery,langchain,fastapi]"
cd "$PY_DIR"
exec "$VENV/bin/python" -m pytest "$@"

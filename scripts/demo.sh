#!/usr/bin/env bash
# Set up, index scikit-image's sample photos (or the folder given) with their faces, search
# once and write a contact sheet, then serve the API and the web page on
# http://127.0.0.1:8000/ (loopback only, no key needed). Ctrl-C stops the server.
# Usage: bash scripts/demo.sh [FOLDER]      (LOOKALIKE_DEMO_PORT to change the port)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh samples
.venv/bin/lookalike demo "$@"
port="${LOOKALIKE_DEMO_PORT:-8000}"
echo "serving on http://127.0.0.1:${port}/ (API docs: /docs); Ctrl-C to stop"
exec .venv/bin/lookalike serve --host 127.0.0.1 --port "$port" --no-auth

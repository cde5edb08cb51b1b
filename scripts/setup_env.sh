#!/usr/bin/env bash
# Create or refresh the project's virtual environment (.venv by default). Idempotent: does nothing when the
# stamp file holds the SHA-256 of the requirements files and pyproject.toml as they are now (content, not mtimes:
# a fresh clone or a checkout that touches the files without changing them does not rebuild).
#
# Why this script exists: lava-nc 0.10.0 and lava-dl 0.6.0 declare Python <3.11 and pin torch <2.4 and numpy <2.
# We install them without their declared dependencies and provide their runtime needs ourselves
# (requirements.txt). Lava's one Python 3.11 incompatibility is handled at import time by ilif_lava.compat.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PY="${PYTHON:-python3}"
stamp="$VENV/.ilif-lava-stamp"

want="$(cat requirements.txt requirements-lava.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "[setup] building environment in $VENV (first run takes a few minutes)"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -r requirements.txt
"$VENV/bin/python" -m pip install -q --no-deps --ignore-requires-python -r requirements-lava.txt
"$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e .
"$VENV/bin/python" -c "import ilif_lava.compat as c; c.check_lava_importable()"
# the fused ILIF CPU kernel (C++ extension); on failure the torch path is used and the reason printed
"$VENV/bin/python" -m ilif_lava.kernels.cpu_build
echo "$want" > "$stamp"
echo "[setup] environment ready: $VENV"

#!/usr/bin/env bash
# Create or refresh the project's virtual environment (.venv by default). Idempotent: does nothing when the
# stamp file holds the SHA-256 of the requirements files and pyproject.toml as they are now (content, not mtimes:
# a fresh clone or a checkout that touches the files without changing them does not rebuild).
#
# Why this script exists: lava-nc 0.10.0 and lava-dl 0.6.0 declare Python <3.11 and pin torch <2.4 and numpy <2.
# We install them without their declared dependencies and provide their runtime needs ourselves
# (requirements.txt). Lava's one Python 3.11 incompatibility is handled at import time by ilif_lava.compat.
#
# --check: build nothing; print "up to date" (exit 0) or "would build: REASON" (exit 1).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PY="${PYTHON:-python3}"
stamp="$VENV/.ilif-lava-stamp"
INPUTS=(requirements.txt requirements-lava.txt pyproject.toml)

# Why the environment must be (re)built, or nothing when it is up to date.
build_reason() {
  local want="$1"
  if [ ! -x "$VENV/bin/python" ]; then echo "no environment in $VENV"
  elif [ ! -f "$stamp" ]; then echo "no stamp $stamp (an unfinished build?)"
  elif [ "$(cat "$stamp")" != "$want" ]; then echo "${INPUTS[*]} changed since the last build"
  fi
}

want="$(cat "${INPUTS[@]}" | sha256sum | cut -d' ' -f1)"
reason="$(build_reason "$want")"
if [ "${1:-}" = "--check" ]; then
  if [ -z "$reason" ]; then echo "[setup] up to date: $VENV"; exit 0; fi
  echo "[setup] would build: $reason"; exit 1
elif [ -n "${1:-}" ]; then
  echo "setup_env.sh: unknown argument '$1' (the only one is --check)" >&2; exit 2
fi
if [ -z "$reason" ]; then
  exit 0
fi
echo "[setup] building environment in $VENV ($reason; the first build takes a few minutes)"
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

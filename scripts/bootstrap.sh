#!/usr/bin/env bash
# Sets up a fresh checkout: a virtual environment with the project and its dev tools, and the
# Node tools (Prism, oidc-provider). Safe to run again; it only does what is missing or stale.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"

# pyproject.toml's requires-python: pip would refuse another version only after the venv exists.
if ! "$PYTHON" -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] <= (3, 13) else 1)' 2>/dev/null; then
  echo "bootstrap: Python 3.11, 3.12 or 3.13 is needed (found: $("$PYTHON" --version 2>&1)). Set PYTHON=/path/to/python3.11." >&2
  exit 2
fi

# The Node tools do not need the venv: npm runs beside pip (about 10 s saved on a fresh machine).
npm_pid=""
if command -v npm >/dev/null 2>&1; then
  lock_stamp="tools/node/node_modules/.installed-$(sha256sum tools/node/package-lock.json | cut -c1-16)"
  if [ ! -f "$lock_stamp" ]; then
    echo "bootstrap: installing Node tools (prism, oidc-provider) with npm ci"
    (cd tools/node && npm ci --no-audit --no-fund --loglevel=error && touch "../../$lock_stamp") &
    npm_pid=$!
    # Whatever ends this script, npm is not left writing node_modules behind it.
    trap 'wait "$npm_pid" 2>/dev/null || true' EXIT
  fi
else
  echo "bootstrap: npm not found; the Prism benchmark peer and the OIDC test provider need Node.js 20+." >&2
fi

stamp="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "bootstrap: creating $VENV and installing the project (about a minute on a fresh machine)"
  # A venv whose pip does not run is half made (Debian's venv writes the interpreter before it
  # fails for want of python3-venv): made again from scratch.
  if ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
    # --clear empties the folder: only one that is a virtualenv (or empty, or not there yet).
    if [ -e "$VENV" ] && [ ! -f "$VENV/pyvenv.cfg" ] && [ -n "$(ls -A "$VENV" 2>/dev/null)" ]; then
      echo "bootstrap: $VENV holds files but is no virtualenv (no pyvenv.cfg); set VENV to a new folder or remove it." >&2
      exit 2
    fi
    if ! "$PYTHON" -m venv --clear "$VENV"; then
      echo "bootstrap: '$PYTHON -m venv' failed; on Debian or Ubuntu install python3-venv (apt-get install python3-venv) and run this again." >&2
      exit 2
    fi
  fi
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -e '.[dev]'
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi

if [ -n "$npm_pid" ] && ! wait "$npm_pid"; then
  echo "bootstrap: 'npm ci' in tools/node failed (its error is above); check the npm registry is reachable and run this again." >&2
  exit 2
fi

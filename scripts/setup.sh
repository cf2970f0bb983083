#!/usr/bin/env bash
# tapkit setup for a fresh machine: Debian packages, then the Python package and its dependencies.
# Idempotent and quick when everything is there. Used by `make test`, `make demo` and `make bench`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}

# pcscd + vpcd: the real PC/SC stack the emulated cards are reached through.
# libpcsclite-dev + swig + pkg-config: pyscard builds from source where no wheel fits.
# postgresql: the server binaries for the PostgreSQL store tests (a temporary server, 127.0.0.1 only).
debs=(pcscd vsmartcard-vpcd libpcsclite-dev swig pkg-config postgresql)
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

# Python side: the project (editable) with its test tools; re-run only when pyproject.toml changes.
stamp=.setup-stamp
want=$(sha256sum pyproject.toml | cut -c1-16)-$($PY -c 'import sys; print(sys.prefix)' | sha256sum | cut -c1-8)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! $PY -c 'import host_tools, smartcard, serial, crcmod' 2>/dev/null; then
  echo "tapkit setup: pip install -e .[dev]"
  $PY -m pip install -q --disable-pip-version-check -e ".[dev]"
  command -v pyenv >/dev/null && pyenv rehash || true
  echo "$want" > "$stamp"
fi

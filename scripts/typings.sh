#!/usr/bin/env bash
# Link the MicroPython ESP32 stubs into .typings/ so mypy can check firmware/ against them
# (see mypy.ini for why). Regenerated on every `make typecheck`; never committed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
SP=$($PY -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
MT=$($PY -c 'import mypy, os; print(os.path.dirname(mypy.__file__))')/typeshed
[ -f "$SP/machine.pyi" ] || { echo "micropython-esp32-stubs missing: pip install micropython-esp32-stubs" >&2; exit 1; }
rm -rf .typings && mkdir -p .typings/stubs
for f in "$SP"/*.pyi "$SP"/stdlib "$SP"/_mpy_shed; do [ -e "$f" ] && ln -s "$f" .typings/; done
ln -s "$MT"/stubs/mypy-extensions .typings/stubs/

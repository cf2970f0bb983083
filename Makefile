# tapkit: `make demo` runs the virtual fleet end to end; `make test` runs every test. Both set up first:
# scripts/setup.sh makes the project venv .venv (with the Python it finds; PYTHON=... picks one), and
# every target runs that venv's Python.
VENV ?= .venv
PY := $(VENV)/bin/python
export PY VENV

.PHONY: setup test test-hw demo bench typecheck lint

setup:
	@bash scripts/setup.sh

typecheck: setup
	bash scripts/typings.sh
	$(PY) -m mypy --config-file mypy.ini firmware harness/mp

test: setup typecheck lint
	$(PY) -m pytest -q -ra

# make test-hw: the hardware-in-the-loop tests on the board at $TAPKIT_PORT (README "Testing on a
# real board"); skipped, with the reason, without it
test-hw: setup
	$(PY) -m pytest -q -ra -s -m hardware tests/hardware

demo: setup
	$(PY) -m host_tools.cli demo

# make bench [SECTIONS="journal tearing"]: the whole table, or only those sections (bench/)
bench: setup
	$(PY) -m bench $(SECTIONS)

lint: setup
	$(PY) -m ruff check card_schema firmware emulator host_tools mpybuild boards harness bench tests
	$(PY) -m ruff format --check card_schema firmware emulator host_tools mpybuild boards harness bench tests

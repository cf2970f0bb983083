"""What the tests and the bench share; not installed (a source checkout only, like tests/ and bench/).

harness/vm.py         the MicroPython VM runner (unix port, the built .mpy first on MICROPYPATH)
harness/mp/*.py       the scripts it runs: real files, linted by ruff, type-checked by mypy
harness/pgserver.py   a throwaway PostgreSQL server (initdb in a temp dir, a free port)
harness/boards.py     virtual-board helpers: an issued emulated card, a deployed terminal
harness/tearing.py    the tearing campaign on the firmware's own tap
"""

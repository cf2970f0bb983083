"""The `tapkit` command line: the only layer that prints, and the only one that imports rich.
Nothing imports it (the library rooms return data; this layer renders it).

    app.py        the command table (every area's COMMANDS), the parser built from it, main(argv)
    spec.py       Command and arg: commands are data; the shared options (--keystore, --db)
    errors.py     the one error boundary: TapkitError & co. -> one line on stderr and an exit code
    output.py     rich consoles and tables, --json, progress bars
    keys.py card.py emulate.py fleet.py (sync, flash, diag) backoffice.py (serve, publish, report)
    tariff.py demo.py     the commands of each area

`python -m host_tools.cli` and the `tapkit` console script run app.main (callable from tests).
"""

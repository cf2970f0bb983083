"""All the CLI prints goes through here: the only module that imports rich. Tables, --json, progress.

con = console()                         # stdout (stderr=True: stderr), 120 columns off a terminal
con.print(table("card", ["field", "value"], rows))
con.print(measures_table("tapkit bench", rows))   # rows {section, name, value, unit, note}
print_json(obj)                         # what a json="object" command prints with --json
print_jsonl(obj)                        # one event of a json="lines" command (--watch, servers)
show = sync_progress(); show(done, total)
end_line()                              # Ctrl-C or an error: end an open progress line first
with FlashProgress(ports) as bars: say = bars(port); say("copy /main.py", 1, 30)
"""

import json
import sys
import threading
import time


def console(stderr=False, width=None, highlight=True):
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self):  # rich would exit 1; errors.py makes a closed pipe a quiet 0
            self.quiet = True
            raise BrokenPipeError

    out = sys.stderr if stderr else sys.stdout
    # Off a terminal (logs, CI, pipes) rich would assume 80 columns and truncate the tables.
    # Colour only where the terminal supports it (rich: a tty, TERM not dumb, NO_COLOR unset).
    return _Console(
        stderr=stderr, width=width or (None if out.isatty() else 120), highlight=highlight
    )


def print_json(obj):
    print(json.dumps(obj, indent=1, sort_keys=True, default=str))


def print_jsonl(obj):
    """One JSON Lines record: compact, one line, flushed (a reader of a pipe sees it at once)."""
    sys.stdout.write(json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str) + "\n")
    sys.stdout.flush()


_open_line = [False]  # a progress line on stderr ends in "\r...", not yet "\n"


def end_line():
    """End a progress line left open (Ctrl-C, an error) and show the cursor again."""
    if _open_line[0]:
        _open_line[0] = False
        try:
            sys.stderr.write("\n\x1b[?25h" if sys.stderr.isatty() else "\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass


def when(t):
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "-"


def money(v):
    return "-" if v is None else f"{v:,}"


def count(n, word, plural=None):
    """'1 top-up', '2 top-ups', '1,200 taps': a count with its noun in the right number."""
    return f"{n:,} {word if n == 1 else plural or word + 's'}"


def table(title, columns, rows, right=None):
    """A rich table; `right`: the right-aligned columns (default: amounts "(Rial)", taps, seq)."""
    from rich.table import Table

    t = Table(title=title)
    for c in columns:
        if right is None:
            r = c.endswith("(Rial)") or c in ("taps", "seq")
        else:
            r = c in right
        t.add_column(c, justify="right" if r else "left")
    for r in rows:
        t.add_row(*[str(x) for x in r])
    return t


def measures_table(title, rows):
    """A table of measure rows {section, name, value, unit, note} (the bench's convention: bench/),
    a rule between sections; a value of None is "-"."""
    from rich.table import Table

    t = Table(title=title)
    t.add_column("measure")
    t.add_column("value", justify="right")
    t.add_column("note")
    section = None
    for r in rows:
        if section is not None and r["section"] != section:
            t.add_section()
        section = r["section"]
        v = r["value"]
        v = "-" if v is None else "%d" % v if isinstance(v, int) else repr(v)
        t.add_row(r["name"], "%s %s" % (v, r["unit"]) if r["unit"] and v != "-" else v, r["note"])
    return t


def sync_progress():
    """progress(done, total) for a sync: a bar on a terminal's stderr, one line at the end in a log."""
    tty = sys.stderr.isatty()

    def show(done, total):
        if tty:
            n = 30 * done // total if total else 30
            sys.stderr.write(
                "\r[%s%s] pulled %d/%d records" % ("#" * n, "." * (30 - n), done, total)
            )
            _open_line[0] = done < total
            if done >= total:
                sys.stderr.write("\n")
        elif done >= total:
            sys.stderr.write("pulled %d/%d records\n" % (done, total))
        sys.stderr.flush()

    return show


class FlashProgress:
    """One progress line per port: a live bar on a terminal, plain lines in a log. Called with a port,
    it gives that board's `say(msg, done=None, total=None)` (fleet.flash's progress)."""

    def __init__(self, ports, out=None, quiet=False):
        self.out = out or sys.stderr
        self.quiet = quiet
        self.lock = threading.Lock()
        self.bars = None
        if not quiet and self.out.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, TextColumn
            from rich.progress import Progress as Bars

            self.bars = Bars(
                TextColumn("{task.fields[port]}"),
                BarColumn(),
                TextColumn("{task.description}"),
                console=Console(file=self.out),
            )
            self.tasks = {p: self.bars.add_task("waiting", port=p, total=None) for p in ports}

    def __enter__(self):
        if self.bars:
            self.bars.start()
        return self

    def __exit__(self, *exc):
        if self.bars:
            self.bars.stop()

    def __call__(self, port):
        def say(msg, done=None, total=None):
            if self.bars:
                kw = {"completed": done, "total": total} if total else {}
                self.bars.update(self.tasks[port], description=msg, **kw)
            elif not self.quiet and (total is None or done == 0):
                with self.lock:
                    text = msg if total is None else "copy %d files" % total
                    self.out.write("%s: %s\n" % (port, text))
                    self.out.flush()

        return say

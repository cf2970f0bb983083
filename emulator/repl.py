# The virtual board's REPL: a MicroPython program (run by emulator/vboard.py on the unix port) that
# speaks on stdin/stdout what an ESP32 speaks on its USB serial when no firmware runs:
#
#   friendly REPL  ">>> " prompt, echo, Ctrl-C clears the line, Ctrl-D soft reset, Ctrl-E paste mode;
#                  "... " continuation lines as pyexec decides (open brackets, a compound statement
#                  until an empty line) with MicroPython's auto-indent (py/readline.c); an
#                  expression's value is echoed; Tab completes a name as py/repl.c does (one
#                  match or a longer common prefix is inserted; several are listed, then the
#                  prompt and the line again)
#   raw REPL       Ctrl-A -> "raw REPL; CTRL-B to exit\r\n>"; code, Ctrl-D -> "OK", output, "\x04",
#                  error, "\x04", ">"; Ctrl-D on an empty line: soft reset; Ctrl-B: friendly REPL
#   raw-paste      "\x05A\x01" -> "R\x01" + window (u16 LE) + "\x01"; one "\x01" per window consumed;
#                  "\x04" ends the code, answered with "\x04"; then as raw REPL after "OK"
#
# The board's filesystem (its littlefs image $TAPKIT_STATE/fs.img) is mounted at "/" (vfs.VfsLfs2,
# by emulator/lfsmount.py, as for the firmware), so paths on the board are those of a real board
# ("/main.py", "/lib/firmware/app.mpy"); the host's state dir is at "/_host", hidden from listings.
# The names defined by executed code persist between executions, as on a board, until a soft reset.
#
# Resets end this process with an exit code the board host (vboard.py) acts on:
#   10 soft reset in raw REPL: boot.py, then the raw REPL again (main.py is not run)
#   11 soft reset in the friendly REPL: boot.py and main.py (the firmware)
#   12 hard reset (machine.reset()): the board powers up again
# While it executes code it says so on stderr ("REPL|exec" / "REPL|idle"): the host then turns a
# Ctrl-C from the serial line into SIGINT (KeyboardInterrupt), as the board's UART interrupt does.
import os
import sys

_RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"
_WINDOW = 128  # half the 256-byte MICROPY_REPL_STDIN_BUFFER_MAX, as pyexec.c grants
_inp = sys.stdin.buffer
_out = sys.stdout.buffer
_err = sys.stderr


def w(b):
    if isinstance(b, str):
        b = b.encode()
    _out.write(b)
    try:
        _out.flush()
    except AttributeError:
        pass


def rd():
    while True:
        try:
            c = _inp.read(1)
        except KeyboardInterrupt:
            continue  # a Ctrl-C that arrived as we went idle: the byte itself follows
        if not c:
            raise SystemExit(0)  # the host closed the line: power off
        return c[0]


class Reset(Exception):
    pass


class _Machine:
    # `machine` as code on the board sees it: the unix port's module plus reset(), reset_cause()
    def __init__(self, real):
        self._real = real

    def __getattr__(self, name):
        return getattr(self._real, name)

    def reset(self):
        raise Reset(12)

    def soft_reset(self):
        raise Reset(0)

    def reset_cause(self):
        # why the board last reset, as its host says (it was 3, WDT_RESET, whatever the reset)
        return {"soft": 5, "hard": 2, "watchdog": 3}.get(os.getenv("TAPKIT_RESET_CAUSE"), 1)

    def unique_id(self):
        return b"vboard"

    def freq(self, *a):
        return 240000000

    PWRON_RESET = 1
    HARD_RESET = 2
    WDT_RESET = 3
    DEEPSLEEP_RESET = 4
    SOFT_RESET = 5


class _Os:
    # `os` as code on the board sees it: the "/_host" mount is not listed in "/" (an ESP32 has
    # none); ilistdir() gives sizes, as littlefs on a board does
    def __init__(self, real):
        self._real = real

    def __getattr__(self, name):
        return getattr(self._real, name)

    def listdir(self, path=""):
        return [e[0] for e in self.ilistdir(path)]

    def ilistdir(self, path=""):
        real = self._real
        top = real.getcwd() == "/" if path in ("", ".") else path.rstrip("/") == ""
        for e in real.ilistdir(path):
            if top and e[0] == _HOST[1:]:
                continue
            if len(e) > 3:
                yield e
                continue
            size = 0
            if e[1] != 0x4000:
                try:
                    size = real.stat((path.rstrip("/") + "/" if path else "") + e[0])[6]
                except OSError:
                    pass
            yield (e[0], e[1], e[2], size)


g = {}
_HOST = "/_host"  # the host's state dir: hidden from listings


def fresh_globals():
    g.clear()
    g["__name__"] = "__main__"


def busy(on):
    _err.write("REPL|exec\n" if on else "REPL|idle\n")


def _cooked(*args, sep=" ", end="\n", file=None):
    # the friendly REPL's print: "\r\n" line ends, as a board's cooked console writes them
    if file is not None:
        return print(*args, sep=sep, end=end, file=file)
    w((sep.join([str(x) for x in args]) + end).replace("\n", "\r\n"))


def run(src, name, mode="exec"):
    """Execute code; return the exception text ("" when none). Resets propagate as Reset.
    mode "single": the friendly REPL (an expression's value is shown, lines end in "\r\n")."""
    busy(True)
    try:
        if mode == "single":
            g["print"] = _cooked
            try:
                code = compile(src, name, "eval")
            except SyntaxError:
                exec(compile(src, name, "exec"), g)
            else:
                v = eval(code, g)
                if v is not None:
                    g["_"] = v
                    w(repr(v).replace("\n", "\r\n") + "\r\n")
        else:
            exec(compile(src, name, mode), g)
        return ""
    except Reset:
        raise
    except SystemExit:
        raise Reset(0)
    except BaseException as e:  # noqa: BLE001 - what the code raised is its output
        import io

        s = io.StringIO()
        sys.print_exception(e, s)
        return s.getvalue()
    finally:
        g.pop("print", None)
        busy(False)


def banner():
    w(
        "MicroPython v%d.%d.%d on %s; %s (tapkit virtual board)\r\n"
        'Type "help()" for more information.\r\n'
        % (sys.implementation.version[:3] + (sys.platform, os.getenv("TAPKIT_BOARD") or "ESP32"))
    )


_mode = ["friendly"]


def raw_repl():
    """Returns to the friendly REPL on Ctrl-B; raises Reset."""
    _mode[0] = "raw"
    w(_RAW_BANNER)
    while True:
        w(b">")
        line = bytearray()
        while True:
            c = rd()
            if c == 1:  # Ctrl-A
                if len(line) == 2 and line[0] == 5:  # Ctrl-E A Ctrl-A: raw-paste
                    if line[1] != 0x41:
                        w(b"R\x00")
                        line = bytearray()
                        continue
                    src = raw_paste()
                    if src is None:
                        line = bytearray()
                        break
                    err = run(bytes(src), "<stdin>")
                    w(b"\x04" + err.encode() + b"\x04")
                    break
                w(b"\r\n" + _RAW_BANNER)
                line = bytearray()
                break
            if c == 2:  # Ctrl-B
                w(b"\r\n")
                _mode[0] = "friendly"
                return
            if c == 3:  # Ctrl-C
                line = bytearray()
            elif c == 4:  # Ctrl-D
                w(b"OK")
                if not line:
                    w(b"\r\n")
                    raise Reset(10)
                err = run(bytes(line), "<stdin>")
                w(b"\x04" + err.encode() + b"\x04")
                break
            else:
                line.append(c)


def raw_paste():
    w(b"R\x01" + bytes((_WINDOW & 0xFF, _WINDOW >> 8)) + b"\x01")
    src = bytearray()
    got = 0
    while True:
        c = rd()
        if c == 4:
            w(b"\x04")
            return src
        if c == 3:
            w(b"\x04")
            return None
        src.append(c)
        got += 1
        if got == _WINDOW:
            got = 0
            w(b"\x01")


def friendly():
    banner()
    while True:
        w(b">>> ")
        line = bytearray()
        while True:
            c = rd()
            if c == 1:  # Ctrl-A: raw REPL
                w(b"\r\n")
                raw_repl()
                banner()
                line = None
                break
            if c == 3:  # Ctrl-C
                w(b"\r\n")
                line = None
                break
            if c == 4:  # Ctrl-D
                if not line:
                    w(b"\r\n")
                    raise Reset(11)
                continue
            if c == 5:  # Ctrl-E: paste mode
                w(b"\r\npaste mode; Ctrl-C to cancel, Ctrl-D to finish\r\n=== ")
                buf = bytearray()
                while True:
                    c = rd()
                    if c == 3:
                        buf = None
                        break
                    if c == 4:
                        break
                    buf.append(c)
                    w(bytes((c,)) if c != 13 else b"\r\n=== ")
                w(b"\r\n")
                if buf is not None:
                    src = bytes(buf).replace(b"\r", b"\n")
                    w(run(src, "<stdin>", "single").replace("\n", "\r\n"))
                line = None
                break
            if c in (13, 10):
                w(b"\r\n")
                break
            if c in (8, 127):
                if line:
                    line = line[:-1]
                    w(b"\x08 \x08")
                continue
            if c == 9:  # Tab
                line += _complete(line, b">>> ")
                continue
            line.append(c)
            w(bytes((c,)))
        if not line:
            continue
        src = bytes(line)
        while src is not None and _more(src):  # pyexec: mp_repl_continue_with_input
            w(b"... ")
            more = bytearray(b" " * _indent(src))  # readline: MICROPY_REPL_AUTO_INDENT
            w(bytes(more))
            while True:
                c = rd()
                if c in (13, 10):
                    w(b"\r\n")
                    break
                if c == 3:
                    more = None
                    break
                if c in (8, 127):
                    if more:
                        more = more[:-1]
                        w(b"\x08 \x08")
                    continue
                if c == 9:  # Tab
                    more += _complete(more, b"... ")
                    continue
                more.append(c)
                w(bytes((c,)))
            src = None if more is None else src + b"\n" + bytes(more)
        if src is None:
            w(b"\r\n")
            continue
        w(run(src, "<stdin>", "single").replace("\n", "\r\n"))


def _complete(line, prompt):
    """Tab at the end of `line` as MicroPython's readline does (py/repl.c mp_repl_autocomplete):
    the dotted name before the cursor is looked up in the REPL's globals (names with a leading
    "_" only when the prefix has one); one match, or several sharing a longer prefix, completes
    it (echoed; the bytes to add are returned); several others are listed in 16-column slots,
    then the prompt and the line are shown again. No match: nothing."""
    i = len(line)
    while i and (chr(line[i - 1]).isalpha() or chr(line[i - 1]).isdigit() or line[i - 1] in b"_."):
        i -= 1
    parts = bytes(line[i:]).decode().split(".")
    obj = None  # the globals
    try:
        for p in parts[:-1]:
            obj = g[p] if obj is None else getattr(obj, p)
        names = list(g) if obj is None else dir(obj)
    except Exception:  # noqa: BLE001 - a name that does not resolve completes nothing
        return b""
    pre = parts[-1]
    names = sorted(n for n in names if n.startswith(pre) and (pre or n[0] != "_"))
    if not names:
        return b""
    common = names[0]
    for n in names[1:]:
        while not n.startswith(common):
            common = common[:-1]
    if len(names) == 1 or len(common) > len(pre):
        add = common[len(pre) :].encode()
        w(add)
        return add
    out = []
    col = 64  # the first name starts a line (WORD_SLOT_LEN 16, MAX_LINE_LEN 64)
    for n in names:
        gap = (col + 15) // 16 * 16 - col
        if gap < 2:
            gap += 16
        if col + gap + len(n) <= 64:
            out.append(" " * gap + n)
            col += gap + len(n)
        else:
            out.append("\r\n" + n)
            col = len(n)
    w("".join(out) + "\r\n")
    w(prompt + bytes(line))
    return b""


_COMPOUND = (b"if", b"while", b"for", b"try", b"with", b"def", b"class", b"async")
_TRIPLE = (b"'" * 3, b'"' * 3)


def _more(src):
    """MicroPython's py/repl.c: go on reading while brackets or a triple quote are open, the last
    line ends in a backslash, or a compound statement's last line is not empty."""
    if src.endswith(b"\\"):
        return True
    depth, q, i = 0, None, 0
    while i < len(src):
        c = src[i : i + 1]
        if q:
            if src[i : i + len(q)] == q:
                i += len(q) - 1
                q = None
            elif c == b"\\":
                i += 1
            elif c == b"\n" and len(q) == 1:
                q = None
        elif src[i : i + 3] in _TRIPLE:
            q = src[i : i + 3]
            i += 2
        elif c in (b"'", b'"'):
            q = c
        elif c == b"#":
            while i < len(src) and src[i : i + 1] != b"\n":
                i += 1
        elif c in (b"(", b"[", b"{"):
            depth += 1
        elif c in (b")", b"]", b"}"):
            depth -= 1
        i += 1
    if depth > 0 or (q and len(q) == 3):
        return True
    word = src.lstrip().split(b":")[0].split(b" ")[0].split(b"(")[0]
    compound = src.startswith(b"@") or word in _COMPOUND
    return compound and not src.endswith(b"\n")


def _indent(src):
    """Spaces the next line starts with (py/readline.c readline_auto_indent): the previous line's
    indent, one level more after a colon; none after two lines of only spaces."""
    lines = src.split(b"\n")
    last = lines[-1]
    if len(lines) > 1 and not last.strip(b" ") and not lines[-2].strip(b" "):
        return 0
    n = (len(last) - len(last.lstrip(b" "))) // 4
    if last.endswith(b":"):
        n += 1
    return 4 * n


def boot():
    fresh_globals()
    try:
        os.stat("/boot.py")
    except OSError:
        return
    with open("/boot.py") as f:
        src = f.read()
    err = run(src, "boot.py")
    if err:
        w(err.replace("\n", "\r\n"))


def main():
    if os.getenv("TAPKIT_STATE"):
        import lfsmount  # noqa: F401 - mounts the board's image at "/", sets sys.path
    import machine

    sys.modules["machine"] = _Machine(machine)
    sys.modules["os"] = _Os(os)
    mode = os.getenv("TAPKIT_REPL") or "friendly"
    try:
        if mode == "raw":
            boot()
            raw_repl()
        while True:
            friendly()
    except Reset as e:
        code = e.args[0] if e.args else 0
        if not code:  # sys.exit()/machine.soft_reset(): a soft reset of the mode we are in
            code = 10 if _mode[0] == "raw" else 11
        if code != 12:
            w(b"MPY: soft reboot\r\n")
        sys.exit(code)


main()

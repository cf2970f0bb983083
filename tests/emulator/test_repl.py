"""The virtual board's USB serial is a MicroPython REPL: the stock mpremote works against it."""

import subprocess
import sys
import time

import pytest
import serial

from emulator import lfsimage
from emulator.vboard import VirtualBoard
from host_tools import keystore
from host_tools.sim.virtual import deploy_virtual


def mpremote(port, *args, timeout=60):
    p = subprocess.run(
        [sys.executable, "-m", "mpremote", "connect", port, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert p.returncode == 0, "mpremote %s failed: %s %s" % (args, p.stdout, p.stderr)
    return p.stdout


@pytest.fixture
def blank_board(tmp_path):
    vb = VirtualBoard(str(tmp_path / "blank"))
    vb.start(blank=True)
    try:
        yield vb
    finally:
        vb.stop()


@pytest.fixture
def running_board(tmp_path):
    from host_tools.cli.app import main

    ks_path = str(tmp_path / "issuer.keys")
    assert main(["keys", "init", "--keystore", ks_path, "--json"]) == 0
    state = tmp_path / "bus"
    state.mkdir()
    deploy_virtual(str(state / "fs.img"), keystore.load(ks_path), 1001, fare=25000)
    vb = VirtualBoard(str(state))
    vb.start()
    try:
        yield vb
    finally:
        vb.stop()


def test_mpremote_copy_list_read_back_exec_soft_reset(blank_board, tmp_path):
    port = blank_board.port
    src = tmp_path / "hello.py"
    src.write_text("GREETING = 'salaam'\n" + "# padding\n" * 200)  # > one raw-paste window
    mpremote(port, "fs", "mkdir", ":lib")
    mpremote(port, "fs", "cp", str(src), ":lib/hello.py")
    listing = mpremote(port, "fs", "ls", ":lib")
    assert "hello.py" in listing and str(src.stat().st_size) in listing
    back = tmp_path / "back.py"
    mpremote(port, "fs", "cp", ":lib/hello.py", str(back))
    assert back.read_text() == src.read_text()
    assert mpremote(port, "fs", "cat", ":lib/hello.py").startswith("GREETING = 'salaam'")
    # the file is in the board's littlefs image, where the firmware runs from
    img = str(tmp_path / "blank" / "fs.img")
    assert lfsimage.read_file(img, "/lib/hello.py") == src.read_bytes()
    assert lfsimage.listdir(img) == ["lib"]
    out = mpremote(port, "exec", "import hello; print(hello.GREETING, 6 * 7)")
    assert out.strip() == "salaam 42"
    # names survive between executions until a soft reset clears them
    out = mpremote(port, "resume", "exec", "x = 5", "resume", "exec", "print(x + 1)")
    assert out.strip() == "6"
    out = mpremote(port, "exec", "y = 1", "soft-reset", "exec", "print('y' in globals())")
    assert out.strip() == "False"
    mpremote(port, "fs", "rm", ":lib/hello.py")
    assert "hello.py" not in mpremote(port, "fs", "ls", ":lib")
    with pytest.raises(AssertionError, match="ENOENT|No such|does not exist"):
        mpremote(port, "fs", "cat", ":lib/hello.py")


def test_mpremote_run_and_error(blank_board, tmp_path):
    script = tmp_path / "s.py"
    script.write_text("import sys\nprint('on', sys.platform)\n")
    assert mpremote(blank_board.port, "run", str(script)).strip() == "on linux"
    p = subprocess.run(
        [sys.executable, "-m", "mpremote", "connect", blank_board.port, "exec", "1/0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 1 and "ZeroDivisionError" in p.stdout + p.stderr


def test_ctrl_c_breaks_into_firmware_and_reset_boots_it_again(running_board):
    vb = running_board
    assert vb.alive
    out = mpremote(vb.port, "exec", "import firmware; print(firmware.VERSION)")
    assert out.strip() == "0.1.0"
    assert vb.in_repl and not vb.alive  # the firmware was interrupted: the board sits in its REPL
    mark = vb.mark()
    mpremote(vb.port, "reset")
    vb.wait_for("DISPLAY|", timeout=30, since=mark)
    assert vb.alive


def test_friendly_repl_by_hand(running_board):
    """A technician with a terminal program: Ctrl-C, an expression, Ctrl-D to restart."""
    vb = running_board
    with serial.Serial(vb.port, 115200, timeout=0.2) as s:
        s.write(b"\x03")
        buf = _read_until(s, b">>> ")
        assert b"KeyboardInterrupt" in buf and b"MicroPython" in buf
        s.write(b"6*7\r")
        assert b"42\r\n>>> " in _read_until(s, b">>> ")
        s.write(b"print('a\\nb')\r")
        assert b"a\r\nb\r\n>>> " in _read_until(s, b">>> ")  # a console's line ends
        s.write(b"1/0\r")
        assert b"ZeroDivisionError" in _read_until(s, b">>> ")
        # auto-indent as MicroPython's readline: 4 spaces after the colon, the same again after
        # the body, none after two lines of only spaces; the empty line after them runs it
        s.write(b"for i in range(2):\r")
        assert _read_until(s, b"...     ").endswith(b"...     ")
        s.write(b"if i:\r")
        assert _read_until(s, b"...         ").endswith(b"...         ")  # one level more
        s.write(b"print(i * 10)\r\x08\x08\x08\x08print(i)\r\r\r\r")
        out = _read_until(s, b">>> ")
        assert b"\r\n0\r\n10\r\n1\r\n>>> " in out, out
        mark = vb.mark()
        s.write(b"\x04")  # soft reset: boot.py and main.py run again
        assert b"soft reboot" in _read_until(s, b"soft reboot")
    vb.wait_for("DISPLAY|", timeout=30, since=mark)
    assert vb.alive


def test_tab_completes_as_micropythons_readline(blank_board):
    """Tab in the friendly REPL (py/repl.c): one match completes the name, several sharing a
    longer prefix complete that much, several others are listed (16-column slots) and the prompt
    and the line come again; dotted names too, in continuation lines as well. The byte strings are
    what the unix port's own REPL (MicroPython 1.29) prints for the same keys."""
    with serial.Serial(blank_board.port, 115200, timeout=0.2) as s:
        s.write(b"\r")
        _read_until(s, b">>> ")
        s.write(b"abc_def = 1\rabc_x = 2\rimport sys\r")
        _read_until(s, b">>> import sys\r\n>>> ")
        s.write(b"ab\t")  # both: their common prefix
        assert _read_until(s, b"abc_").endswith(b"ab" + b"c_")
        s.write(b"\t")  # abc_ matches both and no more: the list, then the line again
        assert _read_until(s, b"\r\n>>> abc_") == b"\r\nabc_def         abc_x\r\n>>> abc_"
        s.write(b"d\t\r")  # one match: the rest of its name
        assert _read_until(s, b"1\r\n>>> ") == b"d" + b"ef\r\n1\r\n>>> "
        s.write(b"sys.std\t")
        out = _read_until(s, b">>> sys.std")
        assert out.endswith(b"sys.std\r\nstderr          stdin           stdout\r\n>>> sys.std")
        s.write(b"out.write('k')\r")
        assert b"k1\r\n>>> " in _read_until(s, b"1\r\n>>> ")
        s.write(b"zzz\t\x03")  # no match: nothing
        assert _read_until(s, b">>> ").endswith(b"zzz\r\n>>> ")
        s.write(b"if 1:\r")
        _read_until(s, b"...     ")
        s.write(b"print(abc_x\t)\r\r\r\r")  # a continuation line completes too
        assert b"print(abc_x)\r\n" in _read_until(s, b"2\r\n>>> ")


def _read_until(s, end, timeout=10.0):
    buf = b""
    deadline = time.monotonic() + timeout
    while end not in buf:
        buf += s.read(256)
        assert time.monotonic() < deadline, "no %r in %r" % (end, buf)
    return buf


def test_firmware_boots_from_the_littlefs_image(running_board, tmp_path):
    """What mpremote writes lands in the board's image, and the next boot runs it."""
    vb = running_board
    listing = mpremote(vb.port, "fs", "ls", ":")
    assert "main.py" in listing and "board.json" in listing and "_host" not in listing
    boot = tmp_path / "boot.py"
    boot.write_text("import sys\nsys.stderr.write('LOG| boot.py from the image\\n')\n")
    mpremote(vb.port, "fs", "cp", str(boot), ":boot.py")
    assert lfsimage.read_file(vb.image, "/boot.py") == boot.read_bytes()
    mark = vb.mark()
    mpremote(vb.port, "reset")
    vb.wait_for("LOG| boot.py from the image", timeout=30, since=mark)
    vb.wait_for("DISPLAY|", timeout=30, since=mark)
    assert vb.alive
    # the board's files are in the image; what the host watches stays a host file
    assert not (tmp_path / "bus" / "fs").exists()
    assert (tmp_path / "bus" / "flash.bin").stat().st_size == 262144

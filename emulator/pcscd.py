"""Make sure a real pcscd with the vsmartcard vpcd driver is there, so pyscard can reach the
emulated card (emulator/vpcd.py connects it to the driver's TCP port 35963).

    from emulator.pcscd import ensure_pcscd, wait_reader
    ensure_pcscd()                       # raises PCSCUnavailable with what to do
    name = wait_reader("Virtual PCD")    # "Virtual PCD 00 00"

Debian/Ubuntu packages: `pcscd` and `vsmartcard-vpcd` (the driver registers itself in
/etc/reader.conf.d/vpcd: FRIENDLYNAME "Virtual PCD", CHANNELID 0x8C7B = port 35963; its second
slot "Virtual PCD 00 01" listens on 35964).
"""

import os
import shutil
import socket
import subprocess
import time

PCSCD_SOCKET = "/run/pcscd/pcscd.comm"
VPCD_CONF = "/etc/reader.conf.d/vpcd"
VPCD_LIBS = (
    "/usr/lib/pcsc/drivers/serial/libifdvpcd.so",
    "/usr/lib/x86_64-linux-gnu/pcsc/drivers/serial/libifdvpcd.so",
    "/usr/lib/aarch64-linux-gnu/pcsc/drivers/serial/libifdvpcd.so",
)
VPCD_PORT = 35963
INSTALL_HINT = "install them: sudo apt-get install pcscd vsmartcard-vpcd"


class PCSCUnavailable(RuntimeError):
    """pcscd or the vpcd driver is missing or cannot be started; the message says what to do."""


def _pcscd_exe():
    return shutil.which("pcscd") or next(
        (p for p in ("/usr/sbin/pcscd", "/sbin/pcscd") if os.path.exists(p)), None
    )


def missing_packages():
    """Names of the Debian packages that are not installed (by what they put on disk)."""
    missing = []
    if not _pcscd_exe():
        missing.append("pcscd")
    if not os.path.exists(VPCD_CONF) and not any(os.path.exists(p) for p in VPCD_LIBS):
        missing.append("vsmartcard-vpcd")
    return missing


def pcscd_running(path=PCSCD_SOCKET):
    """True when something accepts connections on pcscd's socket."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def ensure_pcscd(apdu_log=False, timeout=10.0, log_path="/tmp/tapkit-pcscd.log"):
    """Check pcscd + vpcd are installed and pcscd runs; start it (as root) if it does not.

    Returns a one-line description of what was found or done. Raises PCSCUnavailable with a
    message a user can act on. `apdu_log` starts pcscd with `-a` (APDUs in its log).
    """
    missing = missing_packages()
    if missing:
        raise PCSCUnavailable("{} not installed: {}".format(" and ".join(missing), INSTALL_HINT))
    if pcscd_running():
        return f"pcscd already running (socket {PCSCD_SOCKET})"
    if os.geteuid() != 0:
        raise PCSCUnavailable(
            "pcscd is not running and only root can start it: sudo systemctl start pcscd "
            "(or sudo pcscd)"
        )
    argv = [_pcscd_exe(), "--foreground"]
    if apdu_log:
        argv.append("--apdu")
    os.makedirs(os.path.dirname(PCSCD_SOCKET), exist_ok=True)
    with open(log_path, "ab") as log:
        # a session of its own: pcscd outlives this process, as the system daemon would
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise PCSCUnavailable(
                f"pcscd exited at start (code {proc.returncode}); see {log_path}"
            )
        if pcscd_running():
            return f"started pcscd (pid {proc.pid}, log {log_path})"
        time.sleep(0.05)
    raise PCSCUnavailable(f"pcscd did not open {PCSCD_SOCKET} within {timeout:g}s; see {log_path}")


def list_readers():
    """Reader names via pyscard; [] when pcscd has none (or is not reachable)."""
    try:
        from smartcard.System import readers
    except ImportError as e:  # pragma: no cover - pyscard is a dependency
        raise PCSCUnavailable("pyscard is not installed: pip install pyscard") from e
    try:
        return [str(r) for r in readers()]
    except Exception:  # noqa: BLE001  ListReadersException, EstablishContextException, ...
        return []


def wait_reader(name_prefix="Virtual PCD", timeout=10.0):
    """Wait until pcscd lists a reader whose name starts with `name_prefix`; return its name
    (the first in sorted order: "Virtual PCD 00 00")."""
    end = time.monotonic() + timeout
    while True:
        names = sorted(n for n in list_readers() if n.startswith(name_prefix))
        if names:
            return names[0]
        if time.monotonic() >= end:
            raise PCSCUnavailable(
                f"no PC/SC reader named {name_prefix!r} after {timeout:g}s (is the vpcd driver loaded? {INSTALL_HINT})"
            )
        time.sleep(0.1)

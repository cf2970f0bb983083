"""A virtual fleet updated over Wi-Fi (tests/e2e/test_ota_wifi.py, bench/ota.py): N virtual Wi-Fi
terminals sharing one in-process `tapkit serve` (SQLite), releases published with rollout plans,
the fleet view read back from the store.

    with OTAFleet(tmp, ks, n=20) as fleet:
        fleet.publish(release.build("unix-virtual", 2), "all")
        fleet.wait(lambda st: all(s["running"] == 2 for s in st.values()), timeout=300)

Waiting is on states (what the server heard, the boards' own log lines), never on time, and never
over USB: each console line would stop a Wi-Fi exchange under way (firmware/app.py). Twenty boards
on two cores: the firmware is built once for all of them, the boards are started one after the
other (each boot is the heaviest moment of a board: warm() loads the rare modules), and every board
is small (the virtual board's 1 MB littlefs image and 256 KB journal).
"""

import contextlib
import os
import socket
import tempfile
import time

FIRST = 1001


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def firmware_files():
    """{path: bytes} of the virtual board's firmware as `tapkit flash` writes it (built once)."""
    from mpybuild import cross, manifest

    with tempfile.TemporaryDirectory() as out:
        return cross.read_built(out, cross.build(out, manifest.for_board("unix-virtual")))


def deploy(state_dir, ks, tid, built, **config):
    """A virtual board's state dir with `built` (firmware_files) and terminal `tid`'s own files."""
    from emulator import lfsimage
    from emulator.vboard import vfs_size
    from host_tools.fleet.provision import terminal_files

    os.makedirs(state_dir, exist_ok=True)
    files = dict(built)
    for name, data in terminal_files(ks, tid, **config).items():
        files["/" + name] = data.encode() if isinstance(data, str) else data
    lfsimage.write_files(os.path.join(state_dir, "fs.img"), files, size=vfs_size("unix-virtual"))
    return state_dir


class OTAFleet:
    def __init__(self, root, ks, n=1, first=FIRST, idle_ms=2000, heap="112K", **config):
        self.root = str(root)
        os.makedirs(self.root, exist_ok=True)
        self.ks = ks
        self.ids = list(range(first, first + n))
        self.url = "sqlite:///%s" % os.path.join(self.root, "taps.db")
        self.port = free_port()
        self.heap = heap
        self.config = dict(config)
        self.config.setdefault("fare", 25000)
        self.config.setdefault("line", 7)
        self.config.update(
            server="127.0.0.1:%d" % self.port, upload_idle_ms=idle_ms, upload_backoff_max_ms=4000
        )
        self.boards = {}
        self.ingest = self.running = None

    def __enter__(self):
        from emulator.vboard import VirtualBoard
        from host_tools.backoffice import ingest, server

        try:
            self.ingest = ingest.Ingest(
                self.url, self.ks, [(self.ids[0], self.ids[-1])], log=lambda m: None
            )
            self.running = server.Running(server.make_app(self.ingest), "127.0.0.1", self.port)
            built = firmware_files()
            for tid in self.ids:
                state = deploy(os.path.join(self.root, str(tid)), self.ks, tid, built, **self.config)
                vb = VirtualBoard(state, heap=self.heap, wifi=True)
                self.boards[tid] = vb
                vb.start(wait_ready=120)  # one boot at a time
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        for vb in self.boards.values():
            with contextlib.suppress(Exception):
                vb.stop()
        if self.running is not None:
            self.running.stop()
        if self.ingest is not None:
            self.ingest.close()

    def _db(self):
        from host_tools.backoffice import store

        return store.open_store(self.url)

    def publish(self, payload, plan="all"):
        from host_tools.backoffice import releases

        with self._db() as db:
            return releases.publish(db, payload, plan)

    def fleet(self):
        """The fleet view (backoffice/releases.py fleet): terminals, releases, events."""
        from host_tools.backoffice import releases

        with self._db() as db:
            return releases.fleet(db)

    def status(self):
        """{terminal: its firmware status as the server last heard it}."""
        return {t["terminal"]: t for t in self.fleet()["terminals"]}

    def wait(self, pred, timeout=300.0, every=0.5):
        """The status once pred(status) holds; AssertionError (with the status) after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            st = self.status()
            if pred(st):
                return st
            if time.monotonic() > deadline:
                raise AssertionError("fleet did not get there in %.0f s: %s" % (timeout, st))
            time.sleep(every)

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


def broken_reader(tmp_path):
    """The firmware's own pn532.py, built, with firmware_version() broken: a release whose trial
    boot fails its self-test (tests/e2e/test_ota_usb.py, test_ota_wifi.py)."""
    from mpybuild import cross, package_dir

    with open(os.path.join(package_dir("firmware"), "pn532.py")) as f:
        text = f.read()
    text = text.replace(
        "    def firmware_version(self):",
        "    def firmware_version(self):\n"
        "        raise OSError(5, 'broken driver')\n\n    def _old_fv(self):",
    )
    src = os.path.join(str(tmp_path), "pn532.py")
    dst = os.path.join(str(tmp_path), "pn532.mpy")
    with open(src, "w") as f:
        f.write(text)
    cross.compile_file(src, dst, name="firmware/pn532.py")
    with open(dst, "rb") as f:
        return f.read()


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
                state = deploy(
                    os.path.join(self.root, str(tid)), self.ks, tid, built, **self.config
                )
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


HEAP = 112 * 1024  # the ESP32's heap, which heap figures are given against
ROOM = "1M"  # boards measured for heap run with this much (no collection hides a tap's garbage)


def _downloaded(s, rel):
    """The terminal reported release `rel` verified (staging it, or beyond)."""
    return s["staged"] == rel or s["running"] == rel


def _tap_free(vb, card, total=HEAP):
    """Heap free (of `total`) at the peak of one tap (its STAT line), and what the tap showed."""
    from harness.boards import tap_stats

    mark = vb.mark()
    r = vb.tap(card)
    stat = [ln for ln in vb.lines(mark) if ln.startswith("STAT| tap ")]
    if not stat:
        raise AssertionError("no STAT line for a tap during the download: %s" % r)
    return total - tap_stats({"stat": stat[-1]})["peak"], r


def measure_wifi(work, ks, rel=2):
    """One Wi-Fi terminal updated from a publish: seconds to the download's end (the terminal
    logs the release verified) and to its confirmed boot; then, on a board with a 1 MB heap, a tap
    in every chunk's exchange of a download: the least heap any of them left free at its peak (of
    112 KB: as heap_paths), how many there were, and the same tap's figure without a download."""
    from harness.boards import rider_card
    from host_tools.fleet import release

    out = {}
    payload = release.build("unix-virtual", rel)
    with OTAFleet(os.path.join(work, "wifi-time"), ks, n=1, idle_ms=1000) as fleet:
        fleet.wait(lambda st: FIRST in st, timeout=60)
        vb = fleet.boards[FIRST]
        mark = vb.mark()
        t0 = time.monotonic()
        fleet.publish(payload, "all")
        vb.wait_for("LOG| ota: release %d verified" % rel, timeout=120, since=mark)
        out["wifi_download_s"] = round(time.monotonic() - t0, 2)
        fleet.wait(lambda st: st[FIRST]["running"] == rel, timeout=180, every=0.1)
        out["wifi_update_s"] = round(time.monotonic() - t0, 2)
    with OTAFleet(
        os.path.join(work, "wifi-heap"), ks, n=1, idle_ms=1000, heap=ROOM, repeat=0
    ) as fleet:
        vb = fleet.boards[FIRST]
        card = rider_card(os.path.join(work, "heap.card"), ks, 10_000_000)
        fleet.wait(lambda st: FIRST in st, timeout=60)
        _tap_free(vb, card)  # the card's first tap here (its issuer signature checked)
        out["idle_heap_free"] = _tap_free(vb, card)[0]  # the same tap without a download
        time.sleep(2.5)  # the tap stopped the board's check-in: tried again 2 s later
        fleet.publish(payload, "all")
        mark = vb.mark()
        frees = []
        part = 0
        # a tap as soon as the terminal asks for the next chunk: it lands in that chunk's exchange
        # (stopping it, as every card in the field does), then the download goes on
        while True:
            st = fleet.wait(
                lambda st, part=part: st[FIRST]["part"] > part or _downloaded(st[FIRST], rel),
                timeout=120,
                every=0.02,
            )[FIRST]
            if _downloaded(st, rel) or any(ln.startswith("LOG| ota:") for ln in vb.lines(mark)):
                break
            part = st["part"]
            free, r = _tap_free(vb, card)
            if r["buzzer"] != "ok":
                raise AssertionError("a tap during the download failed: %s" % r)
            frees.append(free)
        if "MemoryError" in "\n".join(vb.lines(0)):
            raise AssertionError("MemoryError during the download")
    out["download_heap_free"] = min(frees)
    out["download_taps"] = len(frees)
    return out


def measure_usb(work, ks, rel=2):
    """One terminal updated with `tapkit release install` over its USB serial paced at 115,200
    baud (the ESP32's USB-UART bridge): seconds of the transfer, and to the confirmed boot."""
    from emulator.vboard import BAUD, VirtualBoard
    from harness.boards import deploy as deploy_board
    from host_tools.fleet import release
    from host_tools.fleet.link import SerialLink

    out = {}
    payload = release.build("unix-virtual", rel)
    state = deploy_board(os.path.join(work, "usb"), ks, FIRST, fare=25000)
    with VirtualBoard(state, baud=BAUD) as vb:
        mark = vb.mark()
        t0 = time.monotonic()
        with SerialLink(vb.port, timeout=10.0) as link:
            release.install(link, ks, payload)
        out["usb_download_s"] = round(time.monotonic() - t0, 2)
        vb.wait_for("LOG| ota: release %d confirmed" % rel, timeout=180, since=mark)
        vb.wait_for("LOG| boot: terminal %d ready" % FIRST, timeout=60, since=mark)
        out["usb_update_s"] = round(time.monotonic() - t0, 2)
    return out

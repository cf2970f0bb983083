"""Host sync over a real pty against the Responder running on the MicroPython VM.

SerialLink(/dev/pts/N)  <->  pty master  <-relay (fault injection)->  micropython stdin/stdout
                                                                      (fake_terminal_mp.py)
"""

import errno
import json
import os
import queue
import select
import shutil
import subprocess
import threading
import tty

import pytest
import serial

from card_schema import frames, frames_host, taprecord
from host_tools import keystore, report, sync
from host_tools import link as link_mod
from host_tools import store as store_mod

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "tests", "firmware", "fake_terminal_mp.py")
TID = 1001


class PtyTerminal:
    """The fake terminal behind a pty; the relay can drop, inject and black-hole lines."""

    def __init__(self, mpy_build, key, n_records, clock_offset=0):
        env = dict(os.environ, MICROPYPATH=os.path.join(mpy_build, "lib"))
        exe = shutil.which("micropython")
        self.proc = subprocess.Popen(
            [
                exe,
                "-X",
                "heapsize=112K",
                SCRIPT,
                key.hex(),
                str(TID),
                str(n_records),
                str(clock_offset),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            bufsize=0,
        )
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.port = os.ttyname(self.slave)
        self.lock = threading.Lock()
        self.states = queue.Queue()
        self.drop_responses = set()  # indexes (0-based) of response lines to drop
        self.noise = []  # lines written to the host before every response
        self.blackhole_after = None  # after this many responses, the cable is "pulled"
        self.drop_requests_after = None  # after this many requests, requests are lost
        self.responses = 0
        self.requests = 0
        self.stop = False
        self.threads = [
            threading.Thread(target=f, daemon=True)
            for f in (self._host_to_terminal, self._terminal_to_host)
        ]
        for t in self.threads:
            t.start()

    def _host_to_terminal(self):
        buf = b""
        while not self.stop:
            r, _, _ = select.select([self.master], [], [], 0.05)
            if not r:
                continue
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                self.requests += 1
                if (
                    self.drop_requests_after is not None
                    and self.requests > self.drop_requests_after
                ):
                    continue
                with self.lock:
                    self.proc.stdin.write(line + b"\n")

    def _terminal_to_host(self):
        while not self.stop:
            line = self.proc.stdout.readline()
            if not line:
                return
            if line.startswith(b"#state "):
                self.states.put(json.loads(line[7:]))
                continue
            n = self.responses
            self.responses += 1
            if n in self.drop_responses:
                continue
            if self.blackhole_after is not None and n >= self.blackhole_after:
                continue
            for noise in self.noise:
                os.write(self.master, noise)
            os.write(self.master, line)

    def control(self, cmd):
        """Send a test control ("add 5", "state") straight to the VM; return its state."""
        with self.lock:
            self.proc.stdin.write(b"!" + cmd.encode() + b"\n")
        return self.states.get(timeout=20)

    def heal(self):
        self.drop_responses = set()
        self.noise = []
        self.blackhole_after = None
        self.drop_requests_after = None

    def close(self):
        self.stop = True
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for t in self.threads:
            t.join(timeout=2)
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture(scope="module")
def ks(tmp_path_factory):
    return keystore.init(str(tmp_path_factory.mktemp("ks") / "issuer.keys"))


@pytest.fixture
def terminal_factory(mpy_build, ks):
    made = []

    def make(n_records=30, clock_offset=0):
        t = PtyTerminal(mpy_build, keystore.terminal_key(ks, TID), n_records, clock_offset)
        made.append(t)
        return t

    yield make
    for t in made:
        t.close()


@pytest.fixture
def db(tmp_path):
    s = store_mod.open_store("sqlite:///%s" % (tmp_path / "taps.db"))
    yield s
    s.close()


def open_link(term, timeout=0.5, retries=2):
    return link_mod.SerialLink(term.port, timeout=timeout, retries=retries)


def test_sync_twice_stores_everything_once(terminal_factory, db, ks):
    term = terminal_factory(n_records=30)
    seen = []
    with open_link(term) as link:
        s1 = sync.sync_terminal(link, db, ks, progress=lambda d, t: seen.append((d, t)))
        s2 = sync.sync_terminal(link, db, ks)
    assert (s1["terminal"], s1["pulled"], s1["stored"], s1["duplicates"], s1["acked_seq"]) == (
        TID,
        30,
        30,
        0,
        30,
    )
    assert (s2["pulled"], s2["stored"], s2["duplicates"], s2["acked_seq"]) == (0, 0, 0, 30)
    assert seen[0] == (0, 30) and seen[-1] == (30, 30) and len(seen) == 1 + 3  # 11 + 11 + 8
    assert db.count() == 30 and db.last_seq(TID) == 30
    state = term.control("state")
    assert state["acked"] == 30 and state["acks"] == [11, 22, 30]  # an ACK after every batch
    # new taps between syncs: only those come over
    term.control("add 5")
    with open_link(term) as link:
        s3 = sync.sync_terminal(link, db, ks)
    assert (s3["pulled"], s3["stored"], s3["acked_seq"]) == (5, 5, 35)
    rep = report.report(db)
    assert rep["taps"] == 35 and rep["reconciliation"]["sequence_gaps"] == []
    assert db.terminal(TID)["info"]["fw"] == "0.1.0-test"


def test_noise_on_the_wire_is_ignored(terminal_factory, db, ks):
    term = terminal_factory(n_records=15)
    # an answer to nobody
    stale = frames.encode(frames_host.RECORDS, 0, frames_host.records_body([]))
    term.noise = [
        b"MicroPython v1.24 on 2024-10-25; ESP32 module with ESP32\r\n",
        b">>> \r\n",
        b"~AQI0EgUAAAALANazQWB=\n",  # a damaged frame
        b"\x1b[0m garbage \xff\xfe\r\n",
        stale,
    ]
    with open_link(term) as link:
        s = sync.sync_terminal(link, db, ks)
        assert link.stats["ignored"] >= 5 * 4 and link.stats["retries"] == 0
    assert (s["pulled"], s["stored"], s["acked_seq"]) == (15, 15, 15)
    assert db.count() == 15


def test_a_dropped_response_is_retried(terminal_factory, db, ks):
    term = terminal_factory(n_records=25)
    term.drop_responses = {1, 4}  # the first RECORDS answer and the second ACK answer
    with open_link(term) as link:
        s = sync.sync_terminal(link, db, ks)
        assert link.stats["retries"] == 2
    assert (s["pulled"], s["stored"], s["duplicates"], s["acked_seq"]) == (25, 25, 0, 25)
    assert db.count() == 25


@pytest.mark.parametrize("cut", ["responses", "requests"])
def test_link_drop_mid_sync_resumes_without_loss_or_doubles(terminal_factory, db, ks, cut):
    term = terminal_factory(n_records=40)
    if cut == "responses":
        term.blackhole_after = 4  # IDENTIFY, RECORDS, ACK, RECORDS; then the cable is pulled
    else:
        term.drop_requests_after = 4  # the second ACK never reaches the terminal
    with open_link(term) as link, pytest.raises(link_mod.LinkError) as e:
        sync.sync_terminal(link, db, ks)
    assert str(e.value) == (
        f"no answer from the terminal on {term.port}: is the tapkit firmware running?"
    )
    stored = db.count()
    state = term.control("state")
    assert stored == 22  # two batches were committed before the drop
    assert state["acked"] <= stored  # the terminal never drops what the store lacks
    term.heal()
    with open_link(term) as link:
        s = sync.sync_terminal(link, db, ks)
    assert s["stored"] == 40 - stored and s["duplicates"] == 0 and s["acked_seq"] == 40
    assert db.count() == 40
    assert db.raw_records(TID) == sorted(db.raw_records(TID), key=taprecord.seq_of)
    assert term.control("state")["acked"] == 40
    assert report.report(db)["reconciliation"]["sequence_gaps"] == []


def test_records_acked_elsewhere_leave_a_reported_gap(terminal_factory, db, ks):
    term = terminal_factory(n_records=20)
    term.control("ack 8")  # seq 1..8 went to another store over Wi-Fi
    with open_link(term) as link:
        s = sync.sync_terminal(link, db, ks)
    assert (s["from_seq"], s["gap_before"], s["stored"], s["acked_seq"]) == (9, 8, 12, 20)
    gaps = report.report(db)["reconciliation"]["sequence_gaps"]
    assert gaps == [{"terminal": TID, "from_seq": 1, "to_seq": 8, "missing": 8}]


def test_clock_drift_is_corrected(terminal_factory, db, ks):
    term = terminal_factory(n_records=3, clock_offset=-3600)
    with open_link(term) as link:
        s = sync.sync_terminal(link, db, ks)
    assert s["clock_set"] and -3602 <= s["clock_drift"] <= -3598
    import time

    assert abs(term.control("state")["clock"] - time.time()) < 3
    with open_link(term) as link:
        s = sync.sync_terminal(link, db, ks)
    assert not s["clock_set"] and abs(s["clock_drift"]) <= 2


def test_terminal_errors_and_silence(terminal_factory, db, ks):
    term = terminal_factory(n_records=3)
    with open_link(term) as link:
        with pytest.raises(link_mod.TerminalError, match="refused ACK: ack 9 beyond head 3"):
            link.ack(9)
        assert link.identify()["head_seq"] == 3  # the link is still usable
    # a pty with nothing behind it: nobody answers
    master, slave = os.openpty()
    try:
        link = link_mod.SerialLink(os.ttyname(slave), timeout=0.2, retries=1)
        with link, pytest.raises(link_mod.LinkError, match="no answer from the terminal on /dev/"):
            link.identify()
    finally:
        os.close(master)
        os.close(slave)


def test_open_errors_are_one_clear_line(tmp_path):
    with pytest.raises(link_mod.LinkError, match="no serial port /dev/ttyNOPE0: is the terminal"):
        link_mod.SerialLink("/dev/ttyNOPE0")
    # as root the permission check cannot be provoked on a real file: check the mapping itself
    e = serial.SerialException(
        errno.EACCES,
        "could not open port /dev/ttyUSB0: [Errno 13] Permission denied: '/dev/ttyUSB0'",
    )
    assert str(link_mod._open_error("/dev/ttyUSB0", e)) == (
        "permission denied on /dev/ttyUSB0: add yourself to the dialout group"
    )
    e = serial.SerialException(errno.EBUSY, "could not open port: Device or resource busy")
    assert "is busy" in str(link_mod._open_error("/dev/ttyUSB0", e))
    # a second opener of the same port is refused (exclusive lock), like a busy USB port
    master, slave = os.openpty()
    try:
        path = os.ttyname(slave)
        with link_mod.SerialLink(path), pytest.raises(link_mod.LinkError, match="is busy"):
            link_mod.SerialLink(path)
    finally:
        os.close(master)
        os.close(slave)

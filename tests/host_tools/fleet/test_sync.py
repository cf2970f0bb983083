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
import signal
import subprocess
import sys
import threading
import time
import tty

import pytest
import serial

from card_schema import frames, frames_host, taprecord
from host_tools import keystore
from host_tools.backoffice import audit, report
from host_tools.backoffice import store as store_mod
from host_tools.fleet import link as link_mod
from host_tools.fleet import sync

ROOT = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
)
SCRIPT = os.path.join(ROOT, "tests", "firmware", "fake_terminal_mp.py")
TID = 1001


class PtyTerminal:
    """The fake terminal behind a pty; the relay can drop, inject and black-hole lines."""

    def __init__(self, mpy_build, key, n_records, clock_offset=0, cwd=None, config_key=None):
        env = dict(os.environ, MICROPYPATH=os.path.join(mpy_build, "lib"))
        if config_key:
            env["TAPKIT_CONFIG_KEY"] = config_key.hex()
        self.cwd = cwd
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
            cwd=cwd,
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
        self.mutate_request = None  # callable(n, line) -> lines to pass on instead of line
        self.mutate_response = None
        self.delay = 0.0  # seconds before every response (a slow line)
        self.responses = 0
        self.requests = 0
        self.outstanding = self.max_outstanding = 0  # requests the terminal has not answered yet
        self.waiting = []  # their lengths, oldest first (the terminal answers in order)
        self.max_waiting_bytes = 0  # the most bytes its console held at once
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
                lines = [line + b"\n"]
                if self.mutate_request:
                    lines = self.mutate_request(self.requests - 1, line + b"\n")
                with self.lock:
                    for x in lines:
                        self.proc.stdin.write(x)
                    self.outstanding += 1
                    self.max_outstanding = max(self.max_outstanding, self.outstanding)
                    self.waiting.append(len(line) + 1)
                    self.max_waiting_bytes = max(self.max_waiting_bytes, sum(self.waiting))

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
            with self.lock:
                self.outstanding -= 1
                if self.waiting:
                    self.waiting.pop(0)
            if n in self.drop_responses:
                continue
            if self.blackhole_after is not None and n >= self.blackhole_after:
                continue
            if self.delay:
                time.sleep(self.delay)
            for noise in self.noise:
                os.write(self.master, noise)
            for x in self.mutate_response(n, line) if self.mutate_response else [line]:
                os.write(self.master, x)

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
        self.mutate_request = self.mutate_response = None
        self.delay = 0.0

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
def ks_path(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("ks") / "issuer.keys")
    keystore.init(path)
    return path


@pytest.fixture(scope="module")
def ks(ks_path):
    return keystore.load(ks_path)


@pytest.fixture
def terminal_factory(mpy_build, ks, tmp_path):
    made = []

    def make(n_records=30, clock_offset=0):
        board = tmp_path / ("board%d" % len(made))
        board.mkdir()
        t = PtyTerminal(
            mpy_build,
            keystore.terminal_key(ks, TID),
            n_records,
            clock_offset,
            cwd=str(board),
            config_key=keystore.config_key(ks, TID),
        )
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
        s1 = sync.sync_terminal(
            link, db, ks, progress=lambda d, t: seen.append((d, t)), stream=False
        )
        s2 = sync.sync_terminal(link, db, ks, stream=False)
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
    rep = report.report(db, audit.keys_from(ks))
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
        sync.sync_terminal(link, db, ks, stream=False)
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
    assert report.report(db, audit.keys_from(ks))["reconciliation"]["sequence_gaps"] == []


@pytest.mark.parametrize("stream", [True, False])
def test_records_acked_elsewhere_the_first_after_the_gap_is_verified(
    terminal_factory, db, ks, stream
):
    term = terminal_factory(n_records=20)
    term.control("ack 8")  # seq 1..8 went to another store over Wi-Fi
    with open_link(term) as link:
        s = sync.sync_terminal(link, db, ks, stream=stream)
    assert (s["from_seq"], s["gap_before"], s["stored"], s["acked_seq"]) == (9, 8, 12, 20)
    # seq 8, still on the terminal's flash, anchors seq 9's link: checked as over Wi-Fi (a
    # forged seq 9 would not verify against it) and kept for the audit, which then lists no gap
    # (its rule: a gap is a link it cannot check)
    assert s["gap_anchored"] and db._all("SELECT terminal, seq FROM anchors") == [(TID, 9)]
    gaps = report.report(db, audit.keys_from(ks))["reconciliation"]["sequence_gaps"]
    assert gaps == []


def test_a_gap_whose_anchor_is_gone_is_stored_unverified_and_reported(terminal_factory, db, ks):
    term = terminal_factory(n_records=20)
    term.control("ack 8")
    term.control("reclaim 8")  # the sector holding 1..8 was erased: the terminal has no seq 8
    with open_link(term) as link:
        s = sync.sync_terminal(link, db, ks)
    assert (s["stored"], s["gap_anchored"]) == (12, False)
    gaps = report.report(db, audit.keys_from(ks))["reconciliation"]["sequence_gaps"]
    assert gaps == [{"terminal": TID, "from_seq": 1, "to_seq": 8, "missing": 8}]


# ---- streaming: a window of PULLs in flight, binary RECORDS lines ---------------------------------
def test_streamed_sync_keeps_pulls_in_flight_and_acks_after_each_commit(terminal_factory, db, ks):
    term = terminal_factory(n_records=200)
    term.delay = 0.002  # a line that takes its time: the host's window fills
    # a generous timeout: a retransmission on a loaded machine would change the count of requests
    with open_link(term, timeout=10.0) as link:
        assert link.identify()["proto"] == frames_host.PROTO_BINARY
        s = sync.sync_terminal(link, db, ks)
        sent = link.stats["sent"]
    assert (s["pulled"], s["stored"], s["duplicates"], s["acked_seq"]) == (200, 200, 0, 200)
    assert term.max_outstanding >= 3  # PULLs waiting in the terminal's console while it answers
    # ... never more bytes than the ESP32's console ring takes (260; the budget 240)
    assert 3 * 22 <= term.max_waiting_bytes <= frames.MAX_REQUEST
    # 2 IDENTIFY (the test's and the sync's) + DIAG_LOG + 15 PULLs of 14 + 2 ACKs (every 140)
    assert sent == 3 + 15 + 2 and term.control("state")["acks"] == [140, 200]
    assert [taprecord.seq_of(r) for r in db.raw_records(TID)] == list(range(1, 201))
    assert report.report(db, audit.keys_from(ks))["reconciliation"]["sequence_gaps"] == []


def test_a_wide_window_still_fits_the_console_budget(terminal_factory):
    term = terminal_factory(n_records=200)
    term.delay = 0.005  # a slow terminal: every PULL the window allows is waiting in its console
    with open_link(term, timeout=10.0) as link:  # no retransmission: each line counted once
        s = link.stream(1, 200, window=30)
        got = [taprecord.seq_of(r) for recs in s for r in recs]
    assert got == list(range(1, 201))
    # 15 PULLs of 22 bytes would be 330: the ring (260) would lose bytes; the stream holds at 240
    assert 9 * 22 <= s.max_in_flight <= frames.MAX_REQUEST
    assert term.max_waiting_bytes <= frames.MAX_REQUEST


def test_a_paced_line_moves_no_faster_than_its_baud_rate(terminal_factory, db, ks):
    from harness import serial_line

    term = terminal_factory(n_records=200)
    with serial_line.PacedLine(term.port) as line:
        with link_mod.SerialLink(line.port, timeout=5.0) as link:
            t0 = time.monotonic()
            s = sync.sync_terminal(link, db, ks)
            took = time.monotonic() - t0
        moved = dict(line.moved)
    assert (s["stored"], s["duplicates"]) == (200, 0)
    # the answers carry the records (200 x 64 = 12,800 B) at ~97 %: 1.1 s at 11,520 B/s at least
    assert 200 * 64 < moved["to_host"] < 200 * 64 * 1.1
    assert took >= moved["to_host"] / serial_line.RATE


def test_streamed_sync_over_a_noisy_lossy_line_stores_everything_once(terminal_factory, db, ks):
    term = terminal_factory(n_records=100)
    term.noise = [b"I (1234) wifi: noise ~!garbage=\n", b"\x00\x7e\xff\n"]
    term.drop_responses = {2, 5, 6}  # RECORDS answers lost on the way: asked again
    with open_link(term) as link:
        link.timeout = 0.5
        s = sync.sync_terminal(link, db, ks)
        assert link.stats["retries"] >= 3
    assert (s["stored"], s["duplicates"], s["acked_seq"]) == (100, 0, 100)
    assert [taprecord.seq_of(r) for r in db.raw_records(TID)] == list(range(1, 101))


def test_streamed_sync_cut_mid_stream_resumes_without_loss_or_doubles(terminal_factory, db, ks):
    term = terminal_factory(n_records=200)
    term.blackhole_after = 14  # IDENTIFY and 13 answers (RECORDS, an ACK), then the cable goes
    with open_link(term) as link, pytest.raises(link_mod.LinkError):
        link.timeout, link.retries = 0.5, 1
        sync.sync_terminal(link, db, ks)
    stored = db.count()
    assert stored == 140 and term.control("state")["acked"] <= stored  # the first commit only
    term.heal()
    with open_link(term) as link:
        s = sync.sync_terminal(link, db, ks)
    assert (s["stored"], s["duplicates"], s["acked_seq"]) == (60, 0, 200)
    assert [taprecord.seq_of(r) for r in db.raw_records(TID)] == list(range(1, 201))


def test_clock_drift_is_corrected(terminal_factory, db, ks):
    term = terminal_factory(n_records=3, clock_offset=-3600)
    with open_link(term) as link:
        s = sync.sync_terminal(link, db, ks)
    assert s["clock_set"] and -3602 <= s["clock_drift"] <= -3598
    assert abs(term.control("state")["clock"] - time.time()) < 3
    with open_link(term) as link:
        s = sync.sync_terminal(link, db, ks)
    assert not s["clock_set"] and abs(s["clock_drift"]) <= 2


def test_terminal_errors_and_silence(terminal_factory, db, ks):
    term = terminal_factory(n_records=3)
    with open_link(term) as link:
        with pytest.raises(link_mod.TerminalError, match="control 0x03 without its tag"):
            link.ack(2)  # no key on the link: the terminal obeys no ACK
        link.key = keystore.terminal_key(ks, TID)
        link.identify()  # its nonce
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
    assert str(link_mod.open_error("/dev/ttyUSB0", e)) == (
        "permission denied on /dev/ttyUSB0: add yourself to the dialout group"
    )
    e = serial.SerialException(errno.EBUSY, "could not open port: Device or resource busy")
    assert "is busy" in str(link_mod.open_error("/dev/ttyUSB0", e))
    # a second opener of the same port is refused (exclusive lock), like a busy USB port
    master, slave = os.openpty()
    try:
        path = os.ttyname(slave)
        with link_mod.SerialLink(path), pytest.raises(link_mod.LinkError, match="is busy"):
            link_mod.SerialLink(path)
    finally:
        os.close(master)
        os.close(slave)


# ---- line faults: flipped bits, duplicated frames, dropped bytes ---------------------------------
def _flip(line, bit):
    b = bytearray(line)
    i = 1 + bit // 8 % (len(b) - 2)  # never the "~" or the newline
    b[i] ^= 1 << (bit % 8)
    return bytes(b)


@pytest.mark.parametrize("fault", ["flip", "duplicate", "drop_bytes"])
@pytest.mark.parametrize("side", ["request", "response"])
def test_line_faults_still_store_every_tap_once(terminal_factory, db, ks, fault, side):
    term = terminal_factory(n_records=40)
    hit = {1, 2, 4, 5, 7}  # PULL/ACK exchanges of the first batches

    def mutate(n, line):
        if n not in hit:
            return [line]
        if fault == "flip":
            return [_flip(line, 7 * n + 3)]
        if fault == "duplicate":
            return [line, line]
        return [line[:5] + line[9:]]  # four bytes lost in the middle of the line

    setattr(term, "mutate_" + side, mutate)
    with open_link(term, timeout=0.3, retries=3) as link:
        s = sync.sync_terminal(link, db, ks)
        if fault != "duplicate":
            assert link.stats["retries"] >= len(hit) - 1
    assert (s["pulled"], s["stored"], s["duplicates"], s["acked_seq"]) == (40, 40, 0, 40)
    assert db.count() == 40 and term.control("state")["acked"] == 40
    assert [taprecord.seq_of(r) for r in db.raw_records(TID)] == list(range(1, 41))


# ---- config push ---------------------------------------------------------------------------------
def test_sync_installs_missing_config_signed_for_the_terminal(terminal_factory, db, ks):
    from card_schema import frames_host, signed, tariff

    table = {"fares": {str(n): 20000 + n for n in range(15)}, "default": 25000}
    fares = json.dumps(table).encode()
    assert frames_host.INSTALL_CHUNK < len(fares) + 29 <= 2 * frames_host.INSTALL_CHUNK  # 2 chunks
    db.put_config(signed.KIND_FARES, 4, fares)
    db.put_config(signed.KIND_DENY, 2, tariff.pack_deny({b"\x04\x01\x02\x03\x04\x05\x06": 0}))
    db.put_config(signed.KIND_FARES, 3, json.dumps({"default": 1}).encode())
    term = terminal_factory(n_records=3)
    # the answer to the last fares chunk is lost: the retransmission finds it applied
    term.drop_responses = {4}
    with open_link(term) as link:
        s = sync.sync_terminal(link, db, ks)
        assert link.identify()["fares_ver"] == 4
    assert s["config_installed"] == ["fares 4", "deny 2"] and s["stored"] == 3
    blob = open(os.path.join(term.cwd, "fares.bin"), "rb").read()
    assert signed.verify(keystore.config_key(ks, TID), blob) == (signed.KIND_FARES, 4, fares)
    with open_link(term) as link:
        assert sync.sync_terminal(link, db, ks)["config_installed"] == []
    db.put_config(signed.KIND_DENY, 3, tariff.pack_deny({b"\x04\x09\x02\x03\x04\x05\x06": 1}))
    with open_link(term) as link:
        assert sync.sync_terminal(link, db, ks)["config_installed"] == ["deny 3"]


# ---- the CLI: killed mid-ingest, rerun -------------------------------------------------------------
def _cli(*args, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "host_tools.cli", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def test_cli_sync_killed_mid_ingest_then_rerun_stores_every_tap_once(
    terminal_factory, ks_path, tmp_path
):
    import sqlite3

    term = terminal_factory(n_records=200, clock_offset=-600)
    term.delay = 0.03  # a slow line, so the kill lands mid-batch
    path = tmp_path / "cli.db"
    url = "sqlite:///%s" % path
    p = _cli("sync", "--port", term.port, "--db", url, "--keystore", ks_path, "--json")
    stored = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and stored < 40:
        time.sleep(0.05)
        if path.exists():
            try:
                with sqlite3.connect(path) as c:
                    stored = c.execute("SELECT COUNT(*) FROM taps").fetchone()[0]
            except sqlite3.OperationalError:
                pass  # not migrated yet
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=10)
    assert p.returncode == -signal.SIGKILL and 40 <= stored < 200, p.stderr.read()
    term.delay = 0.0
    p = _cli("sync", "--port", term.port, "--db", url, "--keystore", ks_path)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert "pulled" in err and "/" in err  # the progress line
    assert "stored" in out and "acked_seq" in out  # the summary table
    with sqlite3.connect(path) as c:
        seqs = [r[0] for r in c.execute("SELECT seq FROM taps ORDER BY seq")]
    assert seqs == list(range(1, 201))
    assert term.control("state")["acked"] == 200
    assert abs(term.control("state")["clock"] - time.time()) < 5  # the clock was corrected
    # nothing left: a third run stores nothing and says so in JSON
    p = _cli("sync", "--port", term.port, "--db", url, "--keystore", ks_path, "--json")
    out, err = p.communicate(timeout=60)
    summary = json.loads(out)
    assert p.returncode == 0 and (summary["pulled"], summary["stored"]) == (0, 0)
    # the report re-verifies the stored chain with the keystore
    p = _cli("report", "--db", url, "--keystore", ks_path, "--json")
    out, err = p.communicate(timeout=60)
    rep = json.loads(out)
    assert p.returncode == 0 and rep["taps"] == 200
    rec = rep["reconciliation"]
    assert rec["mac_chain_breaks"] == [] and rec["sequence_gaps"] == []


def test_cli_sync_errors_are_one_line(ks_path, tmp_path):
    p = _cli(
        "sync",
        "--port",
        "/dev/ttyNOPE9",
        "--db",
        "sqlite:///%s" % (tmp_path / "x.db"),
        "--keystore",
        ks_path,
    )
    out, err = p.communicate(timeout=60)
    assert p.returncode == 1 and err.strip().count("\n") == 0
    assert err.startswith("tapkit: error: no serial port /dev/ttyNOPE9")


def test_records_that_do_not_verify_are_neither_stored_nor_acked(mpy_build, db, ks, tmp_path):
    # a terminal whose journal key is not the keystore's (a foreign or re-keyed journal)
    term = PtyTerminal(mpy_build, bytes(16), 5, cwd=str(tmp_path))
    try:
        with (
            open_link(term) as link,
            pytest.raises(store_mod.ChainError, match="MAC chain broken"),
        ):
            sync.sync_terminal(link, db, ks)
        assert db.count() == 0 and term.control("state")["acked"] == 0
        assert [r["source"] for r in db.rejects()] == ["usb"]
        assert report.report(db, audit.keys_from(ks))["reconciliation"]["refused_uploads"] == {
            "bad_mac": 1
        }
    finally:
        term.close()

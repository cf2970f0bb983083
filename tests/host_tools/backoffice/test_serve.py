"""`tapkit serve`: Wi-Fi batch ingest over real HTTP into SQLite and a real PostgreSQL server.

Batches are real MAC-chained journal records; the server runs in-process (make_server on a free port)
or as a `tapkit serve` subprocess where a restart or a kill is the point.
"""

import binascii
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from card_schema import signed, taprecord, upload_host
from host_tools import keystore
from host_tools.backoffice import ingest, server
from host_tools.backoffice import store as store_mod

ROOT = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
)
TID = 1001
T0 = 1700000000


@pytest.fixture(scope="module")
def ks_path(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("ks") / "issuer.keys")
    keystore.init(path)
    return path


@pytest.fixture(scope="module")
def ks(ks_path):
    return keystore.load(ks_path)


def records(ks, n, tid=TID, first=1, prev=taprecord.GENESIS_MAC):
    key = keystore.terminal_key(ks, tid)
    out = []
    for i in range(n):
        seq = first + i
        buf = bytearray(taprecord.SIZE)
        prev = taprecord.pack_into(
            buf,
            prev,
            key,
            seq=seq,
            time=T0 + 60 * seq,
            terminal=tid,
            uid=bytes([4, seq % 5, 0, 0, 0, 0, 0x80]),
            kind=taprecord.KIND_CHARGE,
            counter=seq,
            amount=250,
            balance=100000 - 250 * seq,
            line=3,
        )
        out.append(bytes(buf))
    return out


class Server:
    def __init__(self, url, ks, terminals="1001-1099"):
        self.logged = []
        self.ingest = ingest.Ingest(
            url, ks, server.parse_ranges(terminals), log=self.logged.append
        )
        self.srv = server.make_server(self.ingest, "127.0.0.1", 0)
        self.port = self.srv.server_address[1]
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()
        self.ingest.close()


@pytest.fixture
def server_factory(ks):
    made = []

    def make(url, **kw):
        s = Server(url, ks, **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def post(port, body, path="/v1/batch"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("POST", path, body=body, headers={"Content-Type": "application/octet-stream"})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode()
    finally:
        c.close()


def metric(port, name):
    for line in get(port, "/metrics")[1].splitlines():
        if line.startswith(name + " "):
            return int(line.split()[-1])
    raise AssertionError(name)


def test_batch_stored_once_answered_with_ack_time_and_config(server_factory, store_url, ks):
    srv = server_factory(store_url)
    recs = records(ks, 15)
    status, body = post(srv.port, upload_host.batch_body(TID, recs[:10]))
    assert status == 200
    acked, t, blobs = upload_host.parse_answer(body)
    assert acked == 10 and abs(t - time.time()) < 5 and blobs == []
    # the same batch again (its answer was lost), then one overlapping it
    assert (
        upload_host.parse_answer(post(srv.port, upload_host.batch_body(TID, recs[:10]))[1])[0]
        == 10
    )
    assert (
        upload_host.parse_answer(post(srv.port, upload_host.batch_body(TID, recs[5:15]))[1])[0]
        == 15
    )
    with store_mod.open_store(store_url) as db:
        assert [taprecord.seq_of(r) for r in db.raw_records(TID)] == list(range(1, 16))
        db.put_config(signed.KIND_FARES, 5, b"fare table v5")
        db.put_config(signed.KIND_DENY, 2, b"deny v2")
    assert metric(srv.port, "tapkit_taps_received_total") == 30
    assert metric(srv.port, "tapkit_taps_stored_total") == 15
    assert metric(srv.port, "tapkit_terminals_seen") == 1
    # an empty batch asks for time and config: the blobs are signed for this terminal only
    status, body = post(srv.port, upload_host.batch_body(TID, [], {"fares_ver": 5, "deny_ver": 1}))
    acked, _, blobs = upload_host.parse_answer(body)
    assert status == 200 and acked == 0 and len(blobs) == 1
    assert signed.verify(keystore.config_key(ks, TID), blobs[0]) == (
        signed.KIND_DENY,
        2,
        b"deny v2",
    )
    with pytest.raises(ValueError, match="bad signature"):
        signed.verify(keystore.config_key(ks, TID + 1), blobs[0])
    assert get(srv.port, "/healthz") == (200, "ok\n")


def test_unknown_terminal_and_altered_record_are_refused_and_logged(server_factory, store_url, ks):
    srv = server_factory(store_url, terminals="1001")
    status, text = post(srv.port, upload_host.batch_body(2002, records(ks, 3, tid=2002)))
    assert (status, text) == (403, b"unknown terminal 2002\n")
    recs = records(ks, 6)
    bad = bytearray(recs[3])
    bad[28] ^= 0x01  # seq 4's amount, by someone who fixes the CRC too (not the MAC: no key)
    bad[60:64] = (binascii.crc32(bytes(bad[:60])) & 0xFFFFFFFF).to_bytes(4, "little")
    status, text = post(srv.port, upload_host.batch_body(TID, recs[:3] + [bytes(bad)] + recs[4:]))
    assert status == 422 and b"MAC chain broken at seq 4" in text
    # records of terminal 1001 signed with another terminal's key
    status, _ = post(srv.port, upload_host.batch_body(TID, [records(ks, 1, tid=1002)[0]]))
    assert status == 422
    status, _ = post(srv.port, b"TKB1 garbage")
    assert status == 400
    with store_mod.open_store(store_url) as db:
        assert db.count() == 0  # nothing of a refused batch is stored
        reasons = [r["reason"].split(":")[0] for r in db.rejects()]
    assert reasons == ["unknown_terminal", "bad_mac", "bad_mac", "malformed"]
    assert any("refused batch from terminal 2002" in line for line in srv.logged)
    assert metric(srv.port, 'tapkit_rejects_total{reason="bad_mac"}') == 2
    assert metric(srv.port, 'tapkit_rejects_total{reason="unknown_terminal"}') == 1
    # the honest batch still goes in
    assert post(srv.port, upload_host.batch_body(TID, recs))[0] == 200


def test_connection_dropped_mid_request_stores_nothing(server_factory, tmp_path, ks):
    url = "sqlite:///%s" % (tmp_path / "taps.db")
    srv = server_factory(url)
    body = upload_host.batch_body(TID, records(ks, 8))
    s = socket.create_connection(("127.0.0.1", srv.port))
    s.sendall(
        b"POST /v1/batch HTTP/1.0\r\nContent-Length: %d\r\n\r\n" % len(body)
        + body[: len(body) // 2]
    )
    s.close()  # the terminal drove out of Wi-Fi range
    time.sleep(0.3)
    assert get(srv.port, "/healthz")[0] == 200
    with store_mod.open_store(url) as db:
        assert db.count() == 0
    assert upload_host.parse_answer(post(srv.port, body)[1])[0] == 8


def test_two_servers_one_postgresql_store_a_batch_once(server_factory, pg_server, ks):
    url = pg_server.create_database()
    a, b = server_factory(url), server_factory(url)
    recs = records(ks, 40)
    results = []

    def send(srv, batch):
        results.append(post(srv.port, upload_host.batch_body(TID, batch)))

    for chunk in (recs[:20], recs[20:]):
        threads = [threading.Thread(target=send, args=(s, chunk)) for s in (a, b, a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert [r[0] for r in results] == [200] * 8
    with store_mod.open_store(url) as db:
        assert [taprecord.seq_of(r) for r in db.raw_records(TID)] == list(range(1, 41))
    stored = metric(a.port, "tapkit_taps_stored_total") + metric(
        b.port, "tapkit_taps_stored_total"
    )
    assert stored == 40


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve_proc(url, ks_path, port):
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "host_tools.cli",
            "serve",
            "--db",
            url,
            "--keystore",
            ks_path,
            "--listen",
            "127.0.0.1:%d" % port,
            "--terminals",
            "1001-1010",
        ],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = p.stderr.readline()
    assert "listening on http://127.0.0.1:%d" % port in line, line
    return p


def test_cli_server_killed_mid_batch_and_restarted(ks, ks_path, tmp_path):
    url = "sqlite:///%s" % (tmp_path / "taps.db")
    port = _free_port()
    p = _serve_proc(url, ks_path, port)
    recs = records(ks, 30)
    try:
        assert post(port, upload_host.batch_body(TID, recs[:10]))[0] == 200
        body = upload_host.batch_body(TID, recs[10:20])
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(
            b"POST /v1/batch HTTP/1.0\r\nContent-Length: %d\r\n\r\n" % len(body) + body[:300]
        )
        p.send_signal(signal.SIGKILL)  # the server dies with the batch half received
        p.wait(timeout=10)
        s.close()
        with pytest.raises(OSError):
            post(port, body)  # nobody listening: the terminal backs off and retries
    finally:
        p.kill()
        p.wait()
    p = _serve_proc(url, ks_path, port)
    try:
        assert upload_host.parse_answer(post(port, body)[1])[0] == 20
        assert (
            upload_host.parse_answer(post(port, upload_host.batch_body(TID, recs[:20]))[1])[0]
            == 20
        )
        assert (
            upload_host.parse_answer(post(port, upload_host.batch_body(TID, recs[20:]))[1])[0]
            == 30
        )
        assert get(port, "/healthz")[0] == 200
        text = get(port, "/metrics")[1]
        assert "tapkit_taps_received_total 40" in text and "tapkit_taps_stored_total 20" in text
        assert get(port, "/nope")[0] == 404
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=10)
    with store_mod.open_store(url) as db:
        assert [taprecord.seq_of(r) for r in db.raw_records(TID)] == list(range(1, 31))


def test_cli_serve_and_publish_errors_are_one_line(ks_path, tmp_path):
    def run(*args):
        p = subprocess.run(
            [sys.executable, "-m", "host_tools.cli", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return p.returncode, p.stdout, p.stderr

    url = "sqlite:///%s" % (tmp_path / "taps.db")
    code, _, err = run("serve", "--db", url, "--keystore", ks_path, "--listen", "x:y")
    assert (
        code == 1
        and err == "tapkit: error: bad --listen 'x:y': use HOST:PORT, e.g. 0.0.0.0:8080\n"
    )
    code, _, err = run("serve", "--db", url, "--keystore", ks_path, "--terminals", "9-1")
    assert code == 1 and err == "tapkit: error: bad terminal range '9-1': 9 > 1\n"
    payload = tmp_path / "fares.json"
    payload.write_text('{"default": 25000}')
    code, out, _ = run("publish", "--kind", "fares", "--version", "7", "--db", url, str(payload))
    assert code == 0 and out == "fares version 7 (17 bytes) published\n"
    payload.write_text('{"default": 30000}')
    code, _, err = run("publish", "--kind", "fares", "--version", "7", "--db", url, str(payload))
    assert code == 1 and "already published with other content" in err
    # a table the terminals would refuse is refused here, with the reason, and nothing is published
    payload.write_text('{"default": -5}')
    code, _, err = run("publish", "--kind", "fares", "--version", "8", "--db", url, str(payload))
    assert code == 1 and "integer Rial" in err and "Traceback" not in err
    payload.write_text("not json")
    code, _, err = run("publish", "--kind", "deny", "--version", "1", "--db", url, str(payload))
    assert code == 1 and "is not JSON" in err and len(err.strip().splitlines()) == 1


def test_a_gap_needs_the_anchor_record(server_factory, store_url, ks):
    """Records 1..10 went into another store (USB sync elsewhere): the terminal's batch from 11 is
    verifiable only with the anchor (seq 10); without it nothing is stored unverified."""
    srv = server_factory(store_url)
    recs = records(ks, 15)
    status, text = post(srv.port, upload_host.batch_body(TID, recs[10:]))
    assert status == 409 and b"seq 10 is missing" in text and b"send the anchor record" in text
    forged = bytearray(recs[10])
    forged[28] ^= 0x40  # the amount of seq 11, CRC fixed: only the MAC can tell
    forged[60:64] = (binascii.crc32(bytes(forged[:60])) & 0xFFFFFFFF).to_bytes(4, "little")
    body = upload_host.batch_body(TID, [bytes(forged)] + recs[11:], anchor=recs[9])
    assert post(srv.port, body)[0] == 422
    status, body = post(srv.port, upload_host.batch_body(TID, recs[10:], anchor=recs[9]))
    assert status == 200 and upload_host.parse_answer(body)[0] == 15
    # the anchor alone: a terminal with nothing new checks in
    status, body = post(srv.port, upload_host.batch_body(TID, [], anchor=recs[14]))
    assert status == 200 and upload_host.parse_answer(body)[0] == 15
    with store_mod.open_store(store_url) as db:
        assert [taprecord.seq_of(r) for r in db.raw_records(TID)] == list(range(11, 16))
        assert [r["reason"].split(":")[0] for r in db.rejects()] == ["gap", "bad_mac"]
    assert metric(srv.port, 'tapkit_rejects_total{reason="gap"}') == 1

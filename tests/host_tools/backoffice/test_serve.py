"""`tapkit serve`: Wi-Fi batch ingest over real HTTP into SQLite and a real PostgreSQL server.

Batches are real MAC-chained journal records, encrypted as a terminal does (card_schema/upload.py);
the server runs in-process (uvicorn in a thread on a free port) or as a `tapkit serve` subprocess
where a restart, a kill, workers or TLS is the point.
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

from card_schema import signed, tariff, taprecord, upload_host
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
        self.running = server.Running(server.make_app(self.ingest))
        self.port = self.running.port

    def close(self):
        self.running.stop()
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


class Term:
    """What a terminal sends and how it reads the answer (its keys, its request's iv)."""

    def __init__(self, ks, tid=TID):
        self.tid = tid
        self.jkey = keystore.terminal_key(ks, tid)
        self.wire = keystore.wire_key(ks, tid)
        self.iv = None

    def body(self, recs, versions=None, anchor=None, part=(0, 0, 0)):
        body = upload_host.batch_body(
            self.wire, self.tid, recs, versions, anchor, part, journal_key=self.jkey
        )
        self.iv = body[31:47]  # nonce | tag
        return body

    def answer(self, body):
        return upload_host.parse_answer(self.jkey, self.wire, self.iv, body)

    def acked(self, port, recs, **kw):
        status, body = post(port, self.body(recs, **kw))
        assert status == 200, body
        return self.answer(body)[0]


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
    t = Term(ks)
    recs = records(ks, 15)
    status, body = post(srv.port, t.body(recs[:10]))
    assert status == 200
    acked, now, chunk = t.answer(body)
    assert acked == 10 and abs(now - time.time()) < 5 and chunk is None
    # the same batch again (its answer was lost), then one overlapping it
    assert t.acked(srv.port, recs[:10]) == 10
    assert t.acked(srv.port, recs[5:15]) == 15
    with store_mod.open_store(store_url) as db:
        assert [taprecord.seq_of(r) for r in db.raw_records(TID)] == list(range(1, 16))
        db.put_config(signed.KIND_FARES, 5, b"fare table v5")
        db.put_config(signed.KIND_DENY, 2, b"deny v2")
    assert metric(srv.port, "tapkit_taps_received_total") == 30
    assert metric(srv.port, "tapkit_taps_stored_total") == 15
    assert metric(srv.port, "tapkit_terminals_seen") == 1
    # and the per-terminal gauges from the store: this terminal was seen over Wi-Fi just now
    gauge = f'tapkit_terminal_last_seen_seconds{{role="terminal",terminal="{TID}"}} '
    (seen,) = [x for x in get(srv.port, "/metrics")[1].splitlines() if x.startswith(gauge)]
    assert abs(float(seen.split()[-1]) - time.time()) < 120
    # an empty batch asks for time and config: the blob is signed for this terminal only
    srv.ingest.CONFIG_TTL = 0
    status, body = post(srv.port, t.body([], {"fares_ver": 5, "deny_ver": 1}))
    acked, _, (kind, version, total, off, data) = t.answer(body)
    assert status == 200 and acked == 0 and (kind, version, off, len(data)) == (2, 2, 0, total)
    assert signed.verify(keystore.config_key(ks, TID), data) == (signed.KIND_DENY, 2, b"deny v2")
    with pytest.raises(ValueError, match="bad signature"):
        signed.verify(keystore.config_key(ks, TID + 1), data)
    assert get(srv.port, "/healthz") == (200, "ok\n")


def test_a_big_config_comes_in_chunks_and_resumes(server_factory, store_url, ks):
    """A deny list of 100,000 cards (800 KB) in upload_host.CHUNK pieces, each encrypted with the
    terminal's wire key, from wherever the terminal's staging file ends."""
    srv = server_factory(store_url)
    entries = {bytes([4]) + (i * 7919).to_bytes(6, "big"): i % 2 for i in range(100000)}
    payload = tariff.pack_deny(entries)
    with store_mod.open_store(store_url) as db:
        db.put_config(signed.KIND_DENY, 3, payload)
    t = Term(ks)
    got = b""
    exchanges = 0
    while True:
        status, body = post(srv.port, t.body([], part=(signed.KIND_DENY, 3, len(got))))
        _, _, chunk = t.answer(body)
        if chunk is None or len(got) == chunk[2]:
            break
        kind, version, total, off, data = chunk
        assert (kind, version, off) == (signed.KIND_DENY, 3, len(got))
        assert len(data) <= upload_host.CHUNK and data[:32] not in body  # encrypted
        got += data
        exchanges += 1
        if exchanges == 3:
            got = got[:1000]  # a power cut lost the rest: the terminal reports what it holds
    assert signed.verify(keystore.config_key(ks, TID), got) == (signed.KIND_DENY, 3, payload)
    assert exchanges == 3 + (len(got) - 1000 + upload_host.CHUNK - 1) // upload_host.CHUNK
    # another blob than the one the terminal holds part of: from offset 0
    _, _, chunk = t.answer(post(srv.port, t.body([], part=(signed.KIND_DENY, 2, 5000)))[1])
    assert chunk[3] == 0


def test_unknown_terminal_and_altered_record_are_refused_and_logged(server_factory, store_url, ks):
    srv = server_factory(store_url, terminals="1001")
    status, text = post(srv.port, Term(ks, 2002).body(records(ks, 3, tid=2002)))
    assert (status, text) == (403, b"refused\n")  # a real terminal, but not one of this server's
    t = Term(ks)
    recs = records(ks, 6)
    bad = bytearray(recs[3])
    bad[28] ^= 0x01  # seq 4's amount, by someone who fixes the CRC too (not the MAC: no key)
    bad[60:64] = (binascii.crc32(bytes(bad[:60])) & 0xFFFFFFFF).to_bytes(4, "little")
    status, text = post(srv.port, t.body(recs[:3] + [bytes(bad)] + recs[4:]))
    assert status == 422 and b"MAC chain broken at seq 4" in text
    # records of terminal 1001 signed with another terminal's key
    status, _ = post(srv.port, t.body([records(ks, 1, tid=1002)[0]]))
    assert status == 422
    # a byte of ciphertext changed on the air: the record decrypts to garbage
    body = bytearray(t.body(recs))
    body[100] ^= 0x01
    status, text = post(srv.port, bytes(body))
    assert status == 422
    status, _ = post(srv.port, b"TKB2 garbage")
    assert status == 400
    srv.ingest.flush_rejects()
    with store_mod.open_store(store_url) as db:
        assert db.count() == 0  # nothing of a refused batch is stored
        rows = {r["reason"].split(":")[0]: r["count"] for r in db.rejects()}
    assert rows == {"unauthenticated": 1, "bad_mac": 3, "malformed": 1}
    assert any("127.0.0.1" in line and "terminal 2002" in line for line in srv.logged)
    assert metric(srv.port, 'tapkit_rejects_total{reason="bad_mac"}') == 3
    assert metric(srv.port, 'tapkit_rejects_total{reason="unauthenticated"}') == 1
    # the honest batch still goes in
    assert t.acked(srv.port, recs) == 6


def test_limits_length_size_and_a_stalled_body(server_factory, store_url, ks, monkeypatch):
    srv = server_factory(store_url)
    s = socket.create_connection(("127.0.0.1", srv.port))
    s.sendall(b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert s.recv(100).startswith(b"HTTP/1.1 411 ")
    s.close()
    status, text = post(srv.port, b"x" * (server.MAX_BODY + 1))
    assert (status, text) == (
        413,
        b"batch of %d bytes (at most %d)\n" % (server.MAX_BODY + 1, server.MAX_BODY),
    )
    assert post(srv.port, b"", path="/v2/batch")[0] == 404
    assert get(srv.port, "/v1/batch")[0] == 405


def test_keep_alive_serves_several_requests_on_one_connection(server_factory, store_url, ks):
    srv = server_factory(store_url)
    t = Term(ks)
    recs = records(ks, 20)
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    try:
        for i in (0, 10):
            c.request("POST", "/v1/batch", body=t.body(recs[i : i + 10]))
            r = c.getresponse()
            assert r.status == 200 and r.version == 11 and not r.will_close
            assert t.answer(r.read())[0] == i + 10
        sock = c.sock
        c.request("GET", "/healthz")
        assert c.getresponse().read() == b"ok\n" and c.sock is sock  # still the first connection
    finally:
        c.close()


def test_connection_dropped_mid_request_stores_nothing(server_factory, tmp_path, ks, caplog):
    url = "sqlite:///%s" % (tmp_path / "taps.db")
    srv = server_factory(url)
    t = Term(ks)
    body = t.body(records(ks, 8))
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
    assert t.answer(post(srv.port, body)[1])[0] == 8
    assert not [r for r in caplog.records if r.levelno >= 40]  # a dropped exchange: no error


def test_two_servers_one_postgresql_store_a_batch_once(server_factory, pg_server, ks):
    url = pg_server.create_database()
    a, b = server_factory(url), server_factory(url)
    recs = records(ks, 40)
    results = []

    def send(srv, batch):
        t = Term(ks)
        status, body = post(srv.port, t.body(batch))
        results.append((status, t.answer(body)[0] if status == 200 else body))

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


def _serve_proc(url, ks_path, port, *extra):
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
            *extra,
        ],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = p.first_line = p.stderr.readline()
    assert "listening on http" in line and ":%d " % port in line, line
    for _ in range(200):  # until it answers (the workers start after the line)
        try:
            get(port, "/healthz")
            break
        except OSError:
            time.sleep(0.05)
    return p


def test_cli_server_killed_mid_batch_and_restarted(ks, ks_path, tmp_path):
    url = "sqlite:///%s" % (tmp_path / "taps.db")
    port = _free_port()
    p = _serve_proc(url, ks_path, port)
    t = Term(ks)
    recs = records(ks, 30)
    try:
        assert t.acked(port, recs[:10]) == 10
        body = t.body(recs[10:20])
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
        assert t.answer(post(port, body)[1])[0] == 20
        assert t.acked(port, recs[:20]) == 20
        assert t.acked(port, recs[20:]) == 30
        assert get(port, "/healthz")[0] == 200
        text = get(port, "/metrics")[1]
        assert "tapkit_taps_received_total 40" in text and "tapkit_taps_stored_total 20" in text
        assert get(port, "/nope")[0] == 404
    finally:
        p.send_signal(signal.SIGTERM)
        err = p.communicate(timeout=30)[1]
    # an access log line per request, and a clean stop on SIGTERM
    assert p.returncode == 0 and err.endswith("tapkit serve: stopped\n")
    assert '"POST /v1/batch HTTP/1.1" 200' in err and '"GET /nope HTTP/1.1" 404' in err
    with store_mod.open_store(url) as db:
        assert [taprecord.seq_of(r) for r in db.raw_records(TID)] == list(range(1, 31))


def test_cli_workers_share_the_socket_and_finish_what_they_took(ks, ks_path, tmp_path):
    """--workers 3: three processes on one socket and one store; SIGTERM with a batch in flight:
    the batch is still answered (graceful shutdown), then every worker stops."""
    url = "sqlite:///%s" % (tmp_path / "taps.db")
    port = _free_port()
    p = _serve_proc(url, ks_path, port, "--workers", "3", "--no-access-log")
    try:
        for tid in range(1001, 1011):
            t = Term(ks, tid)
            assert t.acked(port, records(ks, 5, tid=tid)) == 5
        t = Term(ks, 1001)
        body = t.body(records(ks, 10, tid=1001)[5:], anchor=records(ks, 5, tid=1001)[4])
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(
            b"POST /v1/batch HTTP/1.0\r\nContent-Length: %d\r\n\r\n" % len(body) + body[:100]
        )
        time.sleep(0.3)
        p.send_signal(signal.SIGTERM)  # shutting down with that request half received
        time.sleep(0.3)
        s.sendall(body[100:])
        answer = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            answer += d
        s.close()
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert t.answer(answer.split(b"\r\n\r\n", 1)[1])[0] == 10
        err = p.communicate(timeout=40)[1]
    finally:
        p.kill()
        p.wait()
    assert p.returncode == 0 and "3 workers" in p.first_line
    assert err.count("Started server process") == 3 and err.endswith("tapkit serve: stopped\n")
    assert "POST /v1/batch" not in err  # --no-access-log
    with store_mod.open_store(url) as db:
        assert db.count() == 55


def test_cli_serves_https_with_its_certificate(ks, ks_path, tmp_path):
    import datetime
    import ipaddress
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "depot")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "k.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    url = "sqlite:///%s" % (tmp_path / "taps.db")
    port = _free_port()
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
            "1001",
            "--tls-cert",
            str(tmp_path / "c.pem"),
            "--tls-key",
            str(tmp_path / "k.pem"),
        ],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert "listening on https://127.0.0.1:%d" % port in p.stderr.readline()
        ctx = ssl.create_default_context(cafile=str(tmp_path / "c.pem"))
        for _ in range(100):
            try:
                c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
                t = Term(ks)
                c.request("POST", "/v1/batch", body=t.body(records(ks, 3)))
                r = c.getresponse()
                break
            except (ConnectionRefusedError, ssl.SSLEOFError):
                time.sleep(0.05)
        assert r.status == 200 and t.answer(r.read())[0] == 3
        c.close()
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
    assert p.returncode == 0


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
    code, _, err = run("serve", "--db", url, "--keystore", ks_path, "--tls-cert", "c.pem")
    assert code == 1 and err == "tapkit: error: TLS needs both --tls-cert and --tls-key\n"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        code, _, err = run(
            "serve",
            "--db",
            url,
            "--keystore",
            ks_path,
            "--listen",
            "127.0.0.1:%d" % busy.getsockname()[1],
        )
    assert (
        code == 1
        and err.startswith("tapkit: error: cannot listen on 127.0.0.1:")
        and len(err.splitlines()) == 1
    )
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
    t = Term(ks)
    recs = records(ks, 15)
    status, text = post(srv.port, t.body(recs[10:]))
    assert status == 409 and b"seq 10 is missing" in text and b"send the anchor record" in text
    forged = bytearray(recs[10])
    forged[28] ^= 0x40  # the amount of seq 11, CRC fixed: only the MAC can tell
    forged[60:64] = (binascii.crc32(bytes(forged[:60])) & 0xFFFFFFFF).to_bytes(4, "little")
    assert post(srv.port, t.body([bytes(forged)] + recs[11:], anchor=recs[9]))[0] == 422
    assert t.acked(srv.port, recs[10:], anchor=recs[9]) == 15
    # the anchor alone: a terminal with nothing new checks in (and is told of no seq)
    assert t.acked(srv.port, [], anchor=recs[14]) == 0
    srv.ingest.flush_rejects()
    with store_mod.open_store(store_url) as db:
        assert [taprecord.seq_of(r) for r in db.raw_records(TID)] == list(range(11, 16))
        assert [r["reason"].split(":")[0] for r in db.rejects()] == ["gap", "bad_mac"]
    assert metric(srv.port, 'tapkit_rejects_total{reason="gap"}') == 1


def test_strangers_get_nothing_and_cannot_tell_our_ids(server_factory, store_url, ks):
    """The probes of a stranger on the depot network (no keys): an empty batch for an id of ours
    fetched the signed config and the deny list, and 200 vs 403 told which ids are ours."""
    srv = server_factory(store_url, terminals="1001-1099")
    with store_mod.open_store(store_url) as db:
        db.put_config(signed.KIND_DENY, 2, b"deny v2: the blocked cards")
    asked = []
    real_known = srv.ingest.known
    srv.ingest.known = lambda store, tid: asked.append(tid) or real_known(store, tid)

    def stranger(tid, recs=()):  # the same head a terminal sends, with an iv of its own choosing
        return upload_host.batch_body(keystore.wire_key(ks, tid), tid, list(recs))

    ours, other = post(srv.port, stranger(1001)), post(srv.port, stranger(5555))
    assert ours == other == (403, b"refused\n")
    assert asked == []  # decided before the store is asked: one path, one timing, for both ids
    # replaying a terminal's records under a fresh iv: the tag does not follow
    t = Term(ks)
    recs = records(ks, 3)
    good = t.body(recs)
    assert post(srv.port, good[:35] + os.urandom(12) + good[47:]) == (403, b"refused\n")
    # the terminal itself gets its config, encrypted for it
    status, body = post(srv.port, t.body([]))
    assert status == 200 and b"blocked cards" not in body
    assert t.answer(body)[2][0] == signed.KIND_DENY
    # /metrics names the fleet's terminals: only the networks of --metrics-from read it
    app = server.make_app(srv.ingest, metrics_from="10.9.9.0/24")
    with server.Running(app) as other_srv:
        assert get(other_srv.port, "/metrics") == (404, "not found\n")
        assert get(other_srv.port, "/healthz") == (404, "not found\n")


def test_a_check_in_sets_no_seq(server_factory, store_url, ks):
    """An anchor-only check-in used to be answered with the anchor's seq, any made-up one."""
    srv = server_factory(store_url)
    t = Term(ks)
    recs = records(ks, 5)
    assert t.acked(srv.port, recs) == 5
    made_up = records(ks, 1, first=900000)[0]
    assert t.acked(srv.port, [], anchor=made_up) == 0
    assert t.acked(srv.port, [], anchor=recs[-1]) == 0
    with store_mod.open_store(store_url) as db:
        assert db.terminal(TID)["last_seq"] == 5


def test_a_flood_of_bad_posts_is_counted_not_written(server_factory, store_url, ks):
    """300 malformed POSTs wrote 300 fsynced rows in 0.5 s. Now: the source's refusal budget, then
    429 before any work; one row per (source, reason) when the counts are written."""
    srv = server_factory(store_url)
    t0 = time.monotonic()
    statuses = [post(srv.port, b"TKB2" + os.urandom(60))[0] for _ in range(300)]
    took = time.monotonic() - t0
    # the burst, plus what the budget refilled while the flood lasted (a loaded host: > 1 s)
    refused = statuses.count(400)
    burst = srv.ingest.REJECT_BURST
    assert burst <= refused <= burst + int(took * srv.ingest.REJECT_RATE) + 1
    assert statuses.count(429) == 300 - refused
    with store_mod.open_store(store_url) as db:
        assert db.rejects() == []  # nothing written per POST
    # an honest terminal elsewhere on the network is not held up by the flood
    t = Term(ks)
    status, body = srv.ingest.batch(t.body(records(ks, 2)), "10.1.0.7")
    assert status == 200 and t.answer(body)[0] == 2
    srv.ingest.flush_rejects()
    with store_mod.open_store(store_url) as db:
        rows = db.rejects()
    assert [(r["source"], r["reason"].split(":")[0], r["count"]) for r in rows] == [
        ("wifi 127.0.0.1", "malformed", refused)
    ]
    assert metric(srv.port, 'tapkit_rejects_total{reason="rate_limited"}') == 300 - refused
    assert sum(1 for line in srv.logged if "refused" in line) == 1


def test_sqlite_writer_process_killed_mid_batch_acks_nothing_then_a_new_one_writes(
    server_factory, tmp_path, ks
):
    """SQLite's writer runs in a process of its own (host_tools/backoffice/writer.py): killed with a
    batch, that batch is not acked (503: the terminal sends it again); the next batch starts a new
    writer; every record is then stored once."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    srv = server_factory(url)
    t = Term(ks)
    recs = records(ks, 30)
    assert t.acked(srv.port, recs[:10]) == 10
    w = srv.ingest._writer
    first = w.proc.pid
    os.kill(first, signal.SIGSTOP)  # the writer holds the next batch when the power goes
    got = []
    th = threading.Thread(target=lambda: got.append(post(srv.port, t.body(recs[10:20]))))
    th.start()
    deadline = time.monotonic() + 10
    while not w.waiting and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(first, signal.SIGKILL)
    th.join(10)
    assert got[0][0] == 503  # not acked: the terminal keeps the records and sends them again
    while w.dead is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert w.dead == "the SQLite writer process stopped"
    assert t.acked(srv.port, recs[10:20]) == 20  # a new writer process
    assert w.proc.pid != first
    assert t.acked(srv.port, recs[10:30]) == 30  # 10 again: stored once
    srv.close()
    with store_mod.open_store(url) as s:
        assert s._one("SELECT COUNT(*), COUNT(DISTINCT seq) FROM taps") == (30, 30)
    assert w.proc.poll() is not None  # closed with the server


def test_sqlite_writer_process_runs_this_package_in_the_working_directory(
    tmp_path, ks, monkeypatch
):
    """The writer process imports the server's own code, not a `host_tools` the working directory
    holds (another checkout), and opens a relative database path where the server does."""
    (tmp_path / "host_tools").mkdir()
    (tmp_path / "host_tools" / "__init__.py").write_text("raise ImportError('a decoy')\n")
    monkeypatch.chdir(tmp_path)
    ing = ingest.Ingest("sqlite:///w.db", ks, server.parse_ranges("1001-1099"), log=print)
    try:
        t = Term(ks)
        status, body = ing.batch(t.body(records(ks, 5)))
        assert status == 200 and t.answer(body)[0] == 5
    finally:
        ing.close()
    with store_mod.open_store(f"sqlite:///{tmp_path / 'w.db'}") as s:
        assert s.count() == 5

"""A rogue access point on the depot network (issue "Stolen terminal"): it acked 20 of 20 taps (gone
for good) and set the clock to 2020. The virtual board's uploader (firmware/wifi.py) at 112K against
a rogue server that forges answers, then replays a genuine one: nothing is reclaimed, the clock
stays, each refusal is logged."""

import http.client
import socketserver
import struct
import threading
import time

from card_schema import upload
from emulator.vboard import VirtualBoard
from host_tools import keystore
from host_tools.backoffice import ingest, server
from host_tools.fleet.link import SerialLink
from host_tools.sim.virtual import deploy_virtual
from e2e_helpers import rider_card

TID = 1001
Y2020 = 1577923200  # 2020-01-02


class Rogue(socketserver.ThreadingTCPServer):
    """mode "forge": 200 with an answer head acking seq 99 at 2020 (no key: a made-up MAC);
    mode "replay": the first batch goes to the real server and its genuine answer is kept; every
    later batch gets that answer again (a firmware status, POST /v1/ota, which acks nothing, goes
    to the real server: the terminal reports it at boot, between its batches)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, real_port):
        self.mode = "forge"
        self.real_port = real_port
        self.kept = None
        self.answered = 0
        super().__init__(("127.0.0.1", 0), Handler)


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        srv = self.server
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            c = self.rfile.read(1)
            if not c:
                return
            head += c
        n = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        body = self.rfile.read(n)
        path = head.split(b" ")[1].decode()
        if srv.mode == "forge":
            ans = struct.pack(upload.ANSWER_FMT, b"TKA2", 99, Y2020, 0, 0, 0, 0, 0, bytes(16), b"")
            answer = ans[: upload.ANSWER_MACED] + bytes(8)
        elif srv.kept is None or path != "/v1/batch":
            c = http.client.HTTPConnection("127.0.0.1", srv.real_port, timeout=10)
            c.request("POST", path, body=body)
            answer = c.getresponse().read()
            c.close()
            if path == "/v1/batch":
                srv.kept = answer
        else:
            answer = srv.kept
        self.wfile.write(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(answer) + answer)
        srv.answered += 1


def _wait(pred, timeout=40.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_rogue_server_forged_and_replayed_answers_change_nothing(tmp_path, keystore_path):
    ks = keystore.load(str(keystore_path))
    url = "sqlite:///%s" % (tmp_path / "taps.db")
    ing = ingest.Ingest(url, ks, [(TID, TID)], log=lambda m: None)
    real = server.Running(server.make_app(ing))
    rogue = Rogue(real.port)
    threading.Thread(target=rogue.serve_forever, daemon=True).start()
    state = tmp_path / "bus"
    fs = state / "fs"
    fs.mkdir(parents=True)
    deploy_virtual(
        str(fs),
        ks,
        TID,
        fare=25000,
        line=7,
        server="127.0.0.1:%d" % rogue.server_address[1],
        upload_backoff_max_ms=1000,
        upload_idle_ms=1000,
    )
    card = rider_card(tmp_path / "a.card", keystore_path, 100000)
    other = rider_card(tmp_path / "b.card", keystore_path, 100000, card_no=2)
    try:
        with VirtualBoard(str(state), wifi=True) as vb:
            assert vb.tap(card)["buzzer"] == "ok"
            assert vb.tap(card)["buzzer"] == "ok"
            since = len(vb.lines(0))
            _wait(lambda: rogue.answered >= 3)
            vb.wait_for("LOG| wifi: ValueError answer MAC does not verify", since=since)
            with SerialLink(vb.port, timeout=2) as link:
                info = link.identify()
            head = info["head_seq"]
            assert head >= 2 and (info["acked_seq"], info["unsynced"]) == (
                0,
                head,
            )  # none reclaimed
            assert abs(info["clock"] - time.time()) < 60  # not 2020
            # replay: one genuine exchange through the rogue (it acks the two taps), then that
            # answer again for every later request
            rogue.mode = "replay"
            # no USB line meanwhile: a console line stops the Wi-Fi exchange under way (the host's
            # answer gets the heap), and the genuine answer the rogue keeps would never arrive
            n = rogue.answered
            _wait(lambda: rogue.kept is not None and rogue.answered > n)
            time.sleep(2)  # the terminal reads and applies that answer
            with SerialLink(vb.port, timeout=2) as link:
                _wait(lambda: link.identify()["acked_seq"] == head)
            assert (
                vb.tap(other)["buzzer"] == "ok"
            )  # another rider (the first is in its repeat window)
            answered, since = rogue.answered, len(vb.lines(0))
            _wait(lambda: rogue.answered >= answered + 2)
            vb.wait_for("LOG| wifi: ValueError answer MAC does not verify", since=since)
            with SerialLink(vb.port, timeout=2) as link:
                info = link.identify()
            assert info["head_seq"] > head  # the new tap's records...
            assert (info["acked_seq"], info["unsynced"]) == (head, info["head_seq"] - head)
            assert abs(info["clock"] - time.time()) < 60
    finally:
        rogue.shutdown()
        rogue.server_close()
        real.stop()
        ing.close()

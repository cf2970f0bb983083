"""Firmware updates over Wi-Fi on virtual terminals (firmware/wifi.py POST /v1/ota, install.wifi;
backoffice/otaserve.py): a rollout to a fleet of 20, one of which gets a release whose self-test
fails and rolls it back by itself; a download resumed from flash after a lost connection and a
power cut; a tampered bundle and one for another board refused. Every wait is on a state (what the
server heard, the board's own log lines), none polls over USB (each console line stops the Wi-Fi
exchange under way). The fleet test runs alone with `pytest -m fleet`."""

import os
import time

import pytest

from card_schema import release_host, upload_host
from harness.boards import rider_card
from harness.ota_fleet import OTAFleet, broken_reader
from host_tools import keystore
from host_tools.backoffice import otaserve
from host_tools.fleet import release


@pytest.fixture
def ks(keystore_path):
    return keystore.load(str(keystore_path))


def _logged(vb, mark, text):
    return any(text in ln for ln in vb.lines(mark))


def _until(pred, timeout):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def _serve_instead(fleet, tid, rel, blob):
    """What the server sends terminal `tid` as release `rel` (its sealed-bundle cache): a server
    that sends a damaged or a foreign bundle, for the terminal to refuse."""
    otaserve._state(fleet.ingest)["sealed"][(tid, rel)] = blob


def test_wifi_update_refuses_tampered_and_foreign_resumes_after_a_cut(tmp_path, ks, monkeypatch):
    card = rider_card(tmp_path / "c.card", ks, balance=100000)
    with OTAFleet(tmp_path / "fleet", ks, n=1) as fleet:
        vb = fleet.boards[1001]
        fleet.wait(lambda st: 1001 in st, timeout=60)  # the boot's report

        # tampered on the way: one byte of the sealed bundle changed; refused, and reported
        blob = bytearray(release.seal(ks, 1001, release.build("unix-virtual", 2)))
        blob[len(blob) // 2] ^= 1
        _serve_instead(fleet, 1001, 2, bytes(blob))
        mark = vb.mark()
        fleet.publish(release.build("unix-virtual", 2), "all")
        st = fleet.wait(lambda st: st[1001]["last_release"] == 2, timeout=90)[1001]
        assert (st["running"], st["state"], st["last_result"]) == (0, "idle", "refused")
        assert _logged(vb, mark, "wifi config: FrameError config blob refused: bad signature")

        # a bundle for another board, genuinely sealed for this terminal: refused by its head
        other = release_host.pack(3, "bus-validator", "unix", "0.1.0", release.firmware_set("unix-virtual"))  # fmt: skip
        _serve_instead(fleet, 1001, 3, release.seal(ks, 1001, other))
        mark = vb.mark()
        fleet.publish(release.build("unix-virtual", 3), "terminals:1001")
        st = fleet.wait(lambda st: st[1001]["last_release"] == 3, timeout=90)[1001]
        assert (st["running"], st["last_result"]) == (0, "refused")
        assert _logged(vb, mark, "wifi config: FrameError firmware refused: for board bus-valid")
        view = fleet.fleet()
        assert {(e["release"], e["result"]) for e in view["events"]} == {
            (2, "refused"),
            (3, "refused"),
        }

        # release 4: the connection lost after the first chunk, the power cut; the download goes
        # on from the offset in flash (install.part's length), not from 0
        asked = []
        lost = [True]
        answer = otaserve.answer

        def lossy(ingest, body, source="-"):
            r = release_host.parse_ota(body)
            asked.append((r.wanted, r.part_off))
            if lost[0] and r.part_off >= upload_host.CHUNK:
                return 503, "lost"
            return answer(ingest, body, source)

        monkeypatch.setattr(otaserve, "answer", lossy)
        fleet.publish(release.build("unix-virtual", 4), "all")
        _until(lambda: (4, upload_host.CHUNK) in asked, timeout=90)  # and refused (503)
        lost[0] = False
        n = len(asked)
        mark = vb.mark()
        vb.restart()  # the power cut
        st = fleet.wait(lambda st: st[1001]["running"] == 4, timeout=120)[1001]
        assert st["last_result"] == "confirmed"
        resumed = [a for a in asked[n:] if a[0] == 4]
        assert resumed[0] == (4, upload_host.CHUNK), asked[n:]  # asked from the offset in flash
        assert (4, 0) not in resumed
        vb.wait_for("LOG| ota: release 4 confirmed", timeout=10, since=mark)
        vb.wait_for("LOG| boot: terminal 1001 ready", timeout=60, since=mark)
        assert vb.tap(card)["buzzer"] == "ok"
        assert "MemoryError" not in "\n".join(vb.lines(0))


FLEET = int(os.environ.get("TAPKIT_OTA_FLEET", "20"))


@pytest.mark.fleet
def test_rollout_to_a_fleet_over_wifi_one_rolls_back(tmp_path, ks):
    """Release 2 to every terminal, release 3 (its reader driver broken) to the last one only: that
    one stages 3, boots it on trial, fails the self-test, goes back by itself, reports it, and
    then takes 2 (3 is not offered to it again); the fleet view shows it all."""
    n = FLEET
    bad = 1000 + n
    with OTAFleet(tmp_path / "fleet", ks, n=n) as fleet:
        fleet.wait(lambda st: len(st) == n, timeout=120)  # every terminal reported at boot
        fleet.publish(
            release.build(
                "unix-virtual", 3, files={"firmware/pn532.mpy": broken_reader(tmp_path)}
            ),
            "terminals:%d" % bad,
        )
        fleet.publish(release.build("unix-virtual", 2), "all")
        st = fleet.wait(
            lambda st: all(s["running"] == 2 and s["state"] == "idle" for s in st.values()),
            timeout=150 + 10 * n,
        )
        assert all((s["last_release"], s["last_result"]) == (2, "confirmed") for s in st.values())
        view = fleet.fleet()
        events = [(e["terminal"], e["release"], e["result"]) for e in view["events"]]
        assert events == [(bad, 3, "rolled back")]
        r = {x["release"]: x for x in view["releases"]}
        assert (r[2]["targeted"], r[2]["running"], r[2]["in_progress"]) == (n, n, 0)
        assert (r[3]["targeted"], r[3]["running"], r[3]["rolled_back"]) == (1, 0, 1)
        vb = fleet.boards[bad]
        vb.wait_for("LOG| ota: release 3 rolled back: reader", timeout=10, since=0)
        vb.wait_for("LOG| ota: release 2 confirmed", timeout=10, since=0)
        for tid in (1001, bad):  # each with a card of its own
            card = rider_card(tmp_path / ("%d.card" % tid), ks, balance=100000, card_no=tid)
            r = fleet.boards[tid].tap(card)
            assert r["buzzer"] == "ok", r
        for vb in fleet.boards.values():
            assert "MemoryError" not in "\n".join(vb.lines(0))

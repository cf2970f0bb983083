"""A host syncs a terminal over USB while riders tap (issue 15: every tap path keeps 16 KB of the
heap): a card entering the field forgets the sync responder idle between the host's lines (its
heap is the tap's; the next line loads it again, its state is the Terminal's). The sync must not
notice: each PULL and ACK in flight gets its answer (after the tap, from a reloaded responder), the
ledger holds every record once, and each rider was charged once, journalled once."""

import os
import threading
import time

import boards
from emulator.card import DESFireCard
from emulator.vboard import BAUD, VirtualBoard
from harness import vm
from harness.boards import deploy, rider_card
from host_tools import keystore
from host_tools.backoffice.store import open_store
from host_tools.fleet import provision
from host_tools.fleet.link import SerialLink
from host_tools.fleet.sync import sync_terminal

TID = 1601
FARE = 25000
RECORDS = 1500  # ~96 KB of records: ~9 s at 115,200 baud, the riders tap meanwhile
RIDERS = 4


def test_taps_during_a_usb_sync_are_each_stored_once(tmp_path, keystore_path):
    ks = keystore.load(str(keystore_path))
    state = deploy(tmp_path / "bus", ks, TID, fare=FARE)
    board = boards.spec("unix-virtual")
    key = provision.terminal_keys(ks, TID)["journal"]
    vm.run(vm.build(str(tmp_path / "build")), vm.script("journal_fill"),
           os.path.join(state, "flash.bin"), board["journal"]["size"], key, TID, RECORDS,
           path=[vm.EMULATOR], timeout=600, check=True)  # fmt: skip
    riders = [
        rider_card(tmp_path / ("rider%d.card" % i), ks, 500000, card_no=10 + i)
        for i in range(RIDERS)
    ]
    url = "sqlite:///%s" % (tmp_path / "ledger.db")
    started, done, got = threading.Event(), [], {}

    def host():
        try:
            with SerialLink(vb.port, timeout=10.0) as link, open_store(url) as db:
                got["first"] = sync_terminal(
                    link, db, ks, progress=lambda n, total: n and started.set()
                )
        except Exception as e:  # noqa: BLE001 - reported by the test below
            got["error"] = e
        finally:
            done.append(time.monotonic())
            started.set()

    with VirtualBoard(state, baud=BAUD) as vb:  # paced as the DevKitC's USB-UART bridge
        t = threading.Thread(target=host, daemon=True)
        t.start()
        assert started.wait(120), "the sync never stored a batch"
        during = 0
        for c in riders:
            r = vb.tap(c)
            assert r["buzzer"] == "ok" and "475,000" in r["display"], r
            during += not done  # ended while the sync was still under way
        t.join(300)
        assert not t.is_alive(), "the sync never ended"
        assert "error" not in got, got.get("error")
        assert during >= 2, "the taps came after the sync (%d during it)" % during
        with SerialLink(vb.port, timeout=10.0) as link, open_store(url) as db:
            second = sync_terminal(link, db, ks)  # the taps made after the first IDENTIFY
            head = link.identify()["head_seq"]
        lines = vb.lines(0)
    errors = [ln for ln in lines if ln.startswith("LOG|") and "boot: terminal" not in ln]
    assert not errors  # of the sync or a tap
    assert got["first"]["pulled"] >= RECORDS and second["acked_seq"] == head
    with open_store(url) as db:
        n, distinct, lo, hi = db._one(
            "SELECT COUNT(*), COUNT(DISTINCT seq), MIN(seq), MAX(seq) FROM taps WHERE terminal = ?",
            (TID,),
        )
        assert (n, distinct, lo, hi) == (head, head, 1, head)
        for c in riders:
            uid = DESFireCard.load(c).uid.hex()
            kinds = db._all(
                "SELECT kind, amount, seq FROM taps WHERE terminal = ? AND uid = ? ORDER BY seq",
                (TID, uid),
            )
            seq = kinds[0][2]  # a confirmation's amount is the seq of the charge it confirms
            assert [tuple(k[:2]) for k in kinds] == [("charge", FARE), ("confirm", seq)], kinds

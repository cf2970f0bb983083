"""The full journal end to end on a virtual bus terminal (firmware on the MicroPython VM, emulated PN532
and card, journal on the NOR flash model), no PC/SC needed.

The terminal's journal is made small (2 sectors = 120 slots) and filled on the VM with the terminal's
own key, as if 118 records had been journalled since the last sync. Then: above the high-water mark
the idle screen asks for a sync; the next tap is charged and fills the journal (its charge and the
CONFIRM of the card's commit answer: a paid tap needs two free slots); the next paid tap is refused
with "Terminal full" *before* the card is debited (its balance is unchanged) and the refusal is in
the diagnostics log; a sync stores every tap and acks them; the space comes back and taps are
charged again with the next sequence numbers.
"""

import json
import os

from card_schema.desfire_admin import DESFireAdmin
from e2e_helpers import rider_card, sync_json
from harness import vm
from host_tools import keystore
from host_tools.cardoffice import cardops
from host_tools.cardoffice.readers import EmulatorReader
from host_tools.fleet import provision
from host_tools.sim.virtual import deploy_virtual

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TID = 1001
FARE = 25000

FILL_VM = vm.script("journal_fill")  # harness/mp/journal_fill.py


def _balance(path, ks):
    with EmulatorReader(str(path)) as r:
        return cardops.show(DESFireAdmin(r.transceive), ks, r.uid)["balance"]


def test_full_journal_refuses_before_debit_then_sync_frees_space(
    tmp_path, capsys, keystore_path, mp_run
):
    from emulator.vboard import VirtualBoard

    ks = keystore.load(str(keystore_path))
    state = tmp_path / "bus"
    fs = state / "fs"
    fs.mkdir(parents=True)
    deploy_virtual(str(fs), ks, TID, fare=FARE, line=7, repeat=0)  # three rides at once
    vb = VirtualBoard(str(state))
    vb.start()
    try:
        # a small journal region (2 sectors), filled with 118 taps by the terminal's own key
        from emulator import lfsimage

        board = json.loads(lfsimage.read_file(vb.image, "/board.json"))
        board["journal"]["size"] = 2 * 4096
        lfsimage.write_files(vb.image, {"/board.json": json.dumps(board)})  # read at the restart
        flash = str(state / "flash.bin")
        os.remove(flash)
        key = provision.terminal_keys(ks, TID)["journal"]
        p = mp_run(FILL_VM, flash, 8192, key, TID, 118, path=[os.path.join(ROOT, "emulator")])
        assert p.returncode == 0 and p.stdout.split() == ["118", "98"], p.stderr
        mark = vb.mark()
        vb.restart("journal resized")
        assert any(
            "Sync soon: journal 98% full" in ln for ln in vb.lines(mark) if "DISPLAY|" in ln
        )

        card = rider_card(tmp_path / "rider.card", ks, 100000)
        shown = vb.tap(card)  # slots 119 and 120 of 120: charged, the journal is now full
        assert shown["buzzer"] == "ok" and "75,000" in shown["display"]
        shown = vb.tap(card)
        assert shown["buzzer"] == "error"
        assert "Terminal full" in shown["display"] and "no charge" in shown["display"]
        assert _balance(card, ks) == 75000  # refused before the debit: the card kept its money

        db = "sqlite:///%s" % (tmp_path / "taps.db")
        rc, summary, err = sync_json(capsys, vb.port, keystore_path, db)
        assert rc == 0, err
        assert summary["stored"] == 120 and summary["head_seq"] == 120  # nothing lost
        shown = vb.tap(card)  # the acked sector is reclaimed: taps are charged again
        assert shown["buzzer"] == "ok" and "50,000" in shown["display"]
        assert _balance(card, ks) == 50000
        rc, summary, err = sync_json(capsys, vb.port, keystore_path, db)
        assert rc == 0, err
        assert summary["stored"] == 2 and summary["head_seq"] == 122  # the next seqs, no repeat
        log = open(state / "display.log").read()
        assert "JournalFull" in log  # the refusal is in the diagnostics log, not only on display
    finally:
        vb.stop()

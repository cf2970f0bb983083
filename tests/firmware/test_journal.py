"""The power-safe journal (firmware/journal.py) on the real MicroPython VM over the NOR flash model.

Every scenario runs as .mpy on `micropython -X heapsize=112K` with emulator/norflash.py on the path; a
"reboot" is a new process (or, inside the power-cut loop, a new NORFlash + Journal on the same file:
nothing of the old RAM survives). What the VM wrote is checked again on CPython from the flash file.
"""

import json
import os

import pytest

from card_schema import taprecord, taprecord_host
from emulator.norflash import NORFlash
from harness.vm import script

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EMU = os.path.join(ROOT, "emulator")
KEY = bytes(range(16))
SECTOR = 4096

# The VM side: one small command interpreter, printing one JSON line per command.
VM = script("journal_cmds")  # harness/mp/journal_cmds.py


@pytest.fixture
def vm(mp_run):
    def run(*args, timeout=120):
        p = mp_run(VM, *args, path=[EMU], timeout=timeout)
        assert p.returncode == 0, "micropython failed:\n%s\n%s" % (p.stdout, p.stderr)
        lines = [json.loads(x) for x in p.stdout.splitlines() if x.startswith("{")]
        return lines if len(lines) != 1 else lines[0]

    return run


def host_records(path, sectors):
    """Every complete tap on the flash file, read on CPython (layout: 60 slots from offset 256)."""
    chip = NORFlash(path, sectors * SECTOR)
    out = []
    buf = bytearray(64)
    for s in range(sectors):
        for i in range(60):
            chip.read(s * SECTOR + 256 + i * 64, buf)
            if buf[0] == taprecord.VERSION and taprecord.crc_ok(buf):
                out.append(bytes(buf))
    out.sort(key=taprecord.seq_of)
    return out


def chain_ok(recs, prev=None):
    for i, r in enumerate(recs):
        p = prev if i == 0 else recs[i - 1][52:60]
        if p is not None and not taprecord.mac_ok(r, p, KEY):
            return False
    return True


def test_append_reboot_recovers_head_and_chain(vm, tmp_path):
    f = str(tmp_path / "flash.bin")
    r = vm("append", f, 8, 100)
    assert r["head"] == 100
    # one 64-byte program per tap (+ one header per sector opened: 2 sectors), 1 erase per sector
    assert r["stats"]["programs"] == 100 + 2
    assert r["stats"]["bytes_programmed"] == 100 * 64 + 2 * 32
    assert r["stats"]["erases"] == 2
    r = vm("append", f, 8, 30)  # a new process: recovers head 100 and the MAC, goes on
    assert r["head"] == 130
    st = vm("state", f, 8)
    assert st["seqs"] == list(range(1, 131))
    assert st["chain_break"] == 0
    recs = host_records(f, 8)
    assert [taprecord.seq_of(x) for x in recs] == list(range(1, 131))
    assert chain_ok(recs, taprecord.GENESIS_MAC)  # checked again on CPython, from genesis
    assert taprecord_host.to_dict(recs[-1])["amount"] == 130


def test_torn_last_record_is_discarded_never_a_complete_one(vm, tmp_path):
    f = str(tmp_path / "flash.bin")
    vm("append", f, 4, 10)
    chip = NORFlash(f, 4 * SECTOR)
    slot = 256 + 10 * 64  # sector 0, slot 10: the next one
    chip.program(slot, bytes([1, 1, 0, 1, 11, 0, 0, 0]) + bytes(20))  # a torn tap (no CRC)
    chip.close()
    st = vm("state", f, 4)
    assert st["seqs"] == list(range(1, 11))
    assert st["usage"]["head_seq"] == 10 and st["usage"]["dead_slots"] == 1
    r = vm("append", f, 4, 1)  # seq 11 again (the torn one never existed), in the next slot
    assert r["head"] == 11
    st = vm("state", f, 4)
    assert st["seqs"] == list(range(1, 12)) and st["chain_break"] == 0
    assert chain_ok(host_records(f, 4), taprecord.GENESIS_MAC)


def test_ack_persists_and_reclaim_frees_space(vm, tmp_path):
    f = str(tmp_path / "flash.bin")
    r = vm("fill", f, 3)
    assert (r["appended"], r["head"], r["full"], r["capacity"]) == (180, 180, True, 180)
    r = vm("ack", f, 3, 60)  # the whole first sector is now synced
    assert r["acked"] == 60 and r["stats"]["programs"] == 1 and r["stats"]["bytes_programmed"] == 8
    st = vm("state", f, 3)
    assert st["usage"]["acked_seq"] == 60 and st["usage"]["unsynced"] == 120
    r = vm("fill", f, 3)  # sector 0 is erased lazily and refilled; nothing unsynced is lost
    assert r["appended"] == 60 and r["head"] == 240
    st = vm("state", f, 3)
    assert st["seqs"] == list(range(61, 241)) and st["chain_break"] == 0
    assert st["usage"]["tail_seq"] == 61 and st["usage"]["acked_seq"] == 60


def test_seqs_never_repeat_after_full_reclaim_and_reboot(vm, tmp_path):
    f = str(tmp_path / "flash.bin")
    for _ in range(3):
        h = vm("append", f, 2, 70)["head"]
        vm("ack", f, 2, h)
    st = vm("state", f, 2)
    assert st["usage"]["head_seq"] == 210 and st["usage"]["unsynced"] == 0
    assert vm("append", f, 2, 1)["head"] == 211
    recs = host_records(f, 2)
    assert taprecord.seq_of(recs[-1]) == 211
    assert chain_ok(recs)  # the chain links across the reclaimed sectors


def test_full_journal_raises_and_loses_nothing(vm, tmp_path):
    f = str(tmp_path / "flash.bin")
    r = vm("fill", f, 2)
    assert r["appended"] == 120 and r["full"] is True and "full" in r["error"]
    r = vm("fill", f, 2)  # after a reboot still full, still nothing lost
    assert r["appended"] == 0
    st = vm("state", f, 2)
    assert st["seqs"] == list(range(1, 121)) and st["amounts"][-1] == 120
    assert st["usage"]["full"] is True and st["usage"]["unsynced"] == 120


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_power_cut_at_every_write(vm, tmp_path, seed):
    """littlefs style: cut the power at flash op 1, 2, 3 ... of a seeded workload; reboot; check."""
    base = str(tmp_path / "base.bin")
    work = str(tmp_path / "work.bin")
    out = vm("cutloop", work, 3, base, seed, 400, 200, 120, timeout=600)
    out = out if isinstance(out, list) else [out]
    fails = [x["fail"] for x in out if "fail" in x]
    assert not fails, "replay with seed/step:\n" + "\n".join(fails)
    done = [x for x in out if "done" in x][-1]
    assert done["done"] > 100  # the workload really had that many flash ops to cut


def _ops(vm, f, sectors, *ops):
    out = vm("ops", f, sectors, *ops)
    return out if isinstance(out, list) else [out]


def test_high_water_mark_and_fill(vm, tmp_path):
    """5 sectors = 300 slots; the default mark 0.8 is crossed after 240 taps."""
    f = str(tmp_path / "flash.bin")
    out = _ops(vm, f, 5, "u", "a240", "u", "a1", "u", "a59", "u", "k60", "u", "r", "u")
    u = [x for x in out if "room" in x]
    assert (u[0]["fill"], u[0]["room"], u[0]["high_water"]) == (0, 300, False)
    assert (u[1]["fill"], u[1]["room"], u[1]["high_water"]) == (80, 60, False)
    assert (u[2]["fill"], u[2]["high_water"]) == (80, True)  # 241 of 300: above the mark
    assert (u[3]["fill"], u[3]["room"], u[3]["full"]) == (100, 0, True)
    # the host acknowledged the first sector: it can be reclaimed, the room comes back
    assert (u[4]["room"], u[4]["fill"], u[4]["high_water"], u[4]["full"]) == (60, 80, False, False)
    assert u[5] == u[4]  # the same after a reboot (the ack was durable)


def test_ack_on_a_full_ring_with_no_room_for_it(vm, tmp_path):
    """The open sector's 28 ack entries and all its slots are used and the ring is full: an ack that
    frees no sector is kept in RAM (not an error: sync must go on); the one that frees a sector
    erases it and its header makes the ack durable."""
    f = str(tmp_path / "flash.bin")
    acks = [
        "k%d" % i for i in range(1, 29)
    ]  # 28 small acks: the open sector's ack area is used up
    out = _ops(
        vm, f, 2, "a61", *acks, "a200", "u", "k29", "u", "r", "u", "k40", "k60", "u", "r", "u"
    )
    assert {"full": "journal full: 92 unsynced taps", "head": 120} in out
    assert not [x for x in out if "ack_error" in x]
    k = [x for x in out if "ack" in x]
    assert k[28] == {"ack": 29, "durable": 28}  # in RAM: a lost one only means records re-sent
    u = [x for x in out if "room" in x]
    assert (u[0]["full"], u[1]["full"], u[1]["acked"]) == (True, True, 29)
    assert u[2]["acked"] == 28  # rebooted: the RAM ack is gone, nothing else
    assert k[29] == {"ack": 40, "durable": 28}
    assert k[30] == {"ack": 60, "durable": 60}  # sector 0 reclaimed: its new header holds the ack
    assert (u[3]["acked"], u[3]["room"], u[3]["full"]) == (60, 60, False)
    assert u[4]["acked"] == 60
    st = out[-1]["state"]
    assert st["seqs"] == list(range(61, 121)) and st["chain_break"] == 0


def test_flash_fault_leaves_a_hole_and_no_record_after_it_is_lost(vm, tmp_path):
    """A program that fails with EIO (and the kill of that slot too) leaves an erased slot between
    used ones; boot recovery reads every slot, so the taps after the hole keep their seqs."""
    f = str(tmp_path / "flash.bin")
    out = _ops(vm, f, 3, "a5", "f2", "a3", "u", "r", "u", "a1")
    assert out[0] == {"error": "flash I/O at 0x240: [Errno 5] EIO"}  # slot 5 of sector 0
    u = [x for x in out if "room" in x]
    assert u[0]["head"] == u[1]["head"] == 8  # the failed tap got no seq; 6..8 follow the hole
    st = out[-1]["state"]
    assert st["seqs"] == list(range(1, 10)) and st["chain_break"] == 0

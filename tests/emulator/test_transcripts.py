"""Frame transcripts for every command the system uses, in every communication mode (plain, MACed,
enciphered; no session, AES session, 3DES session after the factory key), in both framings.

The golden files (tests/emulator/transcripts/*.txt) hold every frame in hex with a comment: the command
name going out, the card's status coming back. The client and the emulated card run the scenario with
fixed randoms; any change on the wire (framing, IV chaining, CMAC, CRC, padding, chaining) shows up
as a diff of named frames. The AES authentication and the published crypto vectors are checked
independently (tests/shared, test_card.test_auth_matches_independent_aes, test_picc_des); this pins
everything built on them. Regenerate after an intended change: TAPKIT_REGEN=1 pytest this file.
"""

import os

import pytest

from card_schema.desfire import MODE_ENC, MODE_MAC, MODE_PLAIN
from card_schema.desfire_admin import DESFireAdmin, command_name, status_name
from emulator.card import DESFireCard

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "transcripts")
UID = bytes.fromhex("04112233445566")
AID = 0x0A0B0C
K1 = bytes(range(16))
K2 = bytes(range(16, 32))
MODES = (("plain", MODE_PLAIN), ("mac", MODE_MAC), ("enc", MODE_ENC))


def ar(r, w, rw, car):
    return bytes(((rw << 4) | car, (r << 4) | w))


def _randoms():
    state = {"a": 0, "b": 0}

    def rnd(which):
        def f(n):
            state[which] += 1
            base = 0xA0 if which == "a" else 0xB0
            return bytes((base + state[which] + i) & 0xFF for i in range(n))

        return f

    return rnd("a"), rnd("b")


def scenario(df, note):
    """Every command, in every mode it is used in. `note(text)` adds a comment line."""
    note("PICC level, factory card, no session")
    df.get_version()
    df.select_application(0)
    df.get_key_settings()
    df.get_application_ids()
    note("ISO authentication with the factory 2K3DES PICC key; 3DES CMACs on answers")
    df.authenticate_iso(0, bytes(16))
    df.get_key_settings()
    df.get_key_version(0)
    df.create_application(AID, 0x0B, 3)
    df.get_application_ids()
    note("legacy authentication with the same key; no MACs")
    df.authenticate_legacy(0, bytes(16))
    df.get_application_ids()
    note("application, AES session with the default key 0")
    df.select_application(AID)
    df.authenticate_aes(0, bytes(16))
    df.change_key(1, K1, bytes(16), version=1)
    df.change_key(2, K2, bytes(16), version=2)
    df.get_key_version(1)
    for i, (name, mode) in enumerate(MODES):
        note("files in %s mode" % name)
        df.create_std_data_file(1 + i, mode, ar(1, 1, 1, 0), 80)
        df.create_backup_data_file(4 + i, mode, ar(1, 1, 1, 0), 16)
        df.create_value_file(7 + i, mode, ar(1, 1, 2, 0), 0, 100000, 1000, True)
        df.create_cyclic_record_file(10 + i, mode, ar(1, 1, 1, 0), 16, 3)
    df.create_std_data_file(13, MODE_PLAIN, ar(0xE, 0xE, 0xE, 0), 8)  # free access
    df.get_file_ids()
    df.get_file_settings(1)
    df.get_file_settings(8)
    df.get_file_settings(12)
    df.get_key_settings()
    note("no session: a free plain file")
    df.select_application(AID)
    df.write_data(13, 0, b"freedata")
    df.read_data(13, 0, 8)
    note("AES session with key 1")
    df.authenticate_aes(1, K1)
    df.get_card_uid()
    for i, (name, mode) in enumerate(MODES):
        note("%s mode: data, backup data, value, records" % name)
        df.write_data(1 + i, 0, bytes(range(70)), mode)  # chained: more than one frame
        df.read_data(1 + i, 0, 0, mode)
        df.write_data(4 + i, 2, b"backup", mode)
        df.debit(7 + i, 300, mode)
        df.write_record(10 + i, 0, b"record-%d" % i, mode)
        df.commit_transaction()
        df.read_data(4 + i, 0, 16, mode)
        df.get_value(7 + i, mode)
        df.read_records(10 + i, 0, 0, 16, mode)
        df.limited_credit(7 + i, 100, mode)
        df.abort_transaction()
    note("AES session with key 2 (credit)")
    df.authenticate_aes(2, K2)
    for i, (_name, mode) in enumerate(MODES):
        df.credit(7 + i, 500, mode)
    df.commit_transaction()
    note("key 1 (read-write on the records): clear a record file")
    df.authenticate_aes(1, K1)
    df.clear_record_file(10)
    df.commit_transaction()
    note("master key: delete a file, change file and key settings, change its own key")
    df.authenticate_aes(0, bytes(16))
    df.delete_file(13)
    df.change_file_settings(1, MODE_MAC, ar(2, 1, 1, 0))
    df.change_key_settings(0x0B)
    df.change_key(0, K2, version=5)
    note("PICC master key: delete the application, make the PICC key AES, its settings, format")
    df.select_application(0)
    df.authenticate_iso(0, bytes(16))
    df.delete_application(AID)
    df.change_picc_key(K1, aes=True, version=1)
    df.authenticate_aes(0, K1)
    df.change_key_settings(0x0B)
    df.format_picc()


def record(wrapped):
    card = DESFireCard.blank(uid=UID)
    rnd_a, rnd_b = _randoms()
    card.random = rnd_b
    lines = []

    def trace(direction, frame, name):
        if direction == ">":
            lines.append("> %s  # %s" % (frame.hex(" ").upper(), name))
        else:
            st = frame[-1] if wrapped else frame[0]
            lines.append("< %s  # %s" % (frame.hex(" ").upper(), status_name(st)))

    df = DESFireAdmin(card.transceive, wrapped=wrapped, trace=trace, random=rnd_a)
    scenario(df, lambda text: lines.append("# " + text))
    return lines


@pytest.mark.parametrize("wrapped", [True, False], ids=["wrapped", "native"])
def test_transcript(wrapped):
    lines = record(wrapped)
    path = os.path.join(HERE, "all_commands_%s.txt" % ("wrapped" if wrapped else "native"))
    if os.environ.get("TAPKIT_REGEN"):
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
    with open(path) as f:
        golden = f.read().splitlines()
    for i, (got, want) in enumerate(zip(lines, golden, strict=False)):
        assert got == want, "line %d of %s differs" % (i + 1, os.path.basename(path))
    assert len(lines) == len(golden)
    # every command the system uses appears, and every answer is OK or more frames
    names = {ln.split("# ")[1] for ln in lines if ln.startswith(">")}
    for cmd in (
        0x0A,
        0x1A,
        0xAA,
        0x5A,
        0xBD,
        0x3D,
        0x6C,
        0x0C,
        0xDC,
        0x1C,
        0x3B,
        0xBB,
        0xC7,
        0xA7,
        0xAF,
        0xC4,
        0x45,
        0x64,
        0xCA,
        0xDA,
        0x54,
        0x5F,
        0x6A,
        0xFC,
        0x60,
        0x51,
        0x6F,
        0xF5,
        0xCD,
        0xCB,
        0xCC,
        0xC0,
        0xDF,
        0xEB,
    ):
        assert command_name(cmd) in names, command_name(cmd)
    assert {ln.split("# ")[1] for ln in lines if ln.startswith("<")} == {"OK", "additional frame"}

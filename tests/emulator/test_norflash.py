"""The NOR flash model (emulator/norflash.py) on CPython: NOR rules, geometry errors, counters, cuts."""

import os

import pytest

from emulator.norflash import NORFlash, PowerCut


@pytest.fixture
def chip(tmp_path):
    return NORFlash(str(tmp_path / "flash.bin"), 4 * 4096)


def rd(chip, addr, n):
    buf = bytearray(n)
    chip.read(addr, buf)
    return bytes(buf)


def test_new_chip_is_erased_and_file_backed(tmp_path, chip):
    assert os.path.getsize(tmp_path / "flash.bin") == 4 * 4096
    assert rd(chip, 0, 4096 * 4) == b"\xff" * 4096 * 4


def test_program_only_clears_bits(chip):
    chip.program(10, b"\xf0\x0f")
    chip.program(10, b"\x3c\xff")
    assert rd(chip, 9, 4) == b"\xff\x30\x0f\xff"


def test_contents_survive_reopen(tmp_path, chip):
    chip.program(300, b"tapkit")
    chip.close()
    again = NORFlash(str(tmp_path / "flash.bin"), 4 * 4096)
    assert rd(again, 300, 6) == b"tapkit"


def test_program_refuses_page_crossing(chip):
    chip.program(192, bytes(64))  # ends exactly at the page boundary: fine
    with pytest.raises(ValueError):
        chip.program(250, bytes(8))
    with pytest.raises(ValueError):
        chip.program(4 * 4096 - 2, bytes(4))  # beyond the chip
    assert rd(chip, 250, 8) == bytes(6) + b"\xff\xff"  # nothing of the refused program landed


def test_erase_sets_sector_and_needs_alignment(chip):
    chip.program(4096 + 5, b"\x00")
    with pytest.raises(ValueError):
        chip.erase(4096 + 256)
    chip.erase(4096)
    assert rd(chip, 4096, 4096) == b"\xff" * 4096


def test_counters(chip):
    chip.program(0, bytes(64))
    chip.program(64, bytes(10))
    chip.erase(0)
    assert (chip.programs, chip.bytes_programmed, chip.erases) == (2, 74, 1)
    chip.read(0, bytearray(32))
    chip.read(4000, bytearray(96))
    assert (chip.reads, chip.bytes_read) == (2, 128)


def test_cut_program_leaves_a_strict_prefix_then_chip_is_dead(tmp_path):
    for seed in range(1, 40):
        path = str(tmp_path / ("c%d.bin" % seed))
        chip = NORFlash(path, 4096)
        chip.cut_after(2, seed)
        chip.program(0, bytes(16))  # op 1: completes
        with pytest.raises(PowerCut):
            chip.program(64, bytes(16))  # op 2: cut
        with pytest.raises(PowerCut):
            chip.read(0, bytearray(4))
        with pytest.raises(PowerCut):
            chip.erase(0)
        after = rd(NORFlash(path, 4096), 64, 16)
        k = 0
        while k < 16 and after[k] == 0:
            k += 1
        assert k < 16, "seed %d: a cut program must not complete" % seed
        assert after[k + 1 :] == b"\xff" * (15 - k), "seed %d: only one partial byte" % seed
        assert rd(NORFlash(path, 4096), 0, 16) == bytes(16)


def test_cut_erase_leaves_prefix_erased_rest_mostly_unchanged(tmp_path):
    for seed in range(1, 30):
        path = str(tmp_path / ("e%d.bin" % seed))
        chip = NORFlash(path, 8192)
        for a in range(0, 8192, 256):
            chip.program(a, bytes(256))
        chip.cut_after(1, seed)
        with pytest.raises(PowerCut):
            chip.erase(4096)
        data = rd(NORFlash(path, 8192), 4096, 4096)
        k = 0
        while k < 4096 and data[k] == 0xFF:
            k += 1
        tail = data[k + 16 :]
        assert tail == bytes(len(tail)), "seed %d: bytes beyond the noise stay unchanged" % seed
        assert rd(NORFlash(path, 8192), 0, 4096) == bytes(4096)  # other sector untouched


def test_cuts_are_deterministic(tmp_path):
    images = []
    for i in range(2):
        path = str(tmp_path / ("d%d.bin" % i))
        chip = NORFlash(path, 4096)
        chip.cut_after(1, seed=12345)
        with pytest.raises(PowerCut):
            chip.program(0, bytes(64))
        images.append(rd(NORFlash(path, 4096), 0, 64))
    assert images[0] == images[1]

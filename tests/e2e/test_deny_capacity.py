"""A city's deny list on a DevKitC's flash (issue 14): 100,000 cards (800 KB signed) install over
USB on a virtual terminal whose filesystem has the DevKitC's vfs partition (boards/esp32-devkitc/
partitions.csv) and holds two firmware sets, as a terminal does after its first OTA update; a full
replacement that cannot fit beside the installed list is refused with one clear error, the
installed list stays in use, and a delta list still installs (docs/architecture.md "Flash budget")."""

import pytest

import boards
from card_schema import signed, signed_host, tariff
from emulator import lfsimage
from emulator.vboard import VirtualBoard, vfs_size
from harness.boards import deploy
from host_tools import keystore
from host_tools.fleet import tables
from host_tools.fleet.link import SerialLink, TerminalError
from host_tools.sim.virtual import new_emulated_card

CARDS = 100000


def _city(n, extra):
    entries = {bytes([4]) + (i * 7919 + 1).to_bytes(6, "big"): i % 2 for i in range(n)}
    entries.update(extra)
    return tariff.pack_deny(entries)


@pytest.fixture
def ks(keystore_path):
    return keystore.load(str(keystore_path))


def test_city_deny_list_installs_beside_two_firmware_sets_on_a_devkitc(tmp_path, ks):
    assert vfs_size("unix-virtual") == boards.partition("esp32-devkitc", "vfs")[1] == 0x180000
    listed = new_emulated_card(str(tmp_path / "listed.card"), ks, card_no=7)
    later = new_emulated_card(str(tmp_path / "later.card"), ks, card_no=8)
    state = deploy(tmp_path / "bus", ks, 1001, fare=25000)
    img = str(tmp_path / "bus" / "fs.img")
    lib = {p: lfsimage.read_file(img, p) for p in lfsimage.walk_files(img) if p[:5] == "/lib/"}
    lfsimage.write_files(img, {"/lib_b/" + p[5:]: data for p, data in lib.items()})
    key = keystore.config_key(ks, 1001)
    blob = signed_host.seal_fast(key, signed.KIND_DENY, 5, _city(CARDS, {listed: 0}))
    assert len(blob) > 800000
    # unpaced (as fast as the host): 800 KB at 115,200 baud would add about 110 s to the suite;
    # the line's pacing has its own test (test_vboard's 8 KB deny list)
    with VirtualBoard(state, baud=0) as vb:
        with SerialLink(vb.port, timeout=30.0) as link:
            link.key = keystore.terminal_key(ks, 1001)  # INSTALL is a tagged control
            link.identify()
            assert link.install(blob) == (signed.KIND_DENY, 5)
            assert link.identify()["deny_ver"] == 5

            # a whole new list does not fit beside the one in use: refused before a byte is
            # staged, the verified list stays in use; a delta list (a day's changes) still installs
            again = signed_host.seal_fast(key, signed.KIND_DENY, 6, _city(CARDS, {later: 0}))
            with pytest.raises(
                TerminalError, match=r"config blob of \d+ bytes: \d+ bytes of flash free"
            ):
                link.install(again)
            assert link.identify()["deny_ver"] == 5
            delta = tables.deny_blob(ks, 1001, 6, {later: "refuse"}, delta=True)
            assert link.install(delta) == (signed.KIND_DENY_DELTA, 6)
            got = link.identify()
            assert (got["deny_ver"], got["deny_delta_ver"]) == (5, 6)

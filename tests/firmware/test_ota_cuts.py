"""The firmware update's power-cut campaign, CI-sized (`python -m bench ota` runs >= 1,000 cuts):
the power cut at seeded flash writes of whole updates on the VM (harness/ota_cuts.py,
harness/mp/ota_cuts.py): after each cut the terminal boots exactly the old set or exactly the new
one, its journal intact, takes a tap, and the update ends confirmed, or rolled back by itself. A
failure id ("SEED:K") replays with `python -m bench ota --replay-ota SEED:K`."""

import pytest

from harness import ota_cuts


@pytest.mark.parametrize(
    "seed,want",
    [
        (1, "confirmed"),  # flashed set in lib, the new one staged in lib_b
        (2, "confirmed"),  # already updated once: running lib_b, the new set goes to lib
        (3, "rolled back"),  # the new set's reader driver is broken: its self-test fails
    ],
)
def test_power_cut_at_update_writes(mpy_build, seed, want):
    r = ota_cuts.run_seed(mpy_build, seed, "random", seed, 10, timeout=600)
    assert not r["fails"], "replay: python -m bench ota --replay-ota ID\n%s" % r["why"]
    assert r["cuts"] == 10 and r["writes"] > 300  # chunks, files, states: hundreds of writes
    assert set(r["outcomes"]) <= {want, "rolled back"}  # a cut on trial rolls back too
    assert r["outcomes"].get(want, 0) >= 1


def test_an_update_written_over_the_running_set_is_caught(mpy_build, tmp_path):
    """The campaign can fail: firmware whose staging writes the new set over the running one (not
    beside it) leaves a mixture there when the power goes while it writes; boot.py then boots it."""
    import os
    import shutil

    from mpybuild import cross, package_dir

    with open(os.path.join(package_dir("firmware"), "ota.py")) as f:
        src = f.read()
    bad = src.replace(
        's[2] = [rel, "lib_b" if s[0] == "lib" else "lib", 0]', "s[2] = [rel, s[0], 0]"
    )
    assert bad != src
    shutil.copytree(os.path.join(mpy_build, "lib"), tmp_path / "lib")
    (tmp_path / "ota.py").write_text(bad)
    cross.compile_file(
        str(tmp_path / "ota.py"), str(tmp_path / "lib/firmware/ota.mpy"), name="firmware/ota.py"
    )
    steps = ota_cuts.run_seed(str(tmp_path), 1, "random", 0, 0)["steps"]
    sent = [n for what, n in steps if what == "install"][0]  # the INSTALL ends here, then the
    staged = [n for what, n in steps if what.startswith("boot reset")][0]  # staging boot
    mid = (sent + staged) // 2
    r = ota_cuts.run_seed(str(tmp_path), 1, "linear", mid, mid + 10)
    assert r["cuts"] == 10 and len(r["fails"]) == 10
    assert "mix" in " ".join(r["why"].values())

"""The deny-list campaign (harness/deny_campaign.py) on virtual terminals: listed cards tapped right
after USB installs and throughout them, with power cuts during the transfer and after its last chunk,
are never charged, and the tap after a cut is judged by the old complete list or the new one. The
campaign can fail: on firmware whose reload after an INSTALL loses the deny list (the class of the
hole 4307b21 closed in firmware/tables.py), it reports the listed cards charged."""

import os

from harness import deny_campaign
from host_tools import keystore
from mpybuild import cross

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_listed_cards_are_refused_across_installs_and_power_cuts(tmp_path):
    ks = keystore.init(str(tmp_path / "issuer.keys"))
    got = deny_campaign.run_campaign(str(tmp_path), ks, runs=2, cards=2000, seed=14, cut_rate=1.0)
    assert got["failures"] == [], got
    assert got["runs"] == 2 and got["cuts"] == 4 and got["cases"] >= 40, got
    assert sum(got["outcomes"].values()) == 4, got  # each cut's tap: the old list or the new one


def test_the_campaign_fails_on_firmware_that_reloads_without_its_list(tmp_path):
    ks = keystore.init(str(tmp_path / "issuer.keys"))
    with open(os.path.join(ROOT, "firmware", "tables.py")) as f:
        src = f.read()
    assert "    term.deny = deny\n" in src
    broken = tmp_path / "tables.py"
    broken.write_text(
        src.replace("    term.deny = deny\n", "    term.deny = [] if term._vers else deny\n")
    )
    cross.compile_file(str(broken), str(tmp_path / "tables.mpy"), name="firmware/tables.py")
    files = {"/lib/firmware/tables.mpy": (tmp_path / "tables.mpy").read_bytes()}
    paths = deny_campaign.make_cards(str(tmp_path / "cards"), ks)
    got = deny_campaign.one_run(
        str(tmp_path), ks, 1, 2000, paths, cut_rate=0.0, log=lambda m: None, files=files
    )
    steps = {f["step"] for f in got["failures"]}
    assert {"old", "new responder", "new idle", "delta"} <= steps, got["failures"]

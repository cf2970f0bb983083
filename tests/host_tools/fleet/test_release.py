"""Firmware releases on the host: the bundle (card_schema/release.py), sealed per terminal, published
with rollout plans, offered and served over POST /v1/ota (backoffice/otaserve.py)."""

import json
import os

import pytest

from card_schema import release, release_host, signed, upload_host
from host_tools import keystore
from host_tools.backoffice import ingest, otaserve, releases
from host_tools.backoffice import store as store_mod
from host_tools.fleet import release as fleet_release


@pytest.fixture(scope="module")
def payload():
    return fleet_release.build("unix-virtual", 2, min_fares=3)


@pytest.fixture
def ks(tmp_path):
    return keystore.init(str(tmp_path / "issuer.keys"))


def test_bundle_holds_the_boards_set_with_hashes(payload):
    d = fleet_release.describe(payload)
    assert (d["release"], d["board"], d["platform"], d["min_fares"]) == (
        2,
        "unix-virtual",
        "unix",
        3,
    )
    assert "firmware/app.mpy" in d["files"] and "firmware/hal_unix.mpy" in d["files"]
    assert not any(p.endswith(("_host.mpy", "_admin.mpy")) for p in d["files"])
    assert "main.py" not in d["files"] and "boot.py" not in d["files"]
    esp = fleet_release.describe(fleet_release.build("esp32-devkitc", 2))
    assert "firmware/hal_esp32.mpy" in esp["files"] and "firmware/hal_unix.mpy" not in esp["files"]


def test_sealed_per_terminal_and_tamper_evident(payload, ks):
    blob = fleet_release.seal(ks, 1001, payload)
    key = keystore.config_key(ks, 1001)
    kind, rel, body = signed.verify(key, blob)
    assert (kind, rel, body) == (release.KIND_FIRMWARE, 2, payload)
    with pytest.raises(ValueError, match="bad signature"):
        signed.verify(keystore.config_key(ks, 1002), blob)  # another terminal's key
    bad = bytearray(blob)
    bad[len(bad) // 2] ^= 1
    with pytest.raises(ValueError, match="bad signature"):
        signed.verify(key, bytes(bad))
    damaged = bytearray(payload)
    damaged[-1] ^= 1  # the last file's bytes: its hash no longer matches
    with pytest.raises(fleet_release.ReleaseError, match="does not match its hash"):
        fleet_release.describe(bytes(damaged))


def test_release_file_round_trip_and_cli(tmp_path, capsys):
    from host_tools.cli.app import main

    out = tmp_path / "r.tkr"
    argv = ["release", "build", "--board", "unix-virtual", "--release", "4", "-o", str(out)]
    assert main(argv + ["--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["release"] == 4 and r["files"] > 20 and r["bytes"] == os.path.getsize(out)
    assert main(["release", "show", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["board"] == "unix-virtual"
    (tmp_path / "junk.tkr").write_bytes(b"junk" * 40)
    assert main(["release", "show", str(tmp_path / "junk.tkr")]) == 1
    assert "not a firmware release" in capsys.readouterr().err
    db = "sqlite:///%s" % (tmp_path / "t.db")
    pub = ["publish", "--kind", "firmware", str(out), "--db", db]
    assert main(pub + ["--rollout", "percent:10", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["plan"] == "percent:10"
    assert main(pub + ["--rollout", "half"]) == 1
    assert "rollout plan 'half'" in capsys.readouterr().err
    assert main(["release", "status", "--db", db, "--json"]) == 0
    view = json.loads(capsys.readouterr().out)
    assert [(r["release"], r["plan"], r["targeted"]) for r in view["releases"]] == [
        (4, "percent:10", 0)
    ]
    assert main(["release", "status", "--db", db]) == 0
    assert "percent:10" in capsys.readouterr().out


def test_plans():
    assert releases.parse_plan("terminals:1001,1005-1007") == "terminals:1001,1005-1007"
    assert releases.in_plan("terminals:1001,1005-1007", 2, 1006)
    assert not releases.in_plan("terminals:1001,1005-1007", 2, 1004)
    chosen = [t for t in range(1000, 3000) if releases.in_plan("percent:10", 7, t)]
    assert 150 < len(chosen) < 250  # about 10 %
    wider = [t for t in range(1000, 3000) if releases.in_plan("percent:50", 7, t)]
    assert set(chosen) <= set(wider)  # widening keeps those already updated
    for bad in ("half", "percent:0", "percent:101", "terminals:", "line:x"):
        with pytest.raises(releases.ReleaseError):
            releases.parse_plan(bad)


def _ota(ks, tid, status, wanted=0, off=0, iv=b"\1" * 16):
    return release_host.ota_body(
        keystore.terminal_key(ks, tid), tid, "unix-virtual", status, wanted, off, iv
    )


def test_ota_server_offers_serves_and_records(tmp_path, ks, payload):
    url = "sqlite:///%s" % (tmp_path / "t.db")
    ing = ingest.Ingest(url, ks, [(1001, 1010)], log=lambda m: None)
    try:
        with store_mod.open_store(url) as db:
            releases.publish(db, payload, "terminals:1001")
        jkey, wire = keystore.terminal_key(ks, 1001), keystore.wire_key(ks, 1001)
        # a status report: the server learns what the terminal runs, and answers with a chunk
        status, ans = otaserve.answer(ing, _ota(ks, 1001, [0, 0, 0, 0, 0], wanted=2))
        assert status == 200
        acked, _, chunk = upload_host.parse_answer(jkey, wire, b"\1" * 16, ans)
        kind, rel, total, off, data = chunk
        assert (acked, kind, rel, off, len(data)) == (0, 4, 2, 0, upload_host.CHUNK)
        blob = fleet_release.seal(ks, 1001, payload)
        assert total == len(blob) and data == blob[: upload_host.CHUNK]
        # resumed from where the terminal's staging file ends
        status, ans = otaserve.answer(ing, _ota(ks, 1001, [0, 0, 0, 0, 0], 2, 20000))
        assert upload_host.parse_answer(jkey, wire, b"\1" * 16, ans)[2][4] == blob[20000:36384]
        # 1002 is not in the plan: a report gets no chunk; a forged MAC is refused
        status, ans = otaserve.answer(ing, _ota(ks, 1002, [0, 0, 0, 0, 0], wanted=2))
        k2, w2 = keystore.terminal_key(ks, 1002), keystore.wire_key(ks, 1002)
        assert upload_host.parse_answer(k2, w2, b"\1" * 16, ans)[2] is None
        # a forged MAC on an id of ours and a genuine-looking request for an id not ours: the same
        # refusal (a stranger cannot enumerate the fleet through the OTA endpoint either)
        forged = bytearray(_ota(ks, 1003, [0, 5, 0, 0, 0]))
        forged[-1] ^= 1
        assert otaserve.answer(ing, bytes(forged), "10.0.0.9") == (403, "refused")
        stranger = _ota(ks, 4242, [0, 0, 0, 0, 0])
        assert otaserve.answer(ing, stranger, "10.0.0.9") == (403, "refused")
        # a flood from one source: counted, then 429 before any work; other sources still served
        for _ in range(ing.REJECT_BURST):
            otaserve.answer(ing, b"junk", "10.0.0.9")
        assert otaserve.answer(ing, _ota(ks, 1001, [0, 0, 0, 0, 0]), "10.0.0.9")[0] == 429
        assert otaserve.answer(ing, _ota(ks, 1001, [0, 0, 0, 0, 0]), "10.0.0.7")[0] == 200
        # rolled back on 1001: never offered again; the fleet view shows it
        otaserve.answer(ing, _ota(ks, 1001, [0, 0, 0, 2, 2]))
        with store_mod.open_store(url) as db:
            st = releases.status_of(db, 1001)
            assert (st["running"], st["last_release"], st["last_result"]) == (0, 2, "rolled back")
            assert releases.wanted(db, 1001, "unix-virtual", st) is None
            view = releases.fleet(db)
        (r,) = view["releases"]
        assert (r["release"], r["targeted"], r["rolled_back"], r["running"]) == (2, 1, 1, 0)
        assert [(e["terminal"], e["result"]) for e in view["events"]] == [(1001, "rolled back")]
    finally:
        ing.close()


def test_a_release_rolled_back_once_is_not_offered_again_after_another(tmp_path, ks, payload):
    """Release 3 fails its self-test on 1001, which then confirms 2: 3 stays refused to it (its
    last result is now 2's confirm, the rollback is in its history)."""
    url = "sqlite:///%s" % (tmp_path / "t.db")
    ing = ingest.Ingest(url, ks, [(1001, 1010)], log=lambda m: None)
    try:
        with store_mod.open_store(url) as db:
            releases.publish(db, payload, "all")
            releases.publish(db, fleet_release.build("unix-virtual", 3), "all")
        otaserve.answer(ing, _ota(ks, 1001, [0, 0, 0, 0, 0]))
        with store_mod.open_store(url) as db:
            assert releases.wanted(db, 1001, "unix-virtual", releases.status_of(db, 1001)) == 3
        otaserve.answer(ing, _ota(ks, 1001, [0, 0, 0, 3, 2]))  # 3 rolled back: 2 is next
        with store_mod.open_store(url) as db:
            assert releases.wanted(db, 1001, "unix-virtual", releases.status_of(db, 1001)) == 2
        otaserve.answer(ing, _ota(ks, 1001, [0, 2, 0, 2, 1]))  # 2 confirmed
        with store_mod.open_store(url) as db:
            st = releases.status_of(db, 1001)
            assert (st["running"], st["rolled_back"]) == (2, [3])
            assert releases.wanted(db, 1001, "unix-virtual", st) is None
            assert otaserve.offer(ing, db, 1001) is None
    finally:
        ing.close()

"""A new city-sized deny list reaches terminals that hold the old one (issue 14): on a DevKitC's 1.5 MB
vfs with both firmware sets, a second 100,000-card list cannot be staged beside the first, so the
back office sends a terminal the delta from the list it holds (its deny_ver, kept in the store) to the
newest one (host_tools/backoffice/denylist.py offer), over USB (`sync_terminal`) and over Wi-Fi
(`tapkit serve`'s config chunks). Both terminals end on the new version: cards the new list keeps
or adds are refused, the ones it dropped and cards never listed are charged. Waits on Wi-Fi are on
what the server hears, never on USB polls."""

import os
import random
import socket
import time

import pytest

from card_schema import signed, signed_host, tariff
from emulator import lfsimage
from emulator.vboard import VirtualBoard
from harness.boards import deploy
from host_tools import keystore
from host_tools.backoffice import ingest
from host_tools.backoffice import server as serve
from host_tools.backoffice import store as store_mod
from host_tools.fleet import sync
from host_tools.fleet.link import SerialLink
from host_tools.sim.virtual import new_emulated_card

TID = 1001
CARDS = 100000
CHANGED = 500  # cards the new list drops, and as many it adds
FARE = 2500
NAMES = ("kept", "dropped", "added", "never")


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    """The keystore, the riders' cards and the old (5) and new (7) full lists' payloads."""
    d = tmp_path_factory.mktemp("riders")
    ks = keystore.init(str(d / "issuer.keys"))
    rng = random.Random(1407)
    uids = {n: bytes([4]) + rng.randbytes(6) for n in NAMES}
    old = {bytes([4]) + rng.randbytes(6): rng.randrange(2) for _ in range(CARDS - 2)}
    for n in NAMES:
        old.pop(uids[n], None)
    new = dict(old)
    for u in rng.sample(sorted(old), CHANGED - 1):
        del new[u]
    old[uids["kept"]] = old[uids["dropped"]] = tariff.ACTION_REFUSE
    new[uids["kept"]] = new[uids["added"]] = tariff.ACTION_REFUSE
    while len(new) < len(old):
        new[bytes([4]) + rng.randbytes(6)] = tariff.ACTION_BLOCK
    assert len(new) == len(old) == CARDS
    cards = {n: str(d / (n + ".card")) for n in NAMES}
    for i, n in enumerate(NAMES):
        new_emulated_card(cards[n], ks, card_no=i + 1, balance=100000, uid=uids[n])
    return ks, cards, tariff.pack_deny(old), tariff.pack_deny(new)


def _terminal(path, ks, old, **config):
    """A deployed terminal holding deny list 5 and, as after its first OTA update, both firmware
    sets: what a DevKitC's vfs holds in service."""
    state = deploy(path, ks, TID, fare=FARE, **config)
    img = os.path.join(state, "fs.img")
    files = {p: lfsimage.read_file(img, p) for p in lfsimage.walk_files(img) if p[:5] == "/lib/"}
    files = {"/lib_b/" + p[5:]: data for p, data in files.items()}
    key = keystore.config_key(ks, TID)
    files["/deny.bin"] = signed_host.seal_fast(key, signed.KIND_DENY, 5, old)
    lfsimage.write_files(img, files)
    return state


def _store(url, old, new):
    with store_mod.open_store(url) as db:
        db.put_config(signed.KIND_DENY, 5, old)
        db.put_config(signed.KIND_DENY, 7, new)


def _refused(vb, card):
    return vb.tap(card, timeout=60.0)["buzzer"] != "ok"


def _check_new_list(vb, cards):
    got = {n: _refused(vb, cards[n]) for n in NAMES}
    assert got == {"kept": True, "added": True, "dropped": False, "never": False}


def test_usb_sync_brings_a_city_list_terminal_to_the_new_full_list(tmp_path, city):
    ks, cards, old, new = city
    url = "sqlite:///%s" % (tmp_path / "bo.db")
    _store(url, old, new)
    with VirtualBoard(_terminal(tmp_path / "bus", ks, old)) as vb:
        assert _refused(vb, cards["dropped"])  # on list 5
        with SerialLink(vb.port, timeout=30.0) as link, store_mod.open_store(url) as db:
            t0 = time.monotonic()
            got = sync.sync_terminal(link, db, ks)
            took = time.monotonic() - t0
            info = link.identify()
        assert got["config_installed"] == ["deny_delta 7"]
        assert (info["deny_ver"], info["deny_delta_ver"]) == (5, 7)
        print("USB sync with the delta to the new 100,000-card list: %.1f s" % took)
        _check_new_list(vb, cards)


def test_wifi_brings_a_city_list_terminal_to_the_new_full_list(tmp_path, city):
    ks, cards, old, new = city
    url = "sqlite:///%s" % (tmp_path / "bo.db")
    _store(url, old, new)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ing = ingest.Ingest(url, ks, [(TID, TID)], log=lambda m: None)
    heard = []  # the versions each batch reports, and what was sent back
    chunk = ing._chunk

    def chunk_seen(store, tid, ckey, b):
        c = chunk(store, tid, ckey, b)
        heard.append((time.monotonic(), dict(b.versions), c and c[:3]))
        return c

    ing._chunk = chunk_seen
    srv = serve.Running(serve.make_app(ing), "127.0.0.1", port)
    try:
        state = _terminal(
            tmp_path / "bus",
            ks,
            old,
            server="127.0.0.1:%d" % port,
            upload_backoff_max_ms=1000,
            upload_idle_ms=1000,
        )
        with VirtualBoard(state, wifi=True) as vb:
            deadline = time.monotonic() + 180
            while not any(v.get("deny_delta_ver") == 7 for _, v, _ in heard):
                assert time.monotonic() < deadline, heard[-3:]
                time.sleep(0.5)
            sent = [(t, c) for t, _, c in heard if c]
            assert {c for _, c in sent} == {
                (signed.KIND_DENY_DELTA, 7, signed.HEADER + 4 + CHANGED * 2 * 8 + 16)
            }
            done = next(t for t, v, _ in heard if v.get("deny_delta_ver") == 7)
            print(
                "Wi-Fi delta to the new list: %.1f s, %d chunks" % (done - sent[0][0], len(sent))
            )
            assert heard[-1][1]["deny_ver"] == 5
            _check_new_list(vb, cards)
    finally:
        srv.stop()
        ing.close()

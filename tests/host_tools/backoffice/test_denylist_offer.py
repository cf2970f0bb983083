"""What a terminal is sent to reach the newest deny list (host_tools/backoffice/denylist.py offer): a
delta from the full list it holds when that is smaller than the newest full list, which on a
DevKitC's flash cannot be staged beside a city's list; the list it then uses is the newest one."""

import random

import pytest

from card_schema import signed, tariff
from host_tools.backoffice import denylist
from host_tools.backoffice import store as store_mod

DENY, DELTA = signed.KIND_DENY, signed.KIND_DENY_DELTA


def _uid(rng):
    return bytes([4]) + rng.randbytes(6)


def _city(rng, n):
    return {_uid(rng): rng.randrange(2) for _ in range(n)}


def _uses(full, delta=None):
    """The list a terminal with these payloads uses, as its lookup (delta first) does."""
    got = denylist.entries(full)
    return denylist.over(got, denylist.entries(delta)) if delta else got


@pytest.fixture
def db(tmp_path):
    with store_mod.open_store(str(tmp_path / "bo.sqlite")) as s:
        yield s


def _offer(db, versions, cache=None):
    return denylist.offer(db.config_versions(), versions, db.config_payload, cache)


def test_a_new_full_list_goes_as_a_delta_from_the_one_the_terminal_holds(db):
    rng = random.Random(14)
    v5 = _city(rng, 3000)
    gone = sorted(v5)[:40]
    v7 = {u: a for u, a in v5.items() if u not in gone}
    added = _city(rng, 60)
    v7.update(added)
    db.put_config(DENY, 5, tariff.pack_deny(v5))
    db.put_config(DELTA, 6, tariff.pack_deny({_uid(rng): 0}))
    db.put_config(DENY, 7, tariff.pack_deny(v7))

    cache = {}
    (kind, version, payload), *more = _offer(db, {"deny_ver": 5, "deny_delta_ver": 6}, cache)
    assert (kind, version, more) == (DELTA, 7, [])
    assert len(payload) == 4 + 100 * tariff.DENY_ENTRY  # 40 removed, 60 added
    assert _uses(db.config_payload(DENY, 5), payload) == v7
    assert list(cache) == [(5, 7, 0)]
    # the terminal then holds full 5 and delta 7: nothing more, until a daily delta over 7
    assert _offer(db, {"deny_ver": 5, "deny_delta_ver": 7}) == []
    day = {sorted(v7)[-1]: tariff.ACTION_REMOVE, _uid(rng): tariff.ACTION_BLOCK}
    db.put_config(DELTA, 8, tariff.pack_deny(day))
    ((kind, version, payload),) = _offer(db, {"deny_ver": 5, "deny_delta_ver": 7})
    # computed from its full list 5, not the published delta (made over full 7, whose 100
    # changes the terminal's deny_delta.bin would lose when replaced by it)
    assert (kind, version) == (DELTA, 8)
    assert _uses(db.config_payload(DENY, 5), payload) == denylist.over(v7, day)
    # a terminal on full 7 gets the published delta itself
    assert _offer(db, {"deny_ver": 7, "deny_delta_ver": 0}) == [
        (DELTA, 8, db.config_payload(DELTA, 8))
    ]
    assert _offer(db, {"deny_ver": 7, "deny_delta_ver": 8}) == []


def test_the_full_list_when_the_delta_would_be_larger_or_the_base_is_unknown(db):
    rng = random.Random(15)
    db.put_config(DENY, 3, tariff.pack_deny(_city(rng, 500)))
    db.put_config(DENY, 4, tariff.pack_deny(_city(rng, 500)))  # every card changed
    db.put_config(DELTA, 5, tariff.pack_deny({_uid(rng): 0}))
    full, delta = db.config_payload(DENY, 4), db.config_payload(DELTA, 5)
    want = [(DENY, 4, full), (DELTA, 5, delta)]
    assert _offer(db, {"deny_ver": 3, "deny_delta_ver": 0}) == want  # delta: 1001 entries
    assert _offer(db, {"deny_ver": 0, "deny_delta_ver": 0}) == want  # a new terminal
    assert _offer(db, {"deny_ver": 2, "deny_delta_ver": 0}) == want  # 2 is not in this store
    assert _offer(db, {"deny_ver": 9, "deny_delta_ver": 0}) == []  # newer than this store


def test_sync_offers_the_computed_delta_and_publish_keeps_versions_growing(db):
    rng = random.Random(16)
    v1 = _city(rng, 200)
    db.put_config(DENY, 1, tariff.pack_deny(v1))
    v2 = {**v1, bytes(7): 0}
    db.put_config(DENY, 2, tariff.pack_deny(v2))
    got = db.missing_configs({"deny_ver": 1, "deny_delta_ver": 0, "fares_ver": 0})
    assert [(k, v) for k, v, _ in got] == [(DELTA, 2)]
    assert denylist.entries(got[0][2]) == {bytes(7): 0}

    db.put_config(DELTA, 3, tariff.pack_deny({bytes(7): tariff.ACTION_REMOVE}))
    for kind, version in ((DENY, 3), (DELTA, 2), (DENY, 1)):
        with pytest.raises(ValueError, match="at version 3 .*publish version 4 or later"):
            denylist.check_version(db, kind, version)
    denylist.check_version(db, DELTA, 3)  # the same one again: put_config says if it differs
    denylist.check_version(db, DENY, 4)
    # the clone audit's next list is the one terminals use (full 2 with delta 3), one version on
    assert denylist._current(db) == (3, v1)

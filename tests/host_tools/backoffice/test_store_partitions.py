"""The PostgreSQL store's taps partitioned by month (migration 6), on a real PostgreSQL: rows land in
their month, odd clocks in taps_default and move out when their month is made, old months drop whole,
an unpartitioned store of schema 5 is converted with its rows, and one batch's fast checks (CRC,
sequence, MAC chain at C speed) refuse what the old per-record checks refused."""

import calendar
import re

import pytest

from card_schema import taprecord
from host_tools.backoffice import store as store_mod

TID = 5
KEY = bytes(range(16))


def records(n, times, first=1, prev=taprecord.GENESIS_MAC):
    out = []
    for i in range(n):
        buf = bytearray(taprecord.SIZE)
        prev = taprecord.pack_into(
            buf, prev, KEY, seq=first + i, time=times[i], terminal=TID, uid=bytes(7), kind=1
        )
        out.append(bytes(buf))
    return out


def t(y, m, d=15):
    return calendar.timegm((y, m, d, 12, 0, 0))


def test_taps_go_to_their_month_and_old_months_drop_whole(pg_server):
    url = pg_server.create_database()
    with store_mod.open_store(url) as db:
        times = [t(2024, 1), t(2024, 1), t(2024, 3), t(1999, 5), t(2099, 1)]
        assert db.ingest(TID, records(5, times), KEY) == (5, 0)
        parts = dict(db.partitions())
        assert parts["taps_202401"] == 2 and parts["taps_202402"] == 0
        assert parts["taps_202403"] == 1 and parts["taps_default"] == 2  # 1999 and 2099
        assert [r["seq"] for r in db.taps(TID)] == [1, 2, 3, 4, 5]
        # the same batch again: stored once (the terminal's lock and the stored seqs)
        assert db.ingest(TID, records(5, times), KEY) == (0, 5)
        assert db.count() == 5
        # a month made later takes its rows out of taps_default
        with db._tx():
            db._create_month((2099, 1))
        assert dict(db.partitions())["taps_209901"] == 1 and db.count() == 5
        assert db.drop_months_before(2024, 3) == ["taps_202401", "taps_202402"]
        assert [r["seq"] for r in db.taps(TID)] == [3, 4, 5]


def _schema5(monkeypatch):
    """The store's code as it was at schema 5: taps without the clock_unset column (migration 8)."""
    i = store_mod._TAP_COLUMNS.index("clock_unset")
    cols = store_mod._TAP_COLUMNS[:i] + store_mod._TAP_COLUMNS[i + 1 :]
    params = store_mod._params
    w = len(store_mod._TAP_COLUMNS)

    def old_params(*a):
        p, first, mac = params(*a)
        return [v for k, v in enumerate(p) if k % w != i], first, mac

    sql = {
        d: "INSERT INTO taps ({}) VALUES ({})".format(", ".join(cols), ", ".join([p] * len(cols)))
        for d, p in (("sqlite", "?"), ("postgresql", "%s"))
    }
    monkeypatch.setattr(store_mod, "MIGRATIONS", store_mod.MIGRATIONS[:5])
    monkeypatch.setattr(store_mod, "_TAP_COLUMNS", cols)
    monkeypatch.setattr(store_mod, "_INSERT_SQL", sql)
    monkeypatch.setattr(store_mod, "_params", old_params)


def test_an_unpartitioned_store_is_converted_with_its_rows(pg_server, monkeypatch):
    url = pg_server.create_database()
    _schema5(monkeypatch)
    recs = records(3, [t(2023, 11), t(2023, 12), t(2024, 1)])
    with store_mod.open_store(url) as db:
        assert db.schema_version() == 5 and db.ingest(TID, recs, KEY) == (3, 0)
        assert db.partitions() == []
    monkeypatch.undo()
    with store_mod.open_store(url) as db:
        assert db.schema_version() == len(store_mod.MIGRATIONS)
        parts = dict(db.partitions())
        assert (parts["taps_202311"], parts["taps_202312"], parts["taps_202401"]) == (1, 1, 1)
        assert [r["seq"] for r in db.taps(TID)] == [1, 2, 3]
        more = records(1, [t(2024, 1)], first=4, prev=recs[-1][52:60])
        assert db.ingest(TID, more, KEY) == (1, 0)


@pytest.mark.parametrize("what", ["mac", "crc", "seq", "terminal"])
def test_a_batch_is_refused_whole(store_url, what):
    recs = [bytearray(r) for r in records(6, [t(2024, 1)] * 6)]
    import binascii

    if what == "mac":
        recs[3][28] ^= 1  # the amount, CRC fixed: only the MAC can tell
        recs[3][60:64] = (binascii.crc32(bytes(recs[3][:60])) & 0xFFFFFFFF).to_bytes(4, "little")
        want = "MAC chain broken at seq 4"
    elif what == "crc":
        recs[2][30] ^= 1
        want = "record 3 of the batch is damaged (record CRC)"
    elif what == "seq":
        recs = recs[:2] + recs[3:]
        want = "seq 4 follows seq 2 in the batch"
    else:
        recs = [bytearray(r) for r in records(6, [t(2024, 1)] * 6)]
        recs[1][12] = 9
        recs[1][60:64] = (binascii.crc32(bytes(recs[1][:60])) & 0xFFFFFFFF).to_bytes(4, "little")
        want = "seq 2 belongs to terminal 9"
    with store_mod.open_store(store_url) as db:
        with pytest.raises(store_mod.ChainError, match=re.escape(want)):
            db.ingest(TID, [bytes(r) for r in recs], KEY)
        assert db.count() == 0


def test_a_group_commit_keeps_each_batch_whole(tmp_path):
    recs = records(6, [t(2024, 1)] * 6)
    bad = bytearray(recs[4])
    bad[28] ^= 1
    with store_mod.open_store("sqlite:///%s" % (tmp_path / "g.db")) as db:
        got = db.ingest_group(
            [
                (TID, b"".join(recs[:3]), KEY, None, None),
                (TID, recs[3:4] + [bytes(bad)], KEY, None, None),  # refused, rolled back alone
                (TID, b"".join(recs[3:]), KEY, None, ({"fares_ver": 2}, "wifi")),
            ]
        )
        assert got[0] == (3, 0) and got[2] == (3, 0)
        assert isinstance(got[1], store_mod.ChainError)
        assert [r["seq"] for r in db.taps(TID)] == [1, 2, 3, 4, 5, 6]
        assert db.terminal(TID)["acked_seq"] == 6

"""Tearing campaign on the fare debit transaction (the CI test runs a few hundred drops, `make bench`
thousands).

The debit transaction is the terminal's (firmware/app.py): SelectApplication -> ReadData(card info) ->
AuthenticateAES(debit key) -> ReadRecords(newest trip) -> GetValue -> Debit -> WriteRecord(trip) ->
CommitTransaction, run by the terminal's own client (card_schema.desfire, native frames as the PN532
sends them) against the emulated card. Each drop picks a frame of the transaction and a way the field
goes: before the frame, after it (answer lost) or at a random point inside the command (see
emulator.card.DESFireCard.transceive). After every drop:

- the committed card is either exactly as before or exactly one whole tap further (balance down by
  the fare AND one new trip record with the next counter and that balance): "balance and trip log
  change together or not at all";
- the next, untorn tap sees a consistent card (info readable, balance == newest trip's balance
  after, counter == newest trip's counter) and charges it exactly once.

    python -m host_tools.bench_card --drops 5000 --seed 7

A failure names the seed and the drop (step) so it replays: tearing_campaign(seed, drops) is
deterministic (fixed RndA/RndB and UID from the seed).
"""

import argparse
import json
import random
import time

from card_schema import citizen, citizen_host, desfire
from card_schema.crypto import diversify_aes128

FARE = 25000
TAP_FRAMES = 9  # frames of a tap: select, read, auth x2, records, value, debit, record, commit
MODES = ("before", "after", "inside")


class TearingFailure(AssertionError):
    pass


def tap_debit(df, uid, debit_master, fare, terminal_id, now):
    """The terminal's fare transaction on a card; returns (counter, new balance)."""
    df.select_application(citizen.AID)
    info = citizen.unpack_card_info(
        df.read_data(citizen.FILE_INFO, 0, citizen.INFO_SIZE, desfire.MODE_PLAIN)
    )
    if info[citizen.CI_STATUS] == citizen.STATUS_BLOCKED:
        raise ValueError("card blocked")
    df.authenticate_aes(citizen.KEY_DEBIT, diversify_aes128(debit_master, citizen.div_input(uid)))
    try:
        raw = df.read_records(citizen.FILE_TRIPS, 0, 1, citizen.TRIP_SIZE, desfire.MODE_MAC)
        counter = citizen.unpack_trip(raw)[citizen.TR_COUNTER]
    except desfire.CardError as e:
        if e.status != desfire.BOUNDARY_ERROR:
            raise
        counter = 0
    balance = df.get_value(citizen.FILE_PURSE, desfire.MODE_ENC)
    df.debit(citizen.FILE_PURSE, fare, desfire.MODE_ENC)
    trip = citizen_host.pack_trip(counter + 1, now, terminal_id, fare, balance - fare, line=1)
    df.write_record(citizen.FILE_TRIPS, 0, trip, desfire.MODE_MAC)
    df.commit_transaction()
    return counter + 1, balance - fare


def _issued_card(rng, balance):
    from card_schema.desfire_admin import DESFireAdmin
    from emulator.card import DESFireCard
    from host_tools import cardops

    keys = {r: bytes(rng.getrandbits(8) for _ in range(16)) for r in citizen_host.ROLE_NAMES}
    ks = {"issuer_id": 1, "keys": keys, "path": None}
    card = DESFireCard.blank(uid=b"\x04" + bytes(rng.getrandbits(8) for _ in range(6)))
    card.random = lambda n: bytes(rng.getrandbits(8) for _ in range(n))
    df = DESFireAdmin(card.transceive, random=card.random)
    cardops.issue(df, ks, card.uid, "adult", 1, 2**31 - 1, balance=balance, now=1)
    return card, keys["debit"]


def _committed(card):
    recs = card.records(citizen.AID, citizen.FILE_TRIPS)
    return card.value(citizen.AID, citizen.FILE_PURSE), [bytes(r) for r in recs]


def _check_consistent(card, where):
    balance, recs = _committed(card)
    if recs:
        t = citizen.unpack_trip(recs[0])
        if t[citizen.TR_BALANCE] != balance:
            raise TearingFailure(
                "%s: purse %d but newest trip says balance %d"
                % (where, balance, t[citizen.TR_BALANCE])
            )


def tearing_campaign(seed=1, drops=300, fare=FARE):
    """Run `drops` seeded field drops across the debit transaction; returns the tally.

    Raises TearingFailure("seed S step N: ...") when the invariant breaks.
    """
    from emulator.card import FieldLost

    rng = random.Random(seed)
    card, debit_master = _issued_card(rng, fare * (drops * 2 + 10))
    tally = {"drops": 0, "committed": 0, "not_committed": 0, "taps": 0}
    tally.update({m: 0 for m in MODES})
    now = 1700000000
    for step in range(drops):
        where = "seed %d step %d" % (seed, step)
        frame_no = rng.randrange(TAP_FRAMES)
        mode = rng.choice(MODES)
        frac = rng.random()
        seen = []

        def tear(c, f, frame_no=frame_no, mode=mode, frac=frac, seen=seen):
            seen.append(f)
            if len(seen) - 1 == frame_no:
                return frac if mode == "inside" else mode
            return None

        before = _committed(card)
        df = desfire.DESFire(card.transceive, wrapped=False, random=card.random)
        card.tear = tear
        now += 60
        torn = False
        try:
            tap_debit(df, card.uid, debit_master, fare, 1, now)
        except FieldLost:
            torn = True
        finally:
            card.tear = None
        if not torn:
            raise TearingFailure(
                "%s: frame %d was never sent (tap has fewer frames)" % (where, frame_no)
            )
        tally["drops"] += 1
        tally[mode] += 1
        after = _committed(card)
        what = "%s (frame %d, %s%s)" % (
            where,
            frame_no,
            mode,
            " at %.2f" % frac if mode == "inside" else "",
        )
        if after == before:
            tally["not_committed"] += 1
        else:
            b0, r0 = before
            b1, r1 = after
            ok = b1 == b0 - fare and len(r1) >= 1 and r1[1 : 1 + len(r0)] == r0[: len(r1) - 1]
            if ok:
                t = citizen.unpack_trip(r1[0])
                c0 = citizen.unpack_trip(r0[0])[citizen.TR_COUNTER] if r0 else 0
                ok = t[citizen.TR_BALANCE] == b1 and t[citizen.TR_COUNTER] == c0 + 1
            if not ok:
                raise TearingFailure(
                    "%s: balance and trip log did not change together: balance %d -> %d, "
                    "%d -> %d records" % (what, b0, b1, len(r0), len(r1))
                )
            tally["committed"] += 1
        _check_consistent(card, what)
        # the next tap, untorn, sees a consistent card and charges once
        df = desfire.DESFire(card.transceive, wrapped=False, random=card.random)
        b0 = _committed(card)[0]
        now += 60
        try:
            counter, bal = tap_debit(df, card.uid, debit_master, fare, 1, now)
        except Exception as e:
            raise TearingFailure("%s: the next tap failed: %r" % (what, e))
        card.field_off()
        tally["taps"] += 1
        b1, r1 = _committed(card)
        if (
            b1 != b0 - fare
            or bal != b1
            or citizen.unpack_trip(r1[0])[citizen.TR_COUNTER] != counter
        ):
            raise TearingFailure("%s: the next tap was not charged exactly once" % what)
        _check_consistent(card, what + " next tap")
    return tally


def main(argv=None):
    p = argparse.ArgumentParser(description="tearing campaign on the fare debit transaction")
    p.add_argument("--drops", type=int, default=3000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    tally = tearing_campaign(a.seed, a.drops)
    tally["seconds"] = round(time.perf_counter() - t0, 1)
    if a.json:
        print(json.dumps(tally, sort_keys=True))
    else:
        print(
            "tearing: %(drops)d drops (before %(before)d, after %(after)d, inside %(inside)d): "
            "%(committed)d committed whole, %(not_committed)d not at all, 0 half; %(taps)d next "
            "taps consistent (%(seconds)s s)" % tally
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def bench_rows(drops=3000, seed=1):
    """Rows for `make bench` (host_tools.bench): the campaign's tally, thousands of drops."""
    t0 = time.perf_counter()
    tally = tearing_campaign(seed, drops)
    secs = time.perf_counter() - t0
    return tally, [
        (
            "tearing: field drops across the debit transaction",
            "%d" % tally["drops"],
            "seed %d; before %d / after %d / inside %d"
            % (seed, tally["before"], tally["after"], tally["inside"]),
        ),
        (
            "tearing: committed whole / not at all / half",
            "%d / %d / 0" % (tally["committed"], tally["not_committed"]),
            "next tap consistent after every drop (%.1f s)" % secs,
        ),
    ]
